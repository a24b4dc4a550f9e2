//! Agent pool scaling: the pure decision core (`decide`, `behavior`, `plan`, `warm`,
//! schedules, multi-metric) and the ports through which the controller (`crate::controller`)
//! and the replay world (`crate::sim::world`) give it the world. Nothing here reads a
//! clock, a socket, a file or the database.

pub mod behavior;
pub mod decide;
pub mod demand;
pub mod history;
pub mod multi_metric;
pub mod plan;
pub mod ports;
pub mod schedule;
pub mod warm;

pub use behavior::{Behavior, History, PolicyKind, RatePolicy, ScalingRules, SelectPolicy};
pub use decide::{PolicyName, PoolShape, PoolSnapshot, Rule, ScaleDecision, ScalePolicy, decide};
