//! Agent pool scaling. The decision core is pure (`decide`, `behavior`); the controller
//! gathers snapshots from Jenkins and Kubernetes, calls it, and applies the result.

pub mod behavior;
pub mod controller;
pub mod decide;
pub mod demand;
pub mod multi_metric;
pub mod plan;
pub mod schedule;
pub mod warm;
pub mod warm_live;

pub use behavior::{Behavior, History, PolicyKind, RatePolicy, ScalingRules, SelectPolicy};
pub use decide::{PolicyName, PoolShape, PoolSnapshot, Rule, ScaleDecision, ScalePolicy, decide};
