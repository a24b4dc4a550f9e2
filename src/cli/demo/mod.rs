//! `demo`: a tour of the service on a temporary store, fed a real CI trace through its
//! webhooks against a simulated pool (`tour`).

mod tour;

pub use tour::{DemoOptions, run as tour};

use crate::config::Settings;
use std::net::SocketAddr;
use std::process::ExitCode;

/// `demo`'s arguments.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs the tour until `--for` has passed or Ctrl-C.
pub fn run(args: Args) -> ExitCode {
    if !(args.speed.is_finite() && args.speed > 0.0) || args.history_days < 0 {
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
    crate::telemetry::init(&logging);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    super::exit_code(runtime.block_on(tour(DemoOptions {
        listen: args.listen,
        speed: args.speed,
        history_days: args.history_days,
        live_for: args.for_.map(Into::into),
    })))
}
