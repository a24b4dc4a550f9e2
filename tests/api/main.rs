//! Integration tests: the real application on port 0, driven over HTTP.

mod auth;
mod backfill;
mod bad_input;
mod cli;
mod cloudevents;
mod costs;
mod dashboard;
mod demo;
mod fake_jenkins;
mod fake_kube;
mod faults;
mod helpers;
mod install;
mod leader;
mod lifecycle;
mod notification;
mod ops;
mod optimize;
mod persistence;
mod profiles;
mod reports;
mod rollups;
mod scaling;
mod shared_library;
mod statistics;
mod store;
