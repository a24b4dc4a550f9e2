//! Scale-up latency: from a queue webhook's arrival, and from a pipeline's announcement
//! (`autopilot.node`'s call), to the scale PATCH at the (fake) Kubernetes API server,
//! through the real app, the real Jenkins client against a fake Jenkins, and the real
//! `kube::Client`. 1,000 of each, one at a time, each asking for one more agent, on two
//! pools in the same run. Prints p50, p99 and max. Run: `cargo bench --bench
//! scale_latency`. Loopback only.

mod common;

use common::{NS, fake_jenkins, fake_kube};
use jenkins_autopilot::startup::Application;
use secrecy::SecretString;
use std::time::{Duration, Instant};

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events: u64 = if smoke {
        20
    } else {
        std::env::var("BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let jenkins = fake_jenkins::FakeJenkins::start().await;
        let kube = fake_kube::FakeKube::start().await;
        kube.add_deployment(NS, "agent-linux", &[]);
        kube.add_deployment(NS, "agent-pipeline", &[]);
        let dir = tempfile::tempdir().unwrap();
        let mut settings = common::settings(&jenkins, &kube, dir.path(), Duration::from_secs(3600));
        settings
            .scaling
            .pools
            .insert("linux".into(), common::pool("linux", "agent-linux", 0));
        settings.scaling.pools.insert(
            "pipeline".into(),
            common::pool("pipeline", "agent-pipeline", 0),
        );
        // Every announcement of the run still counts at its end.
        settings.scaling.announcement_ttl = Duration::from_secs(600);
        settings.auth.jwt_secret = Some(SecretString::from(
            "bench-jwt-secret-0123456789abcdef0123456789",
        ));
        println!(
            "scale latency: {events} queue webhooks, one at a time; debounce {:?} (the default)",
            settings.scaling.debounce
        );
        let token = jenkins_autopilot::tokens::TokenKeys::load(&settings.auth, dir.path())
            .unwrap()
            .issue(
                "bench",
                &[jenkins_autopilot::tokens::Scope::BuildsWrite],
                Duration::from_secs(3600),
                chrono::Utc::now().timestamp(),
            )
            .unwrap();
        let app = Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.server_handle();
        tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::new();
        // Let the first reconcile pass.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut latencies = Vec::with_capacity(events as usize);
        for i in 1..=events {
            jenkins.set_queue("linux", 1..=i);
            let before = kube.scale_patches().len();
            let sent = common::queue_webhook(&client, &base, i, "linux").await;
            let deadline = sent + Duration::from_secs(10);
            let patched = loop {
                let patches = kube.scale_patches();
                if let Some(p) = patches.get(before) {
                    break p.at;
                }
                assert!(Instant::now() < deadline, "no scale PATCH for event {i}");
                tokio::time::sleep(Duration::from_micros(500)).await;
            };
            latencies.push(patched.duration_since(sent));
        }
        assert_eq!(kube.replicas(NS, "agent-linux"), events as i64);
        report("queue webhook", latencies);

        // A pipeline's announcement: Jenkins lists nothing for the label.
        let mut latencies = Vec::with_capacity(events as usize);
        for i in 1..=events {
            let before = kube.scale_patches().len();
            let sent = Instant::now();
            let resp = client
                .post(format!("{base}/api/v1/controllers/prod/waiting"))
                .bearer_auth(&token)
                .header("Content-Type", "application/json")
                .body(
                    serde_json::json!({"label": "pipeline", "job": "app", "number": i}).to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
            let deadline = sent + Duration::from_secs(10);
            let patched = loop {
                let patches = kube.scale_patches();
                if let Some(p) = patches.get(before) {
                    break p.at;
                }
                assert!(
                    Instant::now() < deadline,
                    "no scale PATCH for announcement {i}"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            };
            latencies.push(patched.duration_since(sent));
        }
        assert_eq!(kube.replicas(NS, "agent-pipeline"), events as i64);
        report("pipeline announcement", latencies);
        handle.stop(true).await;
    });
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{what} -> scale PATCH: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} (goal: p99 < 100 ms)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        latencies.len()
    );
}
