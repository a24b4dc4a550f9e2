//! `check-config`: print every invalid setting with its path; exit 1 if any.

use super::config_dir;
use crate::config::Settings;
use std::path::PathBuf;
use std::process::ExitCode;

/// `check-config`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of YAML settings (default ./ci-cd-integration).
    dir: Option<PathBuf>,
}

/// Checks the settings of the directory and the environment.
pub fn run(args: Args) -> ExitCode {
    let dir = config_dir(args.dir);
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
