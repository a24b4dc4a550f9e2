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
    Simulate {
        /// Trace CSV: queued_at, job, label, duration_s (optional result, cpu_millicores, memory_mib).
        #[arg(long)]
        trace: PathBuf,
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
        /// Seconds from a pod's creation to its agent being ready.
        #[arg(long, default_value_t = 60)]
        pod_startup: u64,
        /// The controller's reconcile period, seconds.
        #[arg(long, default_value_t = 10)]
        reconcile: u64,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Check settings: print every invalid field with its path; exit 1 if any.
    CheckConfig {
        /// Directory of YAML settings (default ./ci-cd-integration).
        dir: Option<PathBuf>,
    },
}

fn config_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from("ci-cd-integration");
        default.is_dir().then_some(default)
    })
}

fn main() -> ExitCode {
    // One TLS provider for the whole process: ring, shared by kube, reqwest and sqlx.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate {
            trace,
            pool_config,
            label,
            policy,
            compare,
            pod_startup,
            reconcile,
            format,
        } => {
            match simulate(
                trace,
                pool_config,
                label,
                policy,
                compare,
                pod_startup,
                reconcile,
                &format,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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

#[allow(clippy::too_many_arguments)]
fn simulate(
    trace: PathBuf,
    pool_config: Option<PathBuf>,
    label: Option<String>,
    policy: String,
    compare: Option<Vec<String>>,
    pod_startup: u64,
    reconcile: u64,
    format: &str,
) -> anyhow::Result<()> {
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
    let mut builds = sim::trace::read(&trace)?;
    if let Some(l) = &label {
        builds.retain(|b| &b.label == l);
        anyhow::ensure!(
            !builds.is_empty(),
            "the trace has no builds with label {l:?}"
        );
    }
    let startup = Duration::from_secs(pod_startup);
    let period = Duration::from_secs(reconcile.max(1));
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
            "{} builds, {} label(s), pod start-up {pod_startup} s, reconcile every {reconcile} s",
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
