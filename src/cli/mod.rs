//! The `jenkins-autopilot` commands: one file each, with its arguments and its output.
//! `main.rs` parses the command line and calls the command's `run`.

pub mod backfill;
pub mod check_config;
pub mod cost;
pub mod demo;
pub mod forecast;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod token;

use crate::config::Settings;
use std::path::PathBuf;
use std::process::ExitCode;

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people.
    Table,
    /// For programs.
    Json,
}

/// Where a command reads the service's settings and store.
#[derive(Debug, Clone, clap::Args)]
pub struct Service {
    /// The service's data directory (default from settings: ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory of YAML settings (default ./ci-cd-integration).
    #[arg(long)]
    pub config: Option<PathBuf>,
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
fn range_arg(raw: &str) -> anyhow::Result<crate::analytics::Range> {
    crate::analytics::Range::parse(raw, crate::domain::Timestamp::now())
        .map_err(|e| anyhow::anyhow!("--range {e}"))
}

/// Runs `f` with the store of these settings, on a runtime of its own; the store is
/// closed afterwards whatever `f` returned.
fn with_store<T>(
    settings: &Settings,
    data_dir: &std::path::Path,
    f: impl AsyncFnOnce(&crate::store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let store = crate::store::Store::connect(&settings.database, data_dir).await?;
        let result = f(&store).await;
        store.close().await;
        result
    })
}

/// Success, or the error with its causes on stderr and a failing exit code.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings directory: the one given, else `./ci-cd-integration` when it exists.
pub fn config_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from("ci-cd-integration");
        default.is_dir().then_some(default)
    })
}
