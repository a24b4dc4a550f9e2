//! The `jenkins-autopilot` command line.

use clap::{Parser, Subcommand};
use jenkins_autopilot::config::Settings;
use jenkins_autopilot::startup::Application;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jenkins-autopilot",
    version,
    about = "Sizes Jenkins agent pools and build pods from what builds really do"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Address to listen on (default from settings: 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory for the embedded database and generated secrets (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory of YAML settings (default ./ci-cd-integration when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay a trace of real builds against scaling policies.
    Simulate(SimulateArgs),
    /// Forecast demand: train a model, backtest it, or predict.
    Forecast {
        #[command(subcommand)]
        action: ForecastAction,
    },
    /// Print the performance report of a range from the service's store.
    Report {
        /// 24h, 7d, 30d (any span ending now) or FROM..TO (RFC 3339 or epoch ms).
        #[arg(long, default_value = "7d")]
        range: String,
        /// json, csv, md or html.
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        controller: Option<String>,
        #[arg(long)]
        job: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// The service's data directory (default from settings: ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory of YAML settings (default ./ci-cd-integration).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A tour: the service on a temporary store, fed a real CI trace through its webhooks
    /// against a simulated pool; prints the dashboard's address.
    Demo {
        /// Address for the service (the dashboard is at its root).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Trace seconds per real second in the live replay.
        #[arg(long, default_value_t = 1800.0)]
        speed: f64,
        /// Days of the trace sent at once as recorded history first.
        #[arg(long, default_value_t = 28)]
        history_days: i64,
        /// Stop after this long (default: at Ctrl-C).
        #[arg(long)]
        for_: Option<humantime::Duration>,
    },
    /// What CI costs and how to spend less.
    Cost {
        #[command(subcommand)]
        action: CostAction,
    },
    /// API tokens for pipelines and people.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Read a controller's build history from Jenkins into the store, as the webhooks would
    /// have told it: reports, costs, forecasts and replays from day one. Resumes a stopped
    /// run of the same jobs.
    Backfill {
        /// The controller, as in jenkins.controllers.
        #[arg(long)]
        controller: String,
        /// How far back (a duration).
        #[arg(long, default_value = "90d")]
        since: humantime::Duration,
        /// Only jobs whose full name matches this glob (`team/*`).
        #[arg(long)]
        jobs: Option<String>,
        /// Read and count; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Requests per second to Jenkins (default backfill.max_requests_per_second).
        #[arg(long)]
        max_requests_per_second: Option<f64>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check settings: print every invalid field with its path; exit 1 if any.
    CheckConfig {
        /// Directory of YAML settings (default ./ci-cd-integration).
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Trace CSV: queued_at, job, label, duration_s (optional result, cpu_millicores, memory_mib).
    #[arg(long, required_unless_present = "from_store")]
    trace: Option<PathBuf>,
    /// Replay a configured pool's recorded builds from the store (webhooks or a backfill)
    /// instead of a trace, with the pool's own settings: needs --pool and --frontier.
    #[arg(long, requires_all = ["pool", "frontier"], conflicts_with = "trace")]
    from_store: bool,
    /// The pool (as in scaling.pools) whose builds --from-store replays.
    #[arg(long)]
    pool: Option<String>,
    /// With --from-store: the recorded range, e.g. 30d.
    #[arg(long, default_value = "30d")]
    range: String,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pool settings YAML (executors_per_agent, min, max, idle_headroom, behavior, prices);
    /// default: a pool's defaults.
    #[arg(long)]
    pool_config: Option<PathBuf>,
    /// Replay only this label's builds.
    #[arg(long)]
    label: Option<String>,
    /// The policy to replay: queue (default), seed-queue-half, per-build, oracle, static:N.
    #[arg(long, default_value = "queue")]
    policy: String,
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
    /// table or json.
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct ForecastArgs {
    /// Series CSV: a `timestamp` column (RFC 3339 or epoch seconds) and numeric columns.
    #[arg(long)]
    series: PathBuf,
    /// The numeric column to forecast (default: the second column).
    #[arg(long)]
    column: Option<String>,
    /// How far ahead, e.g. 1h or 10m; rounded up to whole steps.
    #[arg(long, default_value = "1h")]
    horizon: humantime::Duration,
    /// Step of the series; samples within a step are averaged.
    #[arg(long, default_value = "5m")]
    step: humantime::Duration,
    /// Trees in the forest.
    #[arg(long, default_value_t = 100)]
    trees: usize,
    /// Depth limit of each tree.
    #[arg(long, default_value_t = 12)]
    max_depth: u16,
}

#[derive(Subcommand)]
enum ForecastAction {
    /// Rolling-origin backtest against the last value and the seasonal naive.
    Backtest {
        #[command(flatten)]
        args: ForecastArgs,
        /// Folds (one refit each), each a block of --fold steps.
        #[arg(long, default_value_t = 8)]
        folds: usize,
        /// Steps per fold (default: one week of steps).
        #[arg(long)]
        fold: Option<usize>,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Backtest, then train on everything and save the model with its scores.
    Train {
        #[command(flatten)]
        args: ForecastArgs,
        /// Where to save the model.
        #[arg(long, default_value = "data/forecast-model.json")]
        model: PathBuf,
    },
    /// Forecast the value one horizon after the series' last step with a saved model.
    Predict {
        /// Series CSV.
        #[arg(long)]
        series: PathBuf,
        #[arg(long)]
        column: Option<String>,
        /// The saved model.
        #[arg(long, default_value = "data/forecast-model.json")]
        model: PathBuf,
    },
}

/// Success, or the error with its causes on stderr and a failing exit code.
#[derive(Subcommand)]
enum CostAction {
    /// Replay the recorded history against cheaper pool settings and learned build sizes;
    /// print the gentlest plan reaching the target (or the best found) with its evidence.
    Optimize {
        /// Savings sought, percent.
        #[arg(long)]
        target_savings: f64,
        /// The history replayed: 30d (default), 7d, ... or FROM..TO.
        #[arg(long, default_value = "30d")]
        range: String,
        /// Write the planned settings to <config>/optimized.yaml.
        #[arg(long)]
        apply: bool,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// The service's data directory (default from settings: ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory of YAML settings (default ./ci-cd-integration).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn cost_optimize(
    target: f64,
    range: &str,
    apply: bool,
    format: &str,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use jenkins_autopilot::analytics::optimize;
    anyhow::ensure!(
        target > 0.0 && target < 100.0,
        "--target-savings must be above 0 and below 100"
    );
    anyhow::ensure!(
        matches!(format, "table" | "json"),
        "--format must be table or json"
    );
    let dir = config_dir(config);
    let (settings, data_dir) = settings_for(dir.as_deref(), data_dir)?;
    let range = range_arg(range)?;
    let shared = std::sync::Arc::new(settings.clone());
    let (plan, diff) = with_store(&settings, &data_dir, async |store| {
        let metrics = jenkins_autopilot::metrics::Metrics::new();
        Ok(optimize::optimize(store, shared, range, target, &metrics, ()).await?)
    })?;
    if format == "json" {
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
    if apply {
        let dir = dir.ok_or_else(|| {
            anyhow::anyhow!("--apply needs a settings directory (--config, or ./ci-cd-integration)")
        })?;
        let path = optimize::apply(&dir, &diff)?;
        eprintln!("wrote {}; restart the service to use it", path.display());
    }
    Ok(())
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print a token signed with the service's key (from settings, or the secret the
    /// service generated under its data directory; created here when absent).
    Issue {
        /// Who the token is for (`sub`), e.g. jenkins-prod.
        #[arg(long)]
        subject: String,
        /// Scopes: profiles:read, builds:write, reports:read, admin (repeat or comma-separate).
        #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
        scope: Vec<String>,
        /// How long it is valid, e.g. 90d, 12h.
        #[arg(long, default_value = "90d")]
        ttl: humantime::Duration,
        /// The service's data directory (default from settings: ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory of YAML settings (default ./ci-cd-integration).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Create the signing key under the data directory when there is none (for a
        /// service that has not started yet). Without it a missing key is an error: a
        /// token signed with a new key would be refused by the running service.
        #[arg(long)]
        create_secret: bool,
    },
}

#[allow(clippy::too_many_arguments)]
fn report(
    range: &str,
    format: &str,
    filter: jenkins_autopilot::analytics::performance::Filter,
    output: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use jenkins_autopilot::analytics::{performance, render};
    let (settings, data_dir) = settings_for(config_dir(config).as_deref(), data_dir)?;
    let range = range_arg(range)?;
    let format = render::Format::parse(format).map_err(|e| anyhow::anyhow!("--format {e}"))?;
    let text = with_store(&settings, &data_dir, async |store| {
        let r = performance::performance_report(store, &settings, range, filter).await?;
        let frontiers = render::frontiers_drawn(
            store,
            std::sync::Arc::new(settings.clone()),
            range,
            format,
            &jenkins_autopilot::metrics::Metrics::new(),
            (),
        )
        .await?;
        Ok(render::render(&r, format, &frontiers))
    })?;
    match output {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn issue_token(
    subject: &str,
    scopes: &[String],
    ttl: std::time::Duration,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    create_secret: bool,
) -> anyhow::Result<()> {
    use jenkins_autopilot::tokens::{Scope, TokenKeys};
    let (settings, data_dir) = settings_for(config_dir(config).as_deref(), data_dir)?;
    let key = data_dir.join("jwt-secret");
    let generated =
        settings.auth.jwt_secret.is_none() && settings.auth.jwt_public_key_file.is_none();
    anyhow::ensure!(
        !generated || create_secret || key.exists(),
        "no signing key at {}: a token signed with a new key would be refused by the service \
         (401). Give the service's data directory (with the shipped manifests: kubectl -n \
         autopilot exec deploy/jenkins-autopilot -- jenkins-autopilot token issue --subject \
         NAME --scope SCOPES --data-dir /var/lib/jenkins-autopilot), set auth.jwt_secret \
         (AUTOPILOT_AUTH__JWT_SECRET) as the service has it, or pass --create-secret for a \
         service that has not started yet",
        key.display()
    );
    let scopes = scopes
        .iter()
        .map(|s| s.trim().parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    anyhow::ensure!(!ttl.is_zero(), "--ttl must be longer than 0s");
    let keys = TokenKeys::load(&settings.auth, &data_dir)?;
    let token = keys.issue(subject, &scopes, ttl, chrono::Utc::now().timestamp())?;
    println!("{token}");
    Ok(())
}

/// The settings of `dir` and the environment, and the data directory: `--data-dir`, else
/// the settings' own.
fn settings_for(
    dir: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(Settings, PathBuf)> {
    let settings = Settings::load(dir, std::env::vars())
        .map_err(|e| anyhow::anyhow!("invalid settings:\n{e}"))?;
    let data_dir = data_dir.unwrap_or_else(|| settings.server.data_dir.clone());
    Ok((settings, data_dir))
}

/// A `--range` argument.
fn range_arg(raw: &str) -> anyhow::Result<jenkins_autopilot::analytics::Range> {
    jenkins_autopilot::analytics::Range::parse(raw, jenkins_autopilot::domain::Timestamp::now())
        .map_err(|e| anyhow::anyhow!("--range {e}"))
}

/// Runs `f` with the store of these settings, on a runtime of its own; the store is
/// closed afterwards whatever `f` returned.
fn with_store<T>(
    settings: &Settings,
    data_dir: &std::path::Path,
    f: impl AsyncFnOnce(&jenkins_autopilot::store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let store = jenkins_autopilot::store::Store::connect(&settings.database, data_dir).await?;
        let result = f(&store).await;
        store.close().await;
        result
    })
}

#[allow(clippy::too_many_arguments)]
fn backfill(
    controller: &str,
    since: std::time::Duration,
    jobs: Option<String>,
    dry_run: bool,
    rate: Option<f64>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use jenkins_autopilot::backfill::{Options, SharedProgress};
    use jenkins_autopilot::domain::{ControllerName, EventSource, Timestamp};
    let (settings, data_dir) = settings_for(config_dir(config).as_deref(), data_dir)?;
    let name =
        ControllerName::parse(controller).map_err(|e| anyhow::anyhow!("--controller: {e}"))?;
    let jenkins_settings = settings
        .jenkins
        .controller(name.as_str())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--controller: no {name} in jenkins.controllers"))?;
    let since = Timestamp::from_millis(Timestamp::now().millis() - since.as_millis() as i64)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let opts = Options {
        since,
        jobs,
        dry_run,
        max_requests_per_second: rate.unwrap_or(settings.backfill.max_requests_per_second),
        source: EventSource::Backfill,
        backoff: std::time::Duration::from_secs(1),
    };
    with_store(&settings, &data_dir, async |store| {
        let jenkins = jenkins_autopilot::jenkins::JenkinsClient::new(&jenkins_settings)?;
        let progress = SharedProgress::default();
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} jobs  {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let watch = {
            let (progress, bar) = (progress.clone(), bar.clone());
            tokio::spawn(async move {
                loop {
                    let p = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    bar.set_length(p.jobs_total);
                    bar.set_position(p.jobs_done);
                    bar.set_message(format!(
                        "{} builds read, {} new, {} requests",
                        p.builds_read, p.events_stored, p.requests
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            })
        };
        let result =
            jenkins_autopilot::backfill::run(store, &jenkins, &settings, &name, &opts, &progress)
                .await;
        watch.abort();
        bar.finish_and_clear();
        let p = result?;
        println!(
            "backfill of {name}: {} jobs ({} resumed), {} builds read, {} new, {} refused, {} requests{}",
            p.jobs_done,
            p.jobs_resumed,
            p.builds_read,
            p.events_stored,
            p.builds_refused,
            p.requests,
            if p.dry_run {
                " (dry run: nothing stored)"
            } else {
                ""
            }
        );
        Ok(())
    })
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from("ci-cd-integration");
        default.is_dir().then_some(default)
    })
}

/// mimalloc instead of the system allocator: the store's connections each run on a thread
/// of their own, and glibc's per-thread arenas kept what an hourly rollup had freed, so the
/// service's resident memory crept up for as long as it ran.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process: ring, shared by kube, reqwest and sqlx.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => exit_code(simulate(args)),
        Command::Forecast { action } => exit_code(forecast(action)),
        Command::Report {
            range,
            format,
            controller,
            job,
            label,
            output,
            data_dir,
            config,
        } => exit_code(report(
            &range,
            &format,
            jenkins_autopilot::analytics::performance::Filter {
                controller,
                job,
                label,
            },
            output,
            data_dir,
            config,
        )),
        Command::Cost {
            action:
                CostAction::Optimize {
                    target_savings,
                    range,
                    apply,
                    format,
                    data_dir,
                    config,
                },
        } => exit_code(cost_optimize(
            target_savings,
            &range,
            apply,
            &format,
            data_dir,
            config,
        )),
        Command::Demo {
            listen,
            speed,
            history_days,
            for_,
        } => {
            if !(speed.is_finite() && speed > 0.0) || history_days < 0 {
                eprintln!("error: --speed must be above 0 and --history-days at least 0");
                return ExitCode::FAILURE;
            }
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
            let mut logging = match Settings::load(None, Vec::new()) {
                Ok(s) => s.logging,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            logging.filter = filter;
            jenkins_autopilot::telemetry::init(&logging);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            exit_code(runtime.block_on(jenkins_autopilot::demo::run(
                jenkins_autopilot::demo::DemoOptions {
                    listen,
                    speed,
                    history_days,
                    live_for: for_.map(Into::into),
                },
            )))
        }
        Command::Token {
            action:
                TokenAction::Issue {
                    subject,
                    scope,
                    ttl,
                    data_dir,
                    config,
                    create_secret,
                },
        } => exit_code(issue_token(
            &subject,
            &scope,
            *ttl,
            data_dir,
            config,
            create_secret,
        )),
        Command::Backfill {
            controller,
            since,
            jobs,
            dry_run,
            max_requests_per_second,
            data_dir,
            config,
        } => exit_code(backfill(
            &controller,
            since.into(),
            jobs,
            dry_run,
            max_requests_per_second,
            data_dir,
            config,
        )),
        Command::CheckConfig { dir } => {
            let dir = config_dir(dir);
            match Settings::load(dir.as_deref(), std::env::vars()) {
                Ok(_) => {
                    println!(
                        "settings are valid ({})",
                        dir.map_or("built-in defaults".into(), |d| d.display().to_string())
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprint!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            let mut settings = match Settings::load(config_dir(config).as_deref(), std::env::vars())
            {
                Ok(s) => s,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(l) = listen {
                settings.server.listen = l;
            }
            if let Some(d) = data_dir {
                settings.server.data_dir = d;
            }
            jenkins_autopilot::telemetry::init(&settings.logging);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "service stopped with an error");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `simulate --from-store --pool NAME --frontier`: the pool's frontier on its recorded
/// builds, its current settings marked, as the pools API and the dashboard show it.
fn simulate_from_store(args: &SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.format.as_str(), "table" | "json"),
        "--format must be table or json"
    );
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
        Ok(jenkins_autopilot::analytics::frontier::pool_frontiers(
            store,
            settings.clone(),
            range,
            Some(&pool),
            &jenkins_autopilot::metrics::Metrics::new(),
            (),
        )
        .await?)
    })?;
    let r = replayed.into_iter().next().expect("the pool exists");
    anyhow::ensure!(
        r.builds_in_range > 0,
        "pool {pool} has no finished builds recorded in the range: widen --range, or backfill its history (jenkins-autopilot backfill)"
    );
    if args.format == "json" {
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
        jenkins_autopilot::sim::frontier_table(&jenkins_autopilot::sim::Frontier {
            oracle_agent_hours: r.frontier.oracle_agent_hours,
            frontier: points,
        })
    );
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    if args.from_store {
        return simulate_from_store(&args);
    }
    let SimulateArgs {
        trace,
        pool_config,
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
    let format = format.as_str();
    use anyhow::Context;
    use jenkins_autopilot::sim::{self, SimPolicy};
    use std::time::Duration;
    anyhow::ensure!(
        matches!(format, "table" | "json"),
        "--format must be table or json"
    );
    let settings: sim::SimPoolSettings = match &pool_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a valid pool configuration", path.display()))?
        }
        None => sim::SimPoolSettings::default(),
    };
    for (i, s) in settings.schedules.iter().enumerate() {
        jenkins_autopilot::scaling::schedule::Schedule::parse(s)
            .map_err(|e| anyhow::anyhow!("--pool-config: schedules[{i}]: {e}"))?;
    }
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
    if frontier {
        let progress =
            indicatif::ProgressBar::new((builds.len() * (sim::FRONTIER.len() + 1)) as u64);
        let f = sim::frontier(&builds, &settings, startup, period, &progress);
        if format == "json" {
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
        None => {
            vec![SimPolicy::parse(&policy).with_context(|| format!("unknown policy {policy:?}"))?]
        }
        Some(list) if list.is_empty() => {
            // The static pool sized to the oracle's peak: what a fixed pool needs never to queue.
            let peak = sim::peak_agents(&builds, &settings.config(startup, period));
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
    let results = sim::compare(&builds, &policies, &settings, startup, period, &progress);
    if format == "json" {
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

fn forecast(action: ForecastAction) -> anyhow::Result<()> {
    use anyhow::Context;
    use jenkins_autopilot::forecast::{self, Model, ModelParams, Series};
    let load = |a: &ForecastArgs| -> anyhow::Result<(Series, usize, ModelParams)> {
        let step_ms = a.step.as_millis() as i64;
        anyhow::ensure!(step_ms > 0, "--step must be positive");
        let series = Series::read_csv(&a.series, a.column.as_deref(), step_ms)?;
        let h = (a.horizon.as_millis() as u64)
            .div_ceil(step_ms as u64)
            .max(1) as usize;
        Ok((
            series,
            h,
            ModelParams {
                trees: a.trees,
                max_depth: a.max_depth,
                seed: 42,
            },
        ))
    };
    match action {
        ForecastAction::Backtest {
            args,
            folds,
            fold,
            format,
        } => {
            let (series, h, params) = load(&args)?;
            let fold = fold.unwrap_or(series.steps_per_day() * 7);
            let b = forecast::backtest(&series, h, params, folds, fold)?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!(
                    "{} steps of {}, horizon {h} step(s), {} folds, {} points",
                    series.values.len(),
                    args.step,
                    b.folds,
                    b.points
                );
                println!("{:<16} {:>10} {:>10}", "", "MAE", "RMSE");
                for (name, mae, rmse) in [
                    ("model", b.mae.model, b.rmse.model),
                    ("last value", b.mae.last_value, b.rmse.last_value),
                    (
                        "seasonal naive",
                        b.mae.seasonal_naive,
                        b.rmse.seasonal_naive,
                    ),
                ] {
                    println!("{name:<16} {mae:>10.3} {rmse:>10.3}");
                }
            }
        }
        ForecastAction::Train { args, model } => {
            let (series, h, params) = load(&args)?;
            let scores = forecast::backtest(&series, h, params, 4, series.steps_per_day() * 7).ok();
            let mut trained = Model::train(&series, h, params, series.values.len())?;
            trained.backtest = scores;
            if let Some(dir) = model.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&model, serde_json::to_vec(&trained)?)
                .with_context(|| format!("writing {}", model.display()))?;
            println!(
                "trained on {} rows ({} .. {}); saved to {}{}",
                trained.rows,
                jenkins_autopilot::domain::Timestamp::from_millis(trained.trained_from_ms)?
                    .to_rfc3339(),
                jenkins_autopilot::domain::Timestamp::from_millis(trained.trained_to_ms)?
                    .to_rfc3339(),
                model.display(),
                trained
                    .backtest
                    .as_ref()
                    .map(|b| format!(
                        "; backtest MAE {:.3} (last value {:.3}, seasonal naive {:.3})",
                        b.mae.model, b.mae.last_value, b.mae.seasonal_naive
                    ))
                    .unwrap_or_default()
            );
        }
        ForecastAction::Predict {
            series,
            column,
            model,
        } => {
            let text =
                std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            let trained: Model = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a saved model", model.display()))?;
            let series = Series::read_csv(&series, column.as_deref(), trained.step_ms)?;
            let t = series.values.len() - 1;
            let value = trained.predict(&series, t).context(
                "the series is too short to forecast from (a week of history is needed)",
            )?;
            let at = series.start_ms + (t + trained.horizon_steps) as i64 * trained.step_ms;
            println!(
                "{}",
                serde_json::json!({"at": jenkins_autopilot::domain::Timestamp::from_millis(at)?.to_rfc3339(), "forecast": value, "last": series.values[t]})
            );
        }
    }
    Ok(())
}
