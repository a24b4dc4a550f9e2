//! Cost optimization on a recorded history: a pool kept far larger than its builds need.

use crate::helpers::{TestApp, spawn_with, statistics_build};
use jenkins_autopilot::config::{KubernetesMode, Settings};
use secrecy::SecretString;
use serde_json::{Value, json};

const H: i64 = 3_600_000;

const SCALING: &str = "jenkins:\n  controllers:\n    prod: {url: 'http://127.0.0.1:9/', timeout: 200ms, retries: 0}\n\
scaling:\n  reconcile_interval: 1h\n  pools:\n    linux: {controller: prod, label: linux, namespace: ci, deployment: agents, min: 4, max: 10, idle_headroom: 2}\n";

/// An app whose settings come from a config directory, with 20 ten-minute builds of the
/// last two days on `linux`.
async fn recorded() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("jenkins-scaling.yaml"), SCALING).unwrap();
    let mut settings = Settings::load(Some(&config), Vec::new()).unwrap();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.data_dir = dir.path().join("data");
    settings.webhook.token = Some(SecretString::from(crate::helpers::TOKEN));
    settings.kubernetes.mode = KubernetesMode::DryRun;
    let app = spawn_with(settings).await;
    let now = jenkins_autopilot::domain::Timestamp::now().millis();
    for n in 1..=20u64 {
        let start = now - 48 * H + n as i64 * 2 * H;
        statistics_build(&app, "app", n, "linux", start, 0, 10 * 60_000, "SUCCESS").await;
    }
    (app, dir)
}

async fn plan(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/api/v1/costs/optimize"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn the_optimizer_reaches_a_target_on_recorded_history_and_says_when_it_cannot() {
    let (app, dir) = recorded().await;
    let (status, p) = plan(&app, json!({"target_savings": 20, "range": "7d"})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["reached"], true, "{p}");
    assert!(p["saved_percent"].as_f64().unwrap() >= 20.0, "{p}");
    assert!(p["cost_after"].as_f64().unwrap() < p["cost_before"].as_f64().unwrap());
    let pool = &p["pools"][0];
    assert_eq!(pool["pool"], "linux");
    assert_eq!(pool["builds"], 20);
    assert!(!pool["changes"].as_array().unwrap().is_empty(), "{pool}");
    // The gentlest plan reaching 20 %: builds still find a warm agent.
    assert_eq!(p["wait_p95_before_s"], 0.0);
    assert_eq!(p["wait_p95_after_s"], 0.0, "{p}");
    assert!(p["evaluated"].as_u64().unwrap() > 10);
    let diff = p["config_diff"].as_str().unwrap();
    assert!(
        diff.contains("scaling:") && diff.contains("linux:"),
        "{diff}"
    );

    // 99 % cannot be saved without losing the builds' agents: said so, with the best found.
    let (_, p99) = plan(&app, json!({"target_savings": 99, "range": "7d"})).await;
    assert_eq!(p99["reached"], false, "{p99}");
    assert!(
        p99["message"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{p99}"
    );
    assert!(p99["saved_percent"].as_f64().unwrap() > p["saved_percent"].as_f64().unwrap() - 1e-9);

    for (body, field) in [
        (json!({"target_savings": 0}), "target_savings"),
        (json!({"target_savings": 150}), "target_savings"),
        (json!({"target_savings": 20, "range": "soon"}), "range"),
        (json!({"target": 20}), "target"),
    ] {
        let (status, e) = plan(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
    }

    // The CLI plans the same and, told --apply, writes settings that load.
    let config = dir.path().join("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args([
            "cost",
            "optimize",
            "--target-savings",
            "20",
            "--range",
            "7d",
            "--apply",
            "--format",
            "json",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["reached"], true);
    let applied = Settings::load(Some(&config), Vec::new()).unwrap();
    let linux = &applied.scaling.pools["linux"];
    let planned = |setting: &str| {
        cli["pools"][0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["setting"] == setting)
            .map(|c| c["to"].as_str().unwrap().to_string())
    };
    if let Some(min) = planned("min") {
        assert_eq!(linux.min.to_string(), min);
    }
    if let Some(h) = planned("idle_headroom") {
        assert_eq!(linux.idle_headroom.to_string(), h);
    }
    assert!(linux.min < 4 || linux.idle_headroom < 2, "settings changed");
    app.stop().await;
}
