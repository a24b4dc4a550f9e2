//! The `jenkins-autopilot` command line: parse and dispatch; each command lives in
//! `jenkins_autopilot::cli`.

use clap::{Parser, Subcommand};
use jenkins_autopilot::cli::{self, exit_code};
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
    Serve(cli::serve::Args),
    /// Replay a trace of real builds against scaling policies.
    Simulate(cli::simulate::Args),
    /// Forecast demand: train a model, backtest it, or predict.
    Forecast {
        #[command(subcommand)]
        action: cli::forecast::Action,
    },
    /// Print the performance report of a range from the service's store.
    Report(cli::report::Args),
    /// A tour: the service on a temporary store, fed a real CI trace through its webhooks
    /// against a simulated pool; prints the dashboard's address.
    Demo(cli::demo::Args),
    /// What CI costs and how to spend less.
    Cost {
        #[command(subcommand)]
        action: cli::cost::Action,
    },
    /// API tokens for pipelines and people.
    Token {
        #[command(subcommand)]
        action: cli::token::Action,
    },
    /// Read a controller's build history from Jenkins into the store, as the webhooks would
    /// have told it: reports, costs, forecasts and replays from day one. Resumes a stopped
    /// run of the same jobs.
    Backfill(cli::backfill::Args),
    /// Check settings: print every invalid field with its path; exit 1 if any.
    CheckConfig(cli::check_config::Args),
}

/// mimalloc instead of the system allocator: the store's connections each run on a thread
/// of their own, and glibc's per-thread arenas kept what an hourly rollup had freed, so the
/// service's resident memory crept up for as long as it ran.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process: ring, shared by kube, reqwest and sqlx.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Simulate(args) => exit_code(cli::simulate::run(args)),
        Command::Forecast { action } => exit_code(cli::forecast::run(action)),
        Command::Report(args) => exit_code(cli::report::run(args)),
        Command::Demo(args) => cli::demo::run(args),
        Command::Cost { action } => exit_code(cli::cost::run(action)),
        Command::Token { action } => exit_code(cli::token::run(action)),
        Command::Backfill(args) => exit_code(cli::backfill::run(args)),
        Command::CheckConfig(args) => cli::check_config::run(args),
    }
}
