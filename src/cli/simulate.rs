//! `simulate`: replay a trace of real builds (or a pool's recorded builds) against scaling
//! policies, side by side or along each family's frontier.

use super::{Output, config_dir, range_arg, settings_for, with_store};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Trace CSV: queued_at, job, label, duration_s (optional result, cpu_millicores, memory_mib).
    #[arg(long, required_unless_present = "from_store")]
    trace: Option<PathBuf>,
    /// Replay a configured pool's recorded builds from the store (webhooks or a backfill)
    /// instead of a trace, with the pool's own settings: needs --pool and --frontier.
    #[arg(long, requires_all = ["pool", "frontier"], conflicts_with = "trace")]
    from_store: bool,
    /// A configured pool (as in scaling.pools of --config): --from-store replays its
    /// recorded builds; with --trace, the trace is replayed with its settings.
    #[arg(long, conflicts_with = "pool_config")]
    pool: Option<String>,
    /// With --from-store: the recorded range, e.g. 30d.
    #[arg(long, default_value = "30d")]
    range: String,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// A pool's settings in the service's schema (one entry of scaling.pools: policy,
    /// sizes, behavior, warm, keep_idle, schedules, agent), checked as the service checks
    /// them; priced at --config's cost.prices. Default: a pool of the service's defaults.
    #[arg(long)]
    pool_config: Option<PathBuf>,
    /// Replay only this label's builds.
    #[arg(long)]
    label: Option<String>,
    /// The policy to replay: queue, seed-queue-half, per-build, oracle, static:N,
    /// window:M, keep-idle:M, headroom:N, warm:PERCENT, predictive, multi-metric. Default:
    /// the pool's own (`queue` for the defaults).
    #[arg(long)]
    policy: Option<String>,
    /// Replay several policies side by side; without a list: static:N (N = the oracle's
    /// peak), seed-queue-half, queue, per-build, oracle.
    #[arg(long, num_args = 0.., value_delimiter = ',')]
    compare: Option<Vec<String>>,
    /// Sweep each family's knob on the trace (window 0-240 min, keep-idle 10-120 min,
    /// headroom 1-2, warm budget 5-100 %): agent-hours against builds started at once.
    #[arg(long, conflicts_with = "compare")]
    frontier: bool,
    /// From a pod's creation to its agent being ready: seconds (`60`), a duration (`90s`),
    /// or a distribution by its median and 95th percentile (`p50=45s,p95=180s`, each agent
    /// drawing its own from a log-normal with those).
    #[arg(long, default_value = "60")]
    pod_startup: String,
    /// The controller's reconcile period, seconds.
    #[arg(long, default_value_t = 10)]
    reconcile: u64,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    format: Output,
}

/// `simulate --from-store --pool NAME --frontier`: the pool's frontier on its recorded
/// builds, its current settings marked, as the pools API and the dashboard show it.
fn simulate_from_store(args: &Args) -> anyhow::Result<()> {
    let pool = args.pool.clone().expect("clap requires --pool");
    let (settings, data_dir) = settings_for(
        config_dir(args.config.clone()).as_deref(),
        args.data_dir.clone(),
    )?;
    anyhow::ensure!(
        settings.scaling.pools.contains_key(&pool),
        "--pool: no pool {pool:?} in scaling.pools"
    );
    let range = range_arg(&args.range)?;
    let settings = std::sync::Arc::new(settings);
    let replayed = with_store(&settings, &data_dir, async |store| {
        Ok(crate::analytics::frontier::pool_frontiers(
            store,
            settings.clone(),
            range,
            Some(&pool),
            &crate::metrics::Metrics::new(),
            (),
        )
        .await?)
    })?;
    let r = replayed.into_iter().next().expect("the pool exists");
    anyhow::ensure!(
        r.builds_in_range > 0,
        "pool {pool} has no finished builds recorded in the range: widen --range, or backfill its history (jenkins-autopilot backfill)"
    );
    if args.format == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} recorded builds of pool {pool} ({} replayed); its current settings: {}",
        r.builds_in_range, r.frontier.builds, r.frontier.current.setting
    );
    let mut points = r.frontier.frontier.clone();
    points.push(r.frontier.current.clone());
    print!(
        "{}",
        crate::sim::frontier_table(&crate::sim::Frontier {
            oracle_agent_hours: r.frontier.oracle_agent_hours,
            frontier: points,
        })
    );
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.from_store {
        return simulate_from_store(&args);
    }
    let (service, _) = settings_for(config_dir(args.config.clone()).as_deref(), None)?;
    let pool = replayed_pool(&args, &service)?;
    let Args {
        trace,
        label,
        policy,
        compare,
        frontier,
        pod_startup,
        reconcile,
        format,
        ..
    } = args;
    let trace = trace.expect("clap requires --trace without --from-store");
    use crate::sim::{self, SimPolicy};
    use anyhow::Context;
    use std::time::Duration;
    let mut builds = sim::trace::read(&trace)?;
    if let Some(l) = &label {
        builds.retain(|b| &b.label == l);
        anyhow::ensure!(
            !builds.is_empty(),
            "the trace has no builds with label {l:?}"
        );
    }
    let startup = sim::startup::Startup::parse(&pod_startup)
        .map_err(|e| anyhow::anyhow!("--pod-startup: {e}"))?;
    let period = Duration::from_secs(reconcile.max(1));
    let policy_of_pool = crate::config::PoolPolicy::from(&pool);
    let cfg = sim::SimConfig::new(&policy_of_pool, &service).with_timing(startup, period);
    if frontier {
        let progress =
            indicatif::ProgressBar::new((builds.len() * (sim::FRONTIER.len() + 1)) as u64);
        let f = sim::frontier(&builds, &cfg, &progress);
        if format == Output::Json {
            println!("{}", serde_json::to_string_pretty(&f)?);
        } else {
            println!(
                "{} builds, pod start-up {startup}, reconcile every {reconcile} s",
                builds.len()
            );
            print!("{}", sim::frontier_table(&f));
        }
        return Ok(());
    }
    let policies: Vec<SimPolicy> = match compare {
        None => match policy {
            Some(p) => vec![SimPolicy::parse(&p).with_context(|| format!("unknown policy {p:?}"))?],
            None => vec![SimPolicy::from(&policy_of_pool)],
        },
        Some(list) if list.is_empty() => {
            // The static pool sized to the oracle's peak: what a fixed pool needs never to queue.
            let peak = sim::peak_agents(&builds, &cfg);
            vec![
                SimPolicy::Static(peak),
                SimPolicy::SeedQueueHalf,
                SimPolicy::Queue,
                SimPolicy::PerBuild,
                SimPolicy::Predictive,
                SimPolicy::MultiMetric,
                SimPolicy::Oracle,
            ]
        }
        Some(list) => list
            .iter()
            .map(|p| SimPolicy::parse(p).with_context(|| format!("unknown policy {p:?}")))
            .collect::<anyhow::Result<_>>()?,
    };
    let progress = indicatif::ProgressBar::new((builds.len() * policies.len()) as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replaying {msg} [{bar:30}] {pos}/{len} builds",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let results = sim::compare(&builds, &policies, &cfg, &progress);
    if format == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"policies": results}))?
        );
    } else {
        println!(
            "{} builds, {} label(s), pod start-up {startup}, reconcile every {reconcile} s",
            builds.len(),
            builds
                .iter()
                .map(|b| b.label.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        print!("{}", sim::table(&results, &policies));
    }
    Ok(())
}

/// The pool a trace is replayed with: `--pool-config`'s file, `--pool`'s configured pool,
/// or a pool of the service's defaults.
fn replayed_pool(
    args: &Args,
    service: &crate::config::Settings,
) -> anyhow::Result<crate::config::PoolSettings> {
    use anyhow::Context;
    if let Some(path) = &args.pool_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let shown = path.display().to_string();
        return crate::config::PoolSettings::from_yaml(&shown, &text)
            .map_err(|e| anyhow::anyhow!("--pool-config is not a valid pool:\n{e}"));
    }
    if let Some(name) = &args.pool {
        return service
            .scaling
            .pools
            .get(name)
            .cloned()
            .with_context(|| format!("--pool: no pool {name:?} in scaling.pools"));
    }
    // The replay reads no name of the pool: these only satisfy the schema.
    Ok(serde_yaml::from_str(
        "{controller: trace, label: trace, namespace: trace, deployment: trace}",
    )?)
}
