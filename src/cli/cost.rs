//! `cost optimize`: replay the recorded history against cheaper settings and print the
//! gentlest plan that reaches the savings sought.

use super::{Output, Service, config_dir, range_arg, settings_for, with_store};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Replay the recorded history against cheaper pool settings and learned build sizes;
    /// print the gentlest plan reaching the target (or the best found) with its evidence.
    Optimize(OptimizeArgs),
}

/// `cost optimize`'s arguments.
#[derive(clap::Args)]
pub struct OptimizeArgs {
    /// Savings sought, percent.
    #[arg(long)]
    target_savings: f64,
    /// The history replayed: 30d (default), 7d, ... or FROM..TO.
    #[arg(long, default_value = "30d")]
    range: String,
    /// Write the planned settings to <config>/optimized.yaml.
    #[arg(long)]
    apply: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    format: Output,
    #[command(flatten)]
    service: Service,
}

/// Runs the command.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Optimize(args) => optimize(args),
    }
}

fn optimize(args: OptimizeArgs) -> anyhow::Result<()> {
    use crate::analytics::optimize;
    let target = args.target_savings;
    anyhow::ensure!(
        target > 0.0 && target < 100.0,
        "--target-savings must be above 0 and below 100"
    );
    let dir = config_dir(args.service.config);
    let (settings, data_dir) = settings_for(dir.as_deref(), args.service.data_dir)?;
    let range = range_arg(&args.range)?;
    let shared = std::sync::Arc::new(settings.clone());
    let (plan, diff) = with_store(&settings, &data_dir, async |store| {
        let metrics = crate::metrics::Metrics::new();
        Ok(optimize::optimize(store, shared, range, target, &metrics, ()).await?)
    })?;
    if args.format == Output::Json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        println!("{}", plan.message);
        println!(
            "cost {:.2} -> {:.2} {} (saved {:.2}, {:.1} %); queue-wait p95 {:.0} s -> {:.0} s; {} settings replayed",
            plan.cost_before,
            plan.cost_after,
            plan.currency,
            plan.saved,
            plan.saved_percent,
            plan.wait_p95_before_s,
            plan.wait_p95_after_s,
            plan.evaluated
        );
        for p in &plan.pools {
            println!(
                "pool {}: {} builds, {:.2} -> {:.2}, p95 {:.0} s -> {:.0} s{}",
                p.pool,
                p.builds,
                p.before.cost,
                p.after.cost,
                p.before.wait_p95_s,
                p.after.wait_p95_s,
                p.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            for c in &p.changes {
                println!("  {}: {} -> {}", c.setting, c.from, c.to);
            }
        }
        for j in &plan.profiles {
            println!(
                "job {} ({}): learned {} CPU / {} memory, {:.2} -> {:.2} over {} builds",
                j.job,
                j.build_type,
                j.recommended.cpu,
                j.recommended.memory,
                j.cost_before,
                j.cost_after,
                j.builds
            );
        }
        if !diff.is_empty() {
            println!("\n{diff}");
        }
    }
    if args.apply {
        let dir = dir.ok_or_else(|| {
            anyhow::anyhow!("--apply needs a settings directory (--config, or ./ci-cd-integration)")
        })?;
        let path = optimize::apply(&dir, &diff)?;
        eprintln!("wrote {}; restart the service to use it", path.display());
    }
    Ok(())
}
