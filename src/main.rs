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
