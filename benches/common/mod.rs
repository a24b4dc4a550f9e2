//! What the service benchmarks share: the integration tests' fakes, and settings for the
//! real app against them.

#![allow(dead_code)]

#[path = "../../tests/api/fake_jenkins.rs"]
pub mod fake_jenkins;
#[path = "../../tests/api/fake_kube.rs"]
pub mod fake_kube;

use jenkins_autopilot::config::{KubernetesMode, PoolSettings, Settings};
use jenkins_autopilot::scaling::{Behavior, PolicyKind, PolicyName, RatePolicy};
use secrecy::SecretString;
use std::time::Duration;

pub const TOKEN: &str = "bench-webhook-token-0123456789";
pub const NS: &str = "ci-agents";

/// The app's settings: controller `prod` on the fake Jenkins, the fake API server, data in
/// `dir`, logging at warn, pools reconciled every `period`.
pub fn settings(
    jenkins: &fake_jenkins::FakeJenkins,
    kube: &fake_kube::FakeKube,
    dir: &std::path::Path,
    period: Duration,
) -> Settings {
    let mut settings = Settings::load(None, Vec::new()).unwrap();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.data_dir = dir.to_path_buf();
    settings.webhook.token = Some(SecretString::from(TOKEN));
    settings.logging.filter = "warn".into();
    settings
        .jenkins
        .controllers
        .insert("prod".into(), jenkins.controller(Duration::from_secs(5)));
    settings.kubernetes.mode = KubernetesMode::Apply;
    settings.kubernetes.kubeconfig = Some(kube.write_kubeconfig(dir));
    settings.scaling.reconcile_interval = period;
    settings
}

/// A `queue` pool of `label` on Deployment `deployment`: one executor per agent, no rate
/// limit on scale-up (one more agent per event), at least `min` agents.
pub fn pool(label: &str, deployment: &str, min: u32) -> PoolSettings {
    let mut behavior = Behavior::default();
    behavior.scale_up.policies = vec![RatePolicy {
        kind: PolicyKind::Pods,
        value: 100_000,
        period: Duration::from_secs(1),
    }];
    PoolSettings {
        controller: jenkins_autopilot::domain::ControllerName::parse("prod").unwrap(),
        label: jenkins_autopilot::domain::Label::parse(label).unwrap(),
        namespace: NS.into(),
        deployment: deployment.into(),
        executors_per_agent: 1,
        min,
        max: 100_000,
        idle_headroom: 0,
        policy: PolicyName::Queue,
        drain: false,
        behavior,
        predictive: Default::default(),
        exact_sizes: false,
        agent: Default::default(),
        warm: Default::default(),
        schedules: Vec::new(),
        keep_idle: Duration::from_secs(600),
    }
}

/// Posts a CloudEvents "entered waiting" queue webhook for build `id` waiting for `label`
/// to the app at `base`; returns when it was sent.
pub async fn queue_webhook(
    client: &reqwest::Client,
    base: &str,
    id: u64,
    label: &str,
) -> std::time::Instant {
    let body = serde_json::json!({"ciUrl": "https://ci.example.com/", "displayName": "app",
        "entryTime": 1_700_000_000_000i64, "jenkinsQueueId": id, "status": "ENTERED_WAITING",
        "queueCauses": [{"reasonForWaiting": format!("Waiting for next available executor on ‘{label}’")}]});
    let sent = std::time::Instant::now();
    let resp = client
        .post(format!(
            "{base}/webhooks/cloudevents?controller=prod&token={TOKEN}"
        ))
        .header("Content-Type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("q{id}"))
        .header("ce-type", "org.jenkinsci.queue.entered_waiting")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    sent
}
