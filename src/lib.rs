//! jenkins-autopilot: receives Jenkins build and queue events, keeps every build's record,
//! and (in later modules) sizes agent pools and build pods from what it learns.

pub mod analytics;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod controller;
pub mod cost;
pub mod domain;
pub mod forecast;
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod jenkins;
pub mod jobs;
pub mod kube;
pub mod leader;
pub mod metrics;
pub mod profiles;
pub mod scaling;
pub mod secrets;
pub mod sim;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tokens;
