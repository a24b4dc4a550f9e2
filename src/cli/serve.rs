//! `serve`: run the service.

use super::config_dir;
use crate::config::Settings;
use crate::startup::Application;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// `serve`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (default from settings: 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the embedded database and generated secrets (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory of YAML settings (default ./ci-cd-integration when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs the service until it is stopped; a settings error prints every invalid field.
pub fn run(args: Args) -> ExitCode {
    // No transparent huge pages for the service: its allocator asks for them on its
    // segments, and a 2 MiB page stays resident while any 4 KiB of it is in use, so
    // memory freed inside it was never given back (24 MB of 37 MB of heap were huge pages
    // after ten minutes of the soak, and resident memory crept from 58 to 80 MB in an
    // hour). With 4 KiB pages what is freed is returned.
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("could not turn transparent huge pages off ({e}); memory may creep");
    }
    let mut settings = match Settings::load(config_dir(args.config).as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(l) = args.listen {
        settings.server.listen = l;
    }
    if let Some(d) = args.data_dir {
        settings.server.data_dir = d;
    }
    crate::telemetry::init(&settings.logging);
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
