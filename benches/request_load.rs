//! Request load: 50 pools on one Jenkins controller, through the real app, the real
//! Jenkins client against the fake Jenkins and the real `kube::Client` against the fake
//! Kubernetes API server. At rest (nothing queued) it counts the requests each receives
//! per reconcile period and per minute, by kind; then 200 queue webhooks, each for one
//! pool's label, and the requests they cost, with each webhook's time to its scale PATCH
//! (p50, p99, max). Run: `cargo bench --bench request_load` (BENCH_POOLS, BENCH_PERIODS).
//! Loopback only; it stops by itself.

mod common;

use common::{NS, fake_jenkins, fake_kube};
use jenkins_autopilot::startup::Application;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Jenkins request's kind: its path with the label left out.
fn jenkins_kind(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["label", _, "loadStatistics", ..] => "/label/L/loadStatistics".into(),
        ["label", ..] => "/label/L".into(),
        ["computer", "api", ..] => "/computer".into(),
        ["computer", ..] => "/computer/NODE".into(),
        ["queue", ..] => "/queue".into(),
        _ => path.to_string(),
    }
}

fn kube_kind(r: &fake_kube::Recorded) -> String {
    let seg: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let what = match seg.as_slice() {
        [.., "deployments", _, "scale"] => "deployments/scale",
        [.., "deployments"] if r.is_watch() => "deployments (watch)",
        [.., "deployments"] => "deployments (list)",
        [.., "pods"] if r.is_watch() => "pods (watch)",
        [.., "pods"] => "pods (list)",
        [.., "pods", _] => "pods/NAME",
        _ if seg.contains(&"leases") => "leases",
        _ => "other",
    };
    format!("{} {what}", r.method)
}

fn tally<'a>(kinds: impl Iterator<Item = String> + 'a) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in kinds {
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

fn print(what: &str, counts: &BTreeMap<String, usize>, periods: f64, period: Duration) {
    let total: usize = counts.values().sum();
    let per_min = 60.0 / period.as_secs_f64();
    println!(
        "{what}: {:.1} requests per period, {:.0} per minute at a {:?} period",
        total as f64 / periods,
        total as f64 / periods * per_min,
        period
    );
    for (k, n) in counts {
        println!("  {k:<28} {:>7.1} per period", *n as f64 / periods);
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let pools = env("BENCH_POOLS", 50) as usize;
    let periods = env("BENCH_PERIODS", if smoke { 3 } else { 10 });
    let webhooks = if smoke { 20 } else { 200 };
    let period = Duration::from_secs(2);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let jenkins = fake_jenkins::FakeJenkins::start().await;
        let kube = fake_kube::FakeKube::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = common::settings(&jenkins, &kube, dir.path(), period);
        for p in 0..pools {
            let label = format!("pool-{p:02}");
            jenkins.add_agent(&format!("{label}-a"), &label, 1, 0);
            kube.add_deployment(NS, &label, &[&format!("{label}-a")]);
            settings
                .scaling
                .pools
                .insert(label.clone(), common::pool(&label, &label, 1));
        }
        println!(
            "request load: {pools} pools on one Jenkins controller, reconcile period {period:?}, {periods} periods at rest, then {webhooks} queue webhooks"
        );
        let app = Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.server_handle();
        tokio::spawn(app.run_until_stopped());
        // Past the first reconciles.
        tokio::time::sleep(period + Duration::from_millis(500)).await;

        // At rest.
        let (j0, k0) = (
            jenkins.state.lock().unwrap().requests.len(),
            kube.request_count(),
        );
        tokio::time::sleep(period * periods as u32).await;
        let jenkins_rest = tally(
            jenkins.state.lock().unwrap().requests[j0..]
                .iter()
                .map(|(_, p)| jenkins_kind(p)),
        );
        let kube_rest = tally(
            kube.state.lock().unwrap().requests[k0..]
                .iter()
                .map(kube_kind),
        );
        print("Jenkins at rest", &jenkins_rest, periods as f64, period);
        print("API server at rest", &kube_rest, periods as f64, period);

        // Queue webhooks, one at a time, each for the next pool's label.
        let client = reqwest::Client::new();
        let (j0, k0) = (
            jenkins.state.lock().unwrap().requests.len(),
            kube.request_count(),
        );
        let mut latencies = Vec::with_capacity(webhooks);
        let started = Instant::now();
        for i in 0..webhooks {
            let label = format!("pool-{:02}", i % pools);
            let want = kube.replicas(NS, &label) + 1;
            jenkins.set_queue(&label, 1..=(want as u64));
            let sent = common::queue_webhook(&client, &base, i as u64 + 1, &label).await;
            let deadline = sent + Duration::from_secs(10);
            loop {
                if kube.replicas(NS, &label) >= want {
                    break;
                }
                assert!(Instant::now() < deadline, "webhook {i}: {label} not scaled");
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let patched = kube
                .scale_patches()
                .iter()
                .rev()
                .find(|r| r.path.contains(&format!("/deployments/{label}/")))
                .map(|r| r.at)
                .unwrap();
            latencies.push(patched.duration_since(sent));
        }
        let spent = started.elapsed().as_secs_f64() / period.as_secs_f64();
        let jenkins_hooks = tally(
            jenkins.state.lock().unwrap().requests[j0..]
                .iter()
                .map(|(_, p)| jenkins_kind(p)),
        );
        let kube_hooks = tally(
            kube.state.lock().unwrap().requests[k0..]
                .iter()
                .map(kube_kind),
        );
        let per_hook = |c: &BTreeMap<String, usize>| c.values().sum::<usize>() as f64 / webhooks as f64;
        println!(
            "{webhooks} queue webhooks in {:.1} periods: {:.1} Jenkins and {:.1} API server requests per webhook (periodic reconciles included)",
            spent,
            per_hook(&jenkins_hooks),
            per_hook(&kube_hooks)
        );
        for (k, n) in &jenkins_hooks {
            println!("  Jenkins {k:<28} {:>7.2} per webhook", *n as f64 / webhooks as f64);
        }
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "webhook -> scale PATCH: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            at(0.5).as_secs_f64() * 1000.0,
            at(0.99).as_secs_f64() * 1000.0,
            latencies.last().unwrap().as_secs_f64() * 1000.0
        );
        handle.stop(true).await;
    });
}
