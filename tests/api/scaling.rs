//! Agent pool autoscaling end to end: the real app, the real `kube::Client` against a
//! fake Kubernetes API server, the real Jenkins client against a fake Jenkins.

use crate::fake_jenkins::FakeJenkins;
use crate::fake_kube::FakeKube;
use crate::helpers::{Db, TestApp, payload, spawn_with, test_settings};
use jenkins_autopilot::config::WarmMode;
use jenkins_autopilot::config::{KubernetesMode, PoolSettings, Settings};
use jenkins_autopilot::scaling::{Behavior, PolicyName};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const NS: &str = "ci-agents";

pub struct Rig {
    pub app: TestApp,
    pub jenkins: FakeJenkins,
    pub kube: FakeKube,
    _dir: tempfile::TempDir,
}

pub fn pool(label: &str, deployment: &str) -> PoolSettings {
    PoolSettings {
        controller: jenkins_autopilot::domain::ControllerName::parse("prod").unwrap(),
        label: jenkins_autopilot::domain::Label::parse(label).unwrap(),
        namespace: NS.into(),
        deployment: deployment.into(),
        executors_per_agent: 1,
        min: 1,
        max: 10,
        idle_headroom: 0,
        policy: PolicyName::Queue,
        drain: false,
        behavior: Behavior::default(),
        predictive: jenkins_autopilot::config::PredictiveMode::ForecastOnly,
        exact_sizes: false,
        agent: Default::default(),
        warm: Default::default(),
        schedules: Vec::new(),
        keep_idle: Duration::from_secs(600),
    }
}

/// Fakes first (the caller fills them in `arrange`), then the app pointing at them.
pub async fn rig(
    mode: KubernetesMode,
    arrange: impl FnOnce(&FakeJenkins, &FakeKube),
    tweak: impl FnOnce(&mut Settings),
) -> Rig {
    let jenkins = FakeJenkins::start().await;
    let kube = FakeKube::start().await;
    arrange(&jenkins, &kube);
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    settings.jenkins.controllers.insert(
        "prod".into(),
        jenkins.controller(Duration::from_millis(500)),
    );
    settings.kubernetes.mode = mode;
    settings.kubernetes.kubeconfig = Some(kube.write_kubeconfig(dir.path()));
    settings.scaling.reconcile_interval = Duration::from_secs(3600);
    settings.scaling.debounce = Duration::from_millis(10);
    settings
        .scaling
        .pools
        .insert("linux".into(), pool("linux", "agent-linux"));
    tweak(&mut settings);
    let app = spawn_with(settings).await;
    Rig {
        app,
        jenkins,
        kube,
        _dir: dir,
    }
}

pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

impl Rig {
    /// Records finished builds of job `app` on `agent-linux-a` (label `linux`) through
    /// Statistics Gatherer webhooks: one per start time, each `duration_ms` long, queued
    /// 30 s.
    pub async fn record_builds(&self, starts: impl IntoIterator<Item = i64>, duration_ms: i64) {
        for (i, start) in starts.into_iter().enumerate() {
            let n = i + 1;
            let started = json!({"ciUrl": "https://ci.example.com/", "jobName": "app", "fullJobName": "app", "number": n,
                "slaveInfo": {"slaveName": "agent-linux-a", "label": "linux", "executor": "0"}, "startTime": start,
                "result": "INPROGRESS", "duration": 0, "queueTime": 30_000, "buildUrl": format!("job/app/{n}/")});
            let done = json!({"ciUrl": "https://ci.example.com/", "jobName": "app", "fullJobName": "app", "number": n,
                "result": "SUCCESS", "duration": duration_ms, "buildUrl": format!("job/app/{n}/")});
            for body in [started, done] {
                let resp = self
                    .app
                    .post_webhook("/webhooks/statistics?controller=prod", &body)
                    .await;
                assert_eq!(resp.status().as_u16(), 200);
            }
        }
    }

    pub async fn decisions(&self, pool: &str) -> Vec<Value> {
        let (status, body) = self
            .app
            .get_json(&format!(
                "/api/v1/pools/{pool}/decisions?since=0&limit=1000"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["decisions"].as_array().cloned().unwrap()
    }

    /// The newest decision once it has this trigger and outcome.
    pub async fn decision(&self, pool: &str, trigger: &str, outcome: &str) -> Value {
        eventually(
            &format!("a {trigger} decision {outcome}"),
            Duration::from_secs(5),
            async || {
                self.decisions(pool)
                    .await
                    .first()
                    .is_some_and(|d| d["trigger"] == trigger && d["outcome"] == outcome)
            },
        )
        .await;
        self.decisions(pool).await.remove(0)
    }

    /// The newest applied decision with this trigger, once one is recorded (the scale
    /// PATCH lands a moment before its decision is stored, and the new pods turning
    /// Ready wake the pool again, so a newer one may follow it).
    pub async fn applied(&self, pool: &str, trigger: &str) -> Value {
        let find = async || {
            self.decisions(pool)
                .await
                .into_iter()
                .find(|d| d["trigger"] == trigger && d["outcome"] == "applied")
        };
        eventually(
            &format!("a {trigger} decision applied"),
            Duration::from_secs(5),
            async || find().await.is_some(),
        )
        .await;
        find().await.expect("found above")
    }

    /// Waits until the pool namespace's watches (deployments and pods) are up, or down.
    pub async fn watches(&self, up: bool) {
        let want = format!(" {}", u8::from(up));
        eventually(
            &format!("the watches up: {up}"),
            Duration::from_secs(5),
            async || {
                let m = self.app.metrics().await;
                ["deployments", "pods"].iter().all(|r| {
                    m.contains(&format!(
                        "autopilot_kube_watch_up{{namespace=\"{NS}\",resource=\"{r}\"}}{want}"
                    ))
                })
            },
        )
        .await;
    }

    /// Waits for the reconcile every pool runs at start.
    pub async fn settled(&self) {
        eventually(
            "first reconcile of every pool",
            Duration::from_secs(5),
            async || {
                let (_, body) = self.app.get_json("/api/v1/pools").await;
                body["pools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| !p["last"].is_null())
            },
        )
        .await;
    }

    /// A CloudEvents `queue.entered_waiting` for an item waiting for `label`.
    pub async fn queue_event(&self, id: u64, label: &str) -> reqwest::Response {
        queue_event(&self.app, id, label).await
    }
}

/// The pool's last decision, stored or not (`/api/v1/pools`), once `check` holds for it.
pub async fn last_decision_when(
    app: &TestApp,
    pool: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let last = async || {
        let (_, body) = app.get_json("/api/v1/pools").await;
        body["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == pool)
            .map(|p| p["last"].clone())
            .filter(|d| check(d))
    };
    eventually(what, timeout, async || last().await.is_some()).await;
    last().await.expect("seen above")
}

/// A CloudEvents `queue.entered_waiting` for an item waiting for `label`.
pub async fn queue_event(app: &TestApp, id: u64, label: &str) -> reqwest::Response {
    let data = json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "entryTime": 1_700_000_000_000i64,
        "exitTime": null, "startedBy": "admin", "jenkinsQueueId": id, "status": "ENTERED_WAITING", "duration": 0,
        "queueCauses": [{"reasonForWaiting": format!("Waiting for next available executor on ‘{label}’"), "type": "entered_waiting"}]});
    app.client
        .post(app.url(&format!(
            "/webhooks/cloudevents?controller=prod&token={}",
            crate::helpers::TOKEN
        )))
        .header("Content-Type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("q-{id}"))
        .header("ce-type", "org.jenkinsci.queue.entered_waiting")
        .header("ce-source", "job/app")
        .body(data.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queue_event_scales_the_right_deployment_up_at_once() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            j.add_agent("agent-docker-a", "docker", 1, 0);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
            k.add_deployment(NS, "agent-docker", &["agent-docker-a"]);
        },
        |s| {
            s.scaling
                .pools
                .insert("docker".into(), pool("docker", "agent-docker"));
        },
    )
    .await;
    rig.settled().await;
    assert_eq!(rig.kube.replicas(NS, "agent-linux"), 1);
    assert!(
        rig.kube.scale_patches().is_empty(),
        "nothing to change at start"
    );

    rig.jenkins.set_queue("linux", 1..=3);
    let sent = Instant::now();
    let resp = rig.queue_event(1, "linux").await;
    assert_eq!(resp.status().as_u16(), 200);
    eventually(
        "agent-linux scaled to 4",
        Duration::from_secs(3),
        async || rig.kube.replicas(NS, "agent-linux") == 4,
    )
    .await;
    assert_eq!(
        rig.kube.replicas(NS, "agent-docker"),
        1,
        "the other pool is left alone"
    );
    let patches = rig.kube.scale_patches();
    assert_eq!(patches.len(), 1);
    assert!(patches[0].at > sent, "the scale-up followed the webhook");
    assert!(
        patches[0]
            .path
            .ends_with("/namespaces/ci-agents/deployments/agent-linux/scale")
    );

    let d = &rig.applied("linux", "event").await;
    assert_eq!(d["trigger"], "event");
    assert_eq!(d["outcome"], "applied");
    assert_eq!(d["rule"], "demand");
    assert_eq!(
        (d["current"].as_u64(), d["desired"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(d["inputs"]["queued"], 3);
    assert_eq!(d["inputs"]["busy_agents"], 1);
    let (_, pools) = rig.app.get_json("/api/v1/pools").await;
    let linux = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "linux")
        .unwrap()
        .clone();
    assert_eq!(linux["mode"], "apply");
    assert_eq!(linux["last"]["desired"], 4);
    let metrics = rig.app.metrics().await;
    assert!(
        metrics.contains(r#"autopilot_pool_agents{kind="desired",pool="linux"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"autopilot_pool_scale_events_total{direction="up",pool="linux"} 1"#)
    );
    assert!(metrics.contains(r#"autopilot_pool_queued{pool="linux"} 3"#));
}

#[tokio::test]
async fn idle_agents_go_only_after_the_window_and_a_busy_agent_never_does() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            for (name, busy) in [
                ("agent-linux-a", 1),
                ("agent-linux-b", 0),
                ("agent-linux-c", 0),
                ("agent-linux-d", 0),
            ] {
                j.add_agent(name, "linux", 1, busy);
            }
            k.add_deployment(
                NS,
                "agent-linux",
                &[
                    "agent-linux-a",
                    "agent-linux-b",
                    "agent-linux-c",
                    "agent-linux-d",
                ],
            );
        },
        |s| {
            s.scaling.reconcile_interval = Duration::from_secs(1);
            let p = s.scaling.pools.get_mut("linux").unwrap();
            p.behavior.scale_down.stabilization_window = Duration::from_secs(3);
            p.behavior.scale_down_delay_after_scale_up = Duration::ZERO;
        },
    )
    .await;
    let started = Instant::now();
    rig.settled().await;
    // Demand is one busy agent, but the window holds the four found at start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rig.kube.replicas(NS, "agent-linux"),
        4,
        "held within the window"
    );
    assert!(
        rig.decisions("linux")
            .await
            .iter()
            .any(|d| d["rule"] == "stabilized")
    );

    eventually(
        "scaled down to the busy agent",
        Duration::from_secs(6),
        async || rig.kube.replicas(NS, "agent-linux") == 1,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the window"
    );
    assert_eq!(
        rig.kube.pod_names(),
        ["agent-linux-a"],
        "the busy agent's pod stays"
    );
    assert_eq!(rig.kube.cost("agent-linux-a"), Some(10_000));
    let deleted = rig.kube.state.lock().unwrap().deleted.clone();
    assert!(!deleted.contains(&"agent-linux-a".to_string()));
    // Every idle pod was marked cheap before the replicas dropped.
    let requests = rig.kube.state.lock().unwrap().requests.clone();
    let scale_at = requests
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/scale"))
        .unwrap();
    for pod in ["agent-linux-b", "agent-linux-c", "agent-linux-d"] {
        let marked = requests
            .iter()
            .position(|r| r.method == "PATCH" && r.path.ends_with(&format!("/pods/{pod}")))
            .unwrap_or_else(|| panic!("{pod} never marked"));
        assert!(marked < scale_at, "{pod} marked after the scale-down");
        let cost = &requests[marked].body["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"];
        assert_eq!(cost, "-100");
    }
    let busy_patch = requests
        .iter()
        .find(|r| r.path.ends_with("/pods/agent-linux-a"))
        .unwrap();
    assert_eq!(
        busy_patch.body["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"],
        "10000"
    );
}

#[tokio::test]
async fn failed_reads_hold_the_pool_and_it_moves_again_when_they_work() {
    for (what, break_it, fix_it, expect) in [
        (
            "jenkins 503",
            (|r: &Rig| r.jenkins.state.lock().unwrap().fail_status = Some(503)) as fn(&Rig),
            (|r: &Rig| r.jenkins.state.lock().unwrap().fail_status = None) as fn(&Rig),
            "503",
        ),
        (
            "jenkins bad json",
            |r| r.jenkins.state.lock().unwrap().bad_json = true,
            |r| r.jenkins.state.lock().unwrap().bad_json = false,
            "JSON",
        ),
        (
            "jenkins slow",
            |r| r.jenkins.state.lock().unwrap().delay = Some(Duration::from_secs(2)),
            |r| r.jenkins.state.lock().unwrap().delay = None,
            "timed out",
        ),
        (
            "jenkins auth",
            |r| r.jenkins.state.lock().unwrap().refuse_auth = true,
            |r| r.jenkins.state.lock().unwrap().refuse_auth = false,
            "not authorized",
        ),
        (
            "kubernetes 500",
            |r| r.kube.state.lock().unwrap().fail_status = Some(500),
            |r| r.kube.state.lock().unwrap().fail_status = None,
            "500",
        ),
        (
            "kubernetes 403",
            |r| r.kube.state.lock().unwrap().fail_status = Some(403),
            |r| r.kube.state.lock().unwrap().fail_status = None,
            "forbidden",
        ),
    ] {
        let rig = rig(
            KubernetesMode::Apply,
            |j, k| {
                j.add_agent("agent-linux-a", "linux", 1, 0);
                k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
            },
            |_| {},
        )
        .await;
        rig.settled().await;
        break_it(&rig);
        if what.starts_with("kubernetes") {
            // The pool is read from its namespace's watches while they are up; the failing
            // API server ends them, and then the pool is read from the API server.
            rig.watches(false).await;
        }
        rig.jenkins.set_queue("linux", 1..=5);
        rig.queue_event(1, "linux").await;
        eventually(what, Duration::from_secs(5), async || {
            rig.decisions("linux")
                .await
                .first()
                .is_some_and(|d| d["outcome"] == "held")
        })
        .await;
        let d = &rig.decisions("linux").await[0];
        assert_eq!(d["rule"], "hold-on-error", "{what}");
        assert!(d["error"].as_str().unwrap().contains(expect), "{what}: {d}");
        assert!(
            d["desired"].is_null(),
            "{what}: no decision is made from a failed read"
        );
        assert_eq!(
            rig.kube.state.lock().unwrap().deployments[&(NS.into(), "agent-linux".into())].replicas,
            1,
            "{what}"
        );
        assert!(
            rig.kube.scale_patches().is_empty(),
            "{what}: nothing applied"
        );

        fix_it(&rig);
        rig.queue_event(2, "linux").await;
        eventually(
            &format!("{what}: scales once reads work"),
            Duration::from_secs(5),
            async || rig.kube.replicas(NS, "agent-linux") == 5,
        )
        .await;
        let metrics = rig.app.metrics().await;
        assert!(
            metrics.contains("autopilot_pool_failures_total{pool=\"linux\""),
            "{what}"
        );
    }
}

#[tokio::test]
async fn dry_run_decides_and_records_but_applies_nothing() {
    let rig = rig(
        KubernetesMode::DryRun,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 2, 2);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
        },
        |s| {
            s.scaling
                .pools
                .get_mut("linux")
                .unwrap()
                .executors_per_agent = 2
        },
    )
    .await;
    rig.settled().await;
    rig.jenkins.set_queue("linux", 1..=4);
    rig.queue_event(1, "linux").await;
    eventually(
        "a dry-run scale-up decision",
        Duration::from_secs(3),
        async || {
            rig.decisions("linux")
                .await
                .first()
                .is_some_and(|d| d["trigger"] == "event")
        },
    )
    .await;
    let d = &rig.decisions("linux").await[0];
    assert_eq!(d["outcome"], "dry-run");
    assert_eq!(d["desired"], 3, "ceil((2 busy + 4 queued) / 2)");
    assert_eq!(
        rig.kube.request_count(),
        0,
        "dry-run never calls Kubernetes"
    );
    let (_, pools) = rig.app.get_json("/api/v1/pools").await;
    assert_eq!(pools["pools"][0]["mode"], "dry-run");
}

#[tokio::test]
async fn a_conflicting_scale_change_is_reread_and_retried() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
            k.state.lock().unwrap().conflicts = 1;
        },
        |_| {},
    )
    .await;
    rig.settled().await;
    rig.jenkins.set_queue("linux", 1..=2);
    rig.queue_event(1, "linux").await;
    eventually("scaled after a 409", Duration::from_secs(3), async || {
        rig.kube.replicas(NS, "agent-linux") == 3
    })
    .await;
    assert_eq!(
        rig.kube.scale_patches().len(),
        2,
        "one refused with 409, one applied"
    );
    assert_eq!(rig.applied("linux", "event").await["desired"], 3);
}

#[tokio::test]
async fn drain_takes_idle_nodes_offline_first_and_keeps_one_that_turned_busy() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            for name in ["agent-linux-a", "agent-linux-b", "agent-linux-c"] {
                j.add_agent(name, "linux", 1, 0);
            }
            j.state
                .lock()
                .unwrap()
                .agents
                .get_mut("agent-linux-b")
                .unwrap()
                .turns_busy_when_taken_offline = true;
            k.add_deployment(
                NS,
                "agent-linux",
                &["agent-linux-a", "agent-linux-b", "agent-linux-c"],
            );
        },
        |s| {
            let p = s.scaling.pools.get_mut("linux").unwrap();
            p.drain = true;
            p.behavior.scale_down.stabilization_window = Duration::ZERO;
            p.behavior.scale_down_delay_after_scale_up = Duration::ZERO;
        },
    )
    .await;
    rig.settled().await;
    eventually(
        "one drained agent removed",
        // The agent that turned busy is marked, and the mark given a second to reach the
        // ReplicaSet controller, before the scale-in.
        Duration::from_secs(6),
        async || rig.kube.replicas(NS, "agent-linux") <= 2,
    )
    .await;
    // The busy agent alone is demand enough for one: a later pass may drain `c` too.
    let toggles = rig.jenkins.state.lock().unwrap().toggles.clone();
    assert_eq!(
        toggles[..3],
        ["agent-linux-a", "agent-linux-b", "agent-linux-b"],
        "a off; b off, busy, back on"
    );
    let deleted = rig.kube.state.lock().unwrap().deleted.clone();
    assert_eq!(deleted[0], "agent-linux-a");
    assert!(!deleted.contains(&"agent-linux-b".to_string()));
    assert_eq!(
        rig.kube.cost("agent-linux-b"),
        Some(10_000),
        "the agent that turned busy is protected"
    );
    let b = rig.jenkins.state.lock().unwrap().agents["agent-linux-b"].clone();
    assert!(!b.temporarily_offline, "and back online");
}

/// Jenkins checks Agent/Connect to bring a node back online: without it a drained node
/// that turned busy would stay offline for good. The refusal is shown with the decision
/// and counted, and the bring-back is retried until it works.
#[tokio::test]
async fn a_refused_bring_back_is_shown_counted_and_retried() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            for name in ["agent-linux-a", "agent-linux-b"] {
                j.add_agent(name, "linux", 1, 0);
            }
            let mut s = j.state.lock().unwrap();
            s.refuse_connect = true;
            s.agents
                .get_mut("agent-linux-b")
                .unwrap()
                .turns_busy_when_taken_offline = true;
            drop(s);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a", "agent-linux-b"]);
        },
        |s| {
            let p = s.scaling.pools.get_mut("linux").unwrap();
            p.drain = true;
            p.min = 0;
            p.behavior.scale_down.stabilization_window = Duration::ZERO;
            p.behavior.scale_down_delay_after_scale_up = Duration::ZERO;
        },
    )
    .await;
    rig.settled().await;
    let d = rig.applied("linux", "periodic").await;
    let error = d["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("agent-linux-b stays offline") && error.contains("Agent/Connect"),
        "{d}"
    );
    assert_eq!(rig.kube.state.lock().unwrap().deleted, ["agent-linux-a"]);
    assert!(rig.jenkins.state.lock().unwrap().agents["agent-linux-b"].temporarily_offline);
    // Every refused try is counted: the removed pod's going away may have woken the pool
    // for another one already.
    let refused = rig
        .app
        .metric(r#"autopilot_pool_drain_failures_total{pool="linux",step="bring-back"}"#)
        .await;
    assert!(refused >= Some(1), "{refused:?}");

    // Once the permission is granted the next reconcile brings the node back.
    rig.jenkins.state.lock().unwrap().refuse_connect = false;
    rig.queue_event(1, "linux").await;
    eventually(
        "agent-linux-b back online",
        Duration::from_secs(3),
        async || !rig.jenkins.state.lock().unwrap().agents["agent-linux-b"].temporarily_offline,
    )
    .await;
    let d = rig.decision("linux", "event", "unchanged").await;
    assert!(d["error"].is_null(), "{d}");
}

#[tokio::test]
async fn unknown_pool_decisions_are_404() {
    let rig = rig(KubernetesMode::DryRun, |_, _| {}, |_| {}).await;
    let (status, body) = rig.app.get_json("/api/v1/pools/nope/decisions").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = rig
        .app
        .get_json("/api/v1/pools/linux/decisions?limit=0")
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn transient_jenkins_errors_are_retried() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
        },
        |s| s.jenkins.controllers.get_mut("prod").unwrap().retries = 2,
    )
    .await;
    rig.settled().await;
    let before = rig.jenkins.state.lock().unwrap().requests.len();
    rig.jenkins.set_queue("linux", 1..=1);
    rig.jenkins.state.lock().unwrap().fail_next = 3;
    rig.queue_event(1, "linux").await;
    eventually(
        "scaled despite three 502s",
        Duration::from_secs(5),
        async || rig.kube.replicas(NS, "agent-linux") == 2,
    )
    .await;
    assert_eq!(rig.applied("linux", "event").await["desired"], 2);
    let reads = rig.jenkins.state.lock().unwrap().requests.len() - before;
    let all = rig.jenkins.state.lock().unwrap().requests.clone();
    // /queue, /computer (the label's view comes from it) and the label's load
    // statistics, plus three retries.
    assert!(
        reads >= 3 + 3,
        "three reads plus three retries, got {reads}: {all:?}"
    );
}

#[tokio::test]
async fn a_missing_deployment_is_a_clear_error_and_holds() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 0),
        |s| s.scaling.pools.get_mut("linux").unwrap().deployment = "no-such-deployment".into(),
    )
    .await;
    rig.settled().await;
    let d = &rig.decisions("linux").await[0];
    assert_eq!(d["outcome"], "held");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("ci-agents/no-such-deployment") && error.contains("not found (404)"),
        "{error}"
    );
}

#[tokio::test]
async fn queue_items_jenkins_no_longer_lists_are_closed() {
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 0),
        |_| {},
    )
    .await;
    rig.settled().await;
    // An item whose "left" webhook was lost: Jenkins' queue is empty.
    rig.queue_event(77, "linux").await;
    eventually(
        "the stale item is closed",
        Duration::from_secs(3),
        async || {
            let (_, body) = rig.app.get_json("/api/v1/queue?controller=prod").await;
            body["items"].as_array().unwrap().is_empty()
        },
    )
    .await;
    // An item Jenkins still lists stays.
    rig.jenkins.set_queue("linux", 78..=78);
    rig.queue_event(78, "linux").await;
    rig.decision("linux", "event", "dry-run").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = rig.app.get_json("/api/v1/queue?controller=prod").await;
    let ids: Vec<u64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["queue_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [78]);
}

#[tokio::test]
async fn the_demand_forecast_is_recorded_and_shown_and_never_acted_on() {
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 0),
        |s| {
            s.scaling.reconcile_interval = Duration::from_secs(1);
            s.scaling.forecast_trees = 5;
            s.scaling.forecast_retrain_every = Duration::from_secs(2);
            s.scaling.pools.get_mut("linux").unwrap().predictive =
                jenkins_autopilot::config::PredictiveMode::ForecastOnly;
        },
    )
    .await;
    // Three weeks of history: a build every working hour, 40 minutes each.
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000i64;
    let midnight = now - now.rem_euclid(day);
    let starts = (1..=21).flat_map(|d| (8..18).map(move |h| midnight - d * day + h * 3_600_000));
    rig.record_builds(starts, 2_400_000).await;
    eventually(
        "a trained model and a forecast",
        Duration::from_secs(60),
        async || {
            let (_, body) = rig.app.get_json("/api/v1/pools/linux/forecast").await;
            body["forecast"]["value"].is_number()
        },
    )
    .await;
    let (status, body) = rig.app.get_json("/api/v1/pools/linux/forecast").await;
    assert_eq!(status, 200);
    assert_eq!(body["mode"], "forecast-only");
    let f = &body["forecast"];
    // One build at a time at most in the history: the forecast stays near 0 or 1.
    let value = f["value"].as_f64().unwrap();
    assert!((0.0..=1.5).contains(&value), "{f}");
    assert!(f["actual_now"].is_number());
    assert!(f["target_at"].as_i64().unwrap() > now - 600_000, "{f}");
    let model = &f["model"];
    assert!(model["rows"].as_u64().unwrap() >= 50, "{model}");
    assert!(model["beats_seasonal_naive"].is_boolean(), "{model}");
    assert_eq!(f["acting"], false, "a forecast is shown, never acted on");
    // Every decision carries the forecast it saw.
    eventually(
        "a decision with the forecast",
        Duration::from_secs(5),
        async || {
            rig.decisions("linux")
                .await
                .first()
                .is_some_and(|d| d["inputs"]["forecast"]["value"].is_number())
        },
    )
    .await;
    let (status, _) = rig.app.get_json("/api/v1/pools/nope/forecast").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn profile_selection_reads_the_load_of_the_jobs_pool_and_never_guesses_it() {
    use jenkins_autopilot::tokens::Scope;
    let rig = rig(
        KubernetesMode::DryRun,
        |j, k| {
            // Three of four executors busy: 75 %.
            j.add_agent("agent-linux-a", "linux", 2, 2);
            j.add_agent("agent-linux-b", "linux", 2, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a", "agent-linux-b"]);
        },
        |_| {},
    )
    .await;
    rig.settled().await;
    // The job's last build ran on `linux` (the Statistics plugin names the label).
    let started = json!({"ciUrl": payload::ROOT, "jobName": "app", "fullJobName": "team/app", "number": 3,
        "slaveInfo": {"slaveName": "agent-linux-a", "label": "linux", "executor": "1"},
        "startTime": 1_700_000_000_000i64, "endTime": 0, "startedUserId": "SCM", "startedUserName": "SYSTEM",
        "result": "INPROGRESS", "duration": 0, "parameters": {}, "scmInfo": {}, "queueTime": 0,
        "buildUrl": "job/team/job/app/3/", "contextId": 1, "buildCause": "SCM", "buildFailureCauses": []});
    let resp = rig
        .app
        .post_webhook("/webhooks/statistics?controller=prod", &started)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let token = rig.app.jwt(&[Scope::ProfilesRead]);
    let (status, s) = rig
        .app
        .get_authed(
            "/api/v1/profiles/select?controller=prod&job=team/app&type=build",
            &token,
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["load"], 75, "{s}");
    assert_eq!(s["profile"], "heavy", "build at 75 % >= 70: {s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("pool linux is 75 % busy"),
        "{s}"
    );
    // Jenkins stops answering: the next reading fails and the load is unknown, not 0.
    rig.jenkins.state.lock().unwrap().fail_status = Some(500);
    rig.queue_event(9, "linux").await;
    rig.decision("linux", "event", "held").await;
    let (_, s) = rig
        .app
        .get_authed(
            "/api/v1/profiles/select?controller=prod&job=team/app&type=test",
            &token,
        )
        .await;
    assert!(s["load"].is_null(), "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("last read failed"),
        "{s}"
    );
    assert_eq!(s["profile"], "medium", "test with the load unknown: {s}");
}

#[tokio::test]
async fn an_hpa_pool_scales_on_pod_cpu_and_shows_its_signals_and_scores() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            j.add_agent("agent-linux-b", "linux", 1, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a", "agent-linux-b"]);
            // Each agent requests 1 CPU and 1Gi; both run at 1.5 CPU and 512Mi.
            k.state.lock().unwrap().pod_metrics = Some(
                [("agent-linux-a", "1500m"), ("agent-linux-b", "1500000000n")]
                    .into_iter()
                    .map(|(p, cpu)| (p.to_string(), (cpu.to_string(), "512Mi".to_string())))
                    .collect(),
            );
        },
        |s| {
            s.scaling.pools.get_mut("linux").unwrap().policy = PolicyName::Hpa;
        },
    )
    .await;
    rig.settled().await;
    // CPU 150 % against a 70 % target: ceil(2 x 150 / 70) = 5 agents.
    eventually(
        "agent-linux scaled to 5 on CPU",
        Duration::from_secs(3),
        async || rig.kube.replicas(NS, "agent-linux") == 5,
    )
    .await;
    let d = rig.decisions("linux").await.remove(0);
    assert_eq!(d["rule"], "multi-metric", "{d}");
    let signals = &d["inputs"]["signals"];
    assert_eq!(signals["scored_by"], "hpa");
    assert_eq!(signals["acting"], true);
    let by_name = |n: &str| {
        signals["scores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("cpu")["value"], 150.0);
    assert_eq!(by_name("cpu")["desired"], 5);
    assert_eq!(by_name("memory")["value"], 50.0);
    assert_eq!(by_name("queue_wait_p95")["value"], 0.0);
    // The forecast endpoint shows the same signals beside the forecast.
    let (status, f) = rig.app.get_json("/api/v1/pools/linux/forecast").await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["signals"]["scored_by"], "hpa", "{f}");

    // No metrics-server: CPU and memory unknown, so the HPA rule holds (no scale-down).
    rig.kube.state.lock().unwrap().pod_metrics = None;
    rig.queue_event(1, "linux").await;
    let d = rig.decision("linux", "event", "unchanged").await;
    let scores = d["inputs"]["signals"]["scores"].as_array().unwrap().clone();
    let cpu = scores.iter().find(|s| s["name"] == "cpu").unwrap();
    assert!(cpu["value"].is_null(), "{d}");
    assert_eq!(d["desired"], 5, "{d}");
}

/// A dry-run `warm` pool with one busy agent, budget `budget` %, and two weeks of a
/// 30-minute build every hour, day and night, recorded after its first reconcile.
async fn warm_rig(budget: f64) -> Rig {
    warm_rig_in(budget, WarmMode::Act).await
}

async fn warm_rig_in(budget: f64, mode: WarmMode) -> Rig {
    let rig = warm_rig_empty(budget, mode).await;
    rig.record_builds(hourly_builds(0..14 * 24), HOUR_MS / 2)
        .await;
    rig
}

const HOUR_MS: i64 = 3_600_000;

/// Builds every hour, the first 14 days ago at the hour: the `which` of them.
fn hourly_builds(which: std::ops::Range<i64>) -> Vec<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    let first = now - now.rem_euclid(HOUR_MS) - 14 * 24 * HOUR_MS;
    which.map(|i| first + i * HOUR_MS).collect()
}

/// A warm pool with no history yet, its first reconcile done.
async fn warm_rig_empty(budget: f64, mode: WarmMode) -> Rig {
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 1),
        |s| {
            // The replay runs at the pool's reconcile period, as the pool does.
            s.scaling.reconcile_interval = Duration::from_secs(10);
            let p = s.scaling.pools.get_mut("linux").unwrap();
            p.policy = PolicyName::Warm;
            p.min = 0;
            p.warm.budget = budget;
            p.warm.max_idle = 2;
            p.warm.mode = mode;
        },
    )
    .await;
    rig.settled().await;
    rig
}

impl Rig {
    /// Wakes the pool with queue events until its newest decision's warm inputs pass.
    /// With a model the pool reads its history once a minute, and a replay of two weeks
    /// against seven policies takes tens of seconds in a debug build on a busy machine:
    /// the wait allows for both.
    async fn warm_decision(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut id = 0;
        eventually(what, Duration::from_secs(120), async || {
            id += 1;
            self.queue_event(id, "linux").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.decisions("linux")
                .await
                .first()
                .is_some_and(|d| d["trigger"] == "event" && check(&d["inputs"]["warm"]))
        })
        .await;
        self.decisions("linux").await.remove(0)
    }
}

#[tokio::test]
async fn a_warm_pool_keeps_idle_agents_its_history_and_budget_pay_for() {
    // The first reconcile, at start, knew no history and booked nothing. Queue events
    // wake the pool: its model is fitted on the history, the ledger books the busy agent
    // since start, the replay of the history shows warm capacity beating the windows, and
    // the budget buys the idle agents the history says are worth it: the builds come
    // every hour, and the last one began more than an hour ago.
    let rig = warm_rig(50.0).await;
    let d = rig
        .warm_decision("a decision keeping warm agents", |w| {
            w["agents"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    let warm = &d["inputs"]["warm"];
    let agents = warm["agents"].as_u64().unwrap();
    assert!(agents <= 2, "max_idle caps them: {warm}");
    assert_eq!(
        d["recommended"].as_u64().unwrap(),
        1 + agents,
        "1 busy + {agents} warm: {d}"
    );
    assert!(
        d["reason"].as_str().unwrap().contains("warm"),
        "{}",
        d["reason"]
    );
    assert!(warm["price"].is_number(), "{warm}");
    assert!(
        warm["spent_hours"].as_f64().unwrap() < warm["allowed_hours"].as_f64().unwrap(),
        "{warm}"
    );
    let guard = &warm["guard"];
    assert_eq!(guard["acts"], true, "{guard}");
    assert!(
        guard["warm"]["started_at_once"].as_f64().unwrap()
            > guard["windows_at_equal_cost"].as_f64().unwrap_or(0.0),
        "{guard}"
    );
    assert_eq!(guard["windows"].as_array().unwrap().len(), 6);
    // Before any history or replay the pool was reactive, and said why.
    let all = rig.decisions("linux").await;
    let oldest = all.last().unwrap();
    assert_eq!(oldest["inputs"]["warm"]["agents"], 0, "{oldest}");
    assert!(
        oldest["inputs"]["warm"]["reason"]
            .as_str()
            .unwrap()
            .contains("reactive"),
        "{oldest}"
    );
}

#[tokio::test]
async fn a_warm_pool_replays_its_history_again_once_it_grew_by_a_quarter() {
    // The pool fits its model and replays its history while it is still being recorded
    // (a new install filling up, a backfill); once the history has grown by a quarter
    // the replay runs again instead of standing for a day. A replay may start before the
    // last few builds are in: it then holds at least four fifths of them.
    let rig = warm_rig_empty(50.0, WarmMode::Act).await;
    rig.record_builds(hourly_builds(0..3 * 24), HOUR_MS / 2)
        .await;
    let first = rig
        .warm_decision("a replay of the first three days", |w| {
            w["guard"]["builds"].as_u64().unwrap_or(0) >= 72 * 4 / 5
        })
        .await;
    rig.record_builds(hourly_builds(0..14 * 24), HOUR_MS / 2)
        .await;
    let d = rig
        .warm_decision("a replay of all fourteen days", |w| {
            w["guard"]["builds"].as_u64().unwrap_or(0) >= 14 * 24 * 4 / 5
        })
        .await;
    assert!(
        d["seq"].as_u64() > first["seq"].as_u64(),
        "a newer decision: {d}"
    );
}

#[tokio::test]
async fn a_forecast_only_warm_pool_records_what_it_would_keep_and_keeps_none() {
    let rig = warm_rig_in(50.0, WarmMode::ForecastOnly).await;
    let d = rig
        .warm_decision("a decision that would keep warm agents", |w| {
            w["would_keep"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    let warm = &d["inputs"]["warm"];
    assert_eq!(warm["acting"], false, "{warm}");
    assert_eq!(warm["agents"], 0, "{warm}");
    assert!(
        warm["reason"]
            .as_str()
            .unwrap()
            .starts_with("forecast-only"),
        "{warm}"
    );
    assert_eq!(d["recommended"], 1, "the busy agent only: {d}");
}

#[tokio::test]
async fn a_warm_pool_whose_replay_does_not_beat_a_window_stays_reactive_and_says_why() {
    // No budget: warm capacity is the zero window in the replay, no better than it.
    let rig = warm_rig(0.0).await;
    let d = rig
        .warm_decision("a decision with the replay's verdict", |w| {
            w["guard"]["acts"] == false && w["guard"]["builds"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let warm = &d["inputs"]["warm"];
    assert_eq!(warm["agents"], 0, "{warm}");
    assert!(
        warm["reason"]
            .as_str()
            .unwrap()
            .contains("no more than windows"),
        "{warm}"
    );
    assert_eq!(d["recommended"], 1, "the busy agent only: {d}");
}

#[tokio::test]
async fn a_pool_measures_its_agents_start_up_from_their_pods() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            for a in ["agent-linux-a", "agent-linux-b", "agent-linux-c"] {
                j.add_agent(a, "linux", 1, 1);
            }
            k.add_deployment(
                NS,
                "agent-linux",
                &["agent-linux-a", "agent-linux-b", "agent-linux-c"],
            );
        },
        |s| s.scaling.pools.get_mut("linux").unwrap().policy = PolicyName::Warm,
    )
    .await;
    rig.settled().await;
    // Each fake pod was ready 45 s after its creation (creationTimestamp to the Ready
    // condition's lastTransitionTime).
    let d = &rig.decisions("linux").await[0];
    let startup = &d["inputs"]["startup"];
    assert_eq!(startup["samples"], 3, "{startup}");
    assert_eq!(startup["measured_p50_ms"], 45_000, "{startup}");
    assert_eq!(startup["measured_p95_ms"], 45_000, "{startup}");
}

#[tokio::test]
async fn a_schedule_raises_the_pools_minimum_while_it_matches() {
    use jenkins_autopilot::scaling::schedule::ScheduleSettings;
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 0),
        |s| {
            // Every minute of every day: always active.
            s.scaling.pools.get_mut("linux").unwrap().schedules = vec![ScheduleSettings {
                cron: "* * * * *".into(),
                timezone: "Europe/Berlin".into(),
                min: 3,
            }];
        },
    )
    .await;
    rig.settled().await;
    let d = &rig.decisions("linux").await[0];
    assert_eq!(d["desired"], 3, "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("min 3 from schedule * * * * * (Europe/Berlin)"),
        "{}",
        d["reason"]
    );
}

#[tokio::test]
async fn a_pools_frontier_replays_its_own_builds_with_its_settings_marked() {
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| j.add_agent("agent-linux-a", "linux", 1, 0),
        |s| {
            s.scaling.reconcile_interval = Duration::from_secs(10);
            let p = s.scaling.pools.get_mut("linux").unwrap();
            p.min = 0;
            p.behavior.scale_down.stabilization_window = Duration::from_secs(600);
        },
    )
    .await;
    // Two days of a 20-minute build every 50 minutes.
    let now = chrono::Utc::now().timestamp_millis();
    let starts = (1..=60).map(|i| now - 3 * 86_400_000 + i * 3_000_000);
    rig.record_builds(starts, 1_200_000).await;
    let (status, f) = rig
        .app
        .get_json("/api/v1/pools/linux/frontier?range=7d")
        .await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["pool"], "linux");
    assert_eq!(f["builds"], 60);
    assert_eq!(f["builds_in_range"], 60);
    let points = f["frontier"].as_array().unwrap();
    assert_eq!(points.len(), 17);
    let oracle = f["oracle_agent_hours"].as_f64().unwrap();
    // Twenty minutes each: 20 agent-hours at the very least.
    assert!((oracle - 20.0).abs() < 0.01, "{oracle}");
    for p in points.iter().chain([&f["current"]]) {
        assert!(p["agent_hours"].as_f64().unwrap() >= oracle, "{p}");
        assert_eq!(p["busy_agents_removed"], 0, "{p}");
        let at_once = p["started_at_once"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&at_once), "{p}");
    }
    // The pool's own settings (queue, a 10-minute window) are the current point: the
    // builds come every 50 minutes, so none finds the agent still there, as window 0.
    assert_eq!(f["current"]["family"], "current");
    assert_eq!(f["current"]["setting"], "queue");
    assert_eq!(f["current"]["started_at_once"], 0.0);
    let window = |m: &str| {
        points
            .iter()
            .find(|p| p["family"] == "window" && p["setting"] == m)
            .unwrap()
    };
    // A four-hour window keeps the agent between builds: only the first waits.
    let kept = window("240m")["started_at_once"].as_f64().unwrap();
    assert!((kept - 59.0 / 60.0).abs() < 1e-9, "{}", window("240m"));

    let (status, body) = rig
        .app
        .get_json("/api/v1/pools/linux/frontier?range=soon")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "range", "{body}");
    let (status, _) = rig.app.get_json("/api/v1/pools/nope/frontier").await;
    assert_eq!(status, 404);
}

/// A Pipeline `node('linux')` wait makes no CloudEvents queue event (the plugin drops it):
/// the library announces the build instead, and the pool scales before Jenkins lists it.
#[tokio::test]
async fn a_pipelines_announcement_scales_the_pool_before_jenkins_lists_the_build() {
    use jenkins_autopilot::tokens::Scope;
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
        },
        |s| s.scaling.announcement_ttl = Duration::from_secs(2),
    )
    .await;
    rig.settled().await;
    let token = rig.app.jwt(&[Scope::BuildsWrite]);
    let path = "/api/v1/controllers/prod/waiting";
    let sent = Instant::now();
    let (status, reply) = rig
        .app
        .post_authed(
            path,
            &token,
            &json!({"label": "linux", "job": "team/app", "number": 12}),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["pools"], json!(["linux"]));
    assert_eq!(reply["label"], "linux");
    eventually(
        "agent-linux scaled to 2 on the announcement",
        Duration::from_secs(3),
        async || rig.kube.replicas(NS, "agent-linux") == 2,
    )
    .await;
    let patches = rig.kube.scale_patches();
    assert!(patches[0].at > sent);
    let d = rig.applied("linux", "event").await;
    assert_eq!(d["inputs"]["queued"], 1, "{d}");
    assert_eq!(d["inputs"]["queue_sources"]["announced"], 1, "{d}");
    assert_eq!(d["inputs"]["queue_sources"]["from_why"], 0, "{d}");

    // Once Jenkins lists the build the announcement adds nothing: one build, one agent.
    rig.jenkins.set_queue("linux", 1..=1);
    rig.queue_event(1, "linux").await;
    // The pool's latest reconcile (an unchanged one after another is not stored again).
    let d = last_decision_when(
        &rig.app,
        "linux",
        "a reconcile on the listed build",
        Duration::from_secs(5),
        |d| d["inputs"]["queue_sources"]["from_why"] == 1,
    )
    .await;
    assert_eq!(d["outcome"], "unchanged", "{d}");
    assert_eq!(
        d["inputs"]["queued"], 1,
        "announced and listed are one: {d}"
    );
    assert_eq!(d["inputs"]["queue_sources"]["announced"], 1, "{d}");
    // After the time to live the announcements no longer count.
    rig.jenkins.state.lock().unwrap().queue.clear();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    rig.queue_event(9, "linux").await;
    eventually(
        "a reconcile without the expired announcements",
        Duration::from_secs(3),
        async || {
            rig.decisions("linux").await.first().is_some_and(|d| {
                d["inputs"]["queue_sources"]["announced"] == 0 && d["inputs"]["queued"] == 0
            })
        },
    )
    .await;

    // Another label, another controller: nothing is woken, and that is not an error.
    let (status, reply) = rig
        .app
        .post_authed(path, &token, &json!({"label": "windows"}))
        .await;
    assert_eq!((status, reply["pools"].clone()), (202, json!([])));
    let (status, reply) = rig
        .app
        .post_authed(
            "/api/v1/controllers/other/waiting",
            &token,
            &json!({"label": "linux"}),
        )
        .await;
    assert_eq!((status, reply["pools"].clone()), (202, json!([])));
    // Bad input is named; a token without builds:write is refused.
    for (body, field) in [
        (json!({}), "label"),
        (json!({"label": ""}), "label"),
        (json!({"label": "a\u{0}b"}), "label"),
        (json!({"label": "x".repeat(2000)}), "label"),
        (json!({"label": "linux", "number": 0}), "number"),
        (json!({"label": "linux", "extra": 1}), "extra"),
    ] {
        let (status, reply) = rig.app.post_authed(path, &token, &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.to_string().contains(field), "{body}: {reply}");
    }
    let (status, _) = rig
        .app
        .post_authed(
            path,
            &rig.app.jwt(&[Scope::ProfilesRead]),
            &json!({"label": "linux"}),
        )
        .await;
    assert_eq!(status, 403);
    let metrics = rig.app.metrics().await;
    assert!(
        metrics.contains(r#"autopilot_pool_announcements_total{pool="linux"} 1"#),
        "{metrics}"
    );
}

/// A pool per label (`linux` first), each with one idle agent `agent-LABEL-a` in its
/// Deployment `agent-LABEL`.
async fn rig_with_pools(labels: &[&str]) -> Rig {
    rig(
        KubernetesMode::Apply,
        |j, k| {
            for label in labels {
                j.add_agent(&format!("agent-{label}-a"), label, 1, 0);
                k.add_deployment(
                    NS,
                    &format!("agent-{label}"),
                    &[&format!("agent-{label}-a")],
                );
            }
        },
        |s| {
            for label in &labels[1..] {
                s.scaling
                    .pools
                    .insert(label.to_string(), pool(label, &format!("agent-{label}")));
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_queue_webhook_wakes_the_pools_of_its_label_and_one_jenkins_read_serves_them() {
    let rig = rig_with_pools(&["linux", "windows", "mac"]).await;
    rig.settled().await;
    let events = async |pool: &str| {
        rig.decisions(pool)
            .await
            .iter()
            .filter(|d| d["trigger"] == "event")
            .count()
    };
    let requests = || rig.jenkins.state.lock().unwrap().requests.clone();
    // The Jenkins paths asked since `before`, and how many start with a prefix.
    let since = |before: usize| -> Vec<String> {
        requests()[before..]
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    };
    let count =
        |paths: &[String], prefix: &str| paths.iter().filter(|p| p.starts_with(prefix)).count();
    let before = requests().len();

    let stats =
        |paths: &[String], label: &str| count(paths, &format!("/label/{label}/loadStatistics"));

    // A build waits for `windows`: that pool wakes and scales, the others sleep on. Its new
    // agent's pod turns Ready and wakes it once more.
    rig.jenkins.set_queue("windows", 1..=2);
    rig.queue_event(1, "windows").await;
    eventually(
        "windows scaled, its decision stored, its new pod seen",
        Duration::from_secs(5),
        async || {
            rig.kube.replicas(NS, "agent-windows") == 2
                && events("windows").await >= 1
                && stats(&since(before), "windows") == 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((events("linux").await, events("mac").await), (0, 0));
    let paths = since(before);
    assert_eq!(
        (
            count(&paths, "/queue/"),
            count(&paths, "/computer/api/json"),
            stats(&paths, "windows")
        ),
        (2, 2, 2),
        "the webhook's reconcile and the pod's: {paths:?}"
    );
    assert_eq!(paths.len(), 6, "nothing else: {paths:?}");

    // A queue event whose label no pool has (or names none) wakes every pool, and they
    // share one read of the queue and the agents.
    let before = requests().len();
    rig.queue_event(2, "solaris").await;
    eventually(
        "every pool reconciled",
        Duration::from_secs(5),
        async || {
            let paths = since(before);
            ["linux", "mac", "windows"]
                .iter()
                .all(|l| stats(&paths, l) == 1)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths = since(before);
    assert_eq!(
        (
            count(&paths, "/queue/"),
            count(&paths, "/computer/api/json"),
            count(&paths, "/label/")
        ),
        (1, 1, 3),
        "one snapshot, one load statistics read per label: {paths:?}"
    );
}

#[tokio::test]
async fn pools_are_read_from_watches_and_a_pod_turning_ready_or_going_away_wakes_only_its_pool() {
    let rig = rig_with_pools(&["linux", "windows"]).await;
    rig.settled().await;
    rig.watches(true).await;
    let kube_requests = || {
        let s = rig.kube.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|r| !r.is_watch())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    };
    let stats_reads = |label: &str| {
        let path = format!("/label/{label}/loadStatistics");
        let s = rig.jenkins.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|(_, p)| p.starts_with(&path))
            .count()
    };

    // A queue event: the pool is read from the watches; the only request is the patch.
    let before = kube_requests().len();
    rig.jenkins.set_queue("linux", 1..=3);
    rig.queue_event(1, "linux").await;
    eventually("linux scaled", Duration::from_secs(5), async || {
        rig.kube.replicas(NS, "agent-linux") == 3
    })
    .await;
    let asked = kube_requests()[before..].to_vec();
    assert_eq!(
        asked,
        ["PATCH /apis/apps/v1/namespaces/ci-agents/deployments/agent-linux/scale"],
        "no scale read, no pod list"
    );
    // The next reconcile sees the new size before the watch shows it, and then the new pods.
    rig.queue_event(2, "linux").await;
    eventually(
        "the new pods are the pool's",
        Duration::from_secs(5),
        async || {
            let (_, body) = rig.app.get_json("/api/v1/pools").await;
            body["pools"].as_array().unwrap().iter().any(|p| {
                p["name"] == "linux"
                    && p["last"]["inputs"]["current_replicas"] == 3
                    && p["last"]["inputs"]["ready_agents"] == 3
            })
        },
    )
    .await;
    assert_eq!(kube_requests().len(), before + 1, "still only the patch");

    // A pod starting up turns Ready: its pool wakes (the period is an hour), the other
    // does not.
    let linux = stats_reads("linux");
    let windows = stats_reads("windows");
    let starting = {
        let mut s = rig.kube.state.lock().unwrap();
        let name = s
            .pods
            .iter()
            .find(|(n, p)| p.app_label == "agent-linux" && n.contains("new"))
            .map(|(n, _)| n.clone())
            .unwrap();
        s.pods.get_mut(&name).unwrap().ready = false;
        name
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stats_reads("linux"),
        linux,
        "a pod turning not ready wakes nothing"
    );
    rig.kube
        .state
        .lock()
        .unwrap()
        .pods
        .get_mut(&starting)
        .unwrap()
        .ready = true;
    eventually("linux woke", Duration::from_secs(5), async || {
        stats_reads("linux") == linux + 1
    })
    .await;

    // A pod is removed: its pool wakes.
    rig.kube.state.lock().unwrap().pods.remove(&starting);
    eventually("linux woke again", Duration::from_secs(5), async || {
        stats_reads("linux") == linux + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats_reads("windows"), windows, "the other pool slept on");
    assert_eq!(kube_requests().len(), before + 1, "nothing polled");
}
