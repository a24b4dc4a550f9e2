//! What a replay takes and what it measures.

/// A build to replay: queue time and duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimBuild {
    pub queued_at: i64,
    pub duration: i64,
}

/// What a replay measured. Waits in milliseconds, one per build, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimOutcome {
    pub waits_ms: Vec<i64>,
    /// Agent lifetime summed, from creation (start-up included) to removal.
    pub agent_ms: i64,
    /// Executor time spent running builds.
    pub busy_executor_ms: i64,
    /// Executor time provisioned (agent time x executors per agent).
    pub provisioned_executor_ms: i64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub busy_agents_removed: u64,
}
