//! Replay speed: 100,000 synthetic builds (a daily cycle with bursts, 4 labels) through
//! every policy. Prints builds replayed per second. Run: `cargo bench --bench simulate`.

use jenkins_autopilot::config::{PoolPolicy, PoolSettings, Settings};
use jenkins_autopilot::sim::{SimConfig, SimPolicy, compare, trace::TraceBuild};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke { 2_000 } else { 100_000 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let labels = ["linux", "docker", "arm64", "windows"];
    let mut t: i64 = 1_700_000_000_000;
    let builds: Vec<TraceBuild> = (0..n)
        .map(|_| {
            // Busier by day: gaps of 5 s to 5 min depending on the hour.
            let hour = (t / 3_600_000) % 24;
            let gap = if (8..18).contains(&hour) {
                rng.random_range(5_000..60_000)
            } else {
                rng.random_range(30_000..300_000)
            };
            t += gap;
            TraceBuild {
                queued_at_ms: t,
                job: "job".into(),
                label: labels[rng.random_range(0..labels.len())].into(),
                duration_ms: rng.random_range(30_000..1_800_000),
                result: None,
                cpu_millicores: None,
                memory_mib: None,
            }
        })
        .collect();
    // A pool of up to 200 agents, otherwise as the service's defaults.
    let pool: PoolSettings = serde_yaml::from_str(
        "{controller: bench, label: linux, namespace: ci, deployment: agents, max: 200}",
    )
    .expect("a valid pool");
    let service = Settings::load(None, Vec::new()).expect("the default settings");
    let cfg = SimConfig::new(&PoolPolicy::from(&pool), &service).with_timing(
        jenkins_autopilot::sim::startup::Startup::fixed(Duration::from_secs(60)),
        Duration::from_secs(10),
    );
    let policies = [
        SimPolicy::Static(20),
        SimPolicy::SeedQueueHalf,
        SimPolicy::Queue,
        SimPolicy::PerBuild,
        SimPolicy::Oracle,
        SimPolicy::Window(60),
        SimPolicy::KeepIdle(std::time::Duration::from_secs(1800)),
        SimPolicy::Warm(0.25),
    ];
    println!(
        "simulate: {n} builds over {:.0} days, 4 labels",
        (t - 1_700_000_000_000) as f64 / 86_400_000.0
    );
    for p in policies {
        let started = Instant::now();
        let hidden = indicatif::ProgressBar::hidden();
        let r = compare(&builds, &[p], &cfg, &hidden);
        let secs = started.elapsed().as_secs_f64();
        let f = &r[&p.name()];
        assert_eq!(f.builds, n);
        println!(
            "{:<16} {:>6.2} s  ({:>9.0} builds/s)  agent-hours {:>9.1}  wait p95 {:>6.0} s",
            p.name(),
            secs,
            n as f64 / secs,
            f.agent_hours,
            f.wait_p95_s
        );
    }
}
