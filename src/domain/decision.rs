//! What a pool's scaling decision was made from, stored with it: the API answers it, the
//! dashboard draws it, and the profile selection reads a pool's load from it. Typed, so a
//! renamed field is a compile error, not every reader quietly finding nothing. A decision
//! whose reads failed has none of it; rows from older releases read with what they have.

use serde::{Deserialize, Serialize};

/// What became of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The Deployment was scaled to the decision.
    Applied,
    /// The decision kept the replicas there were.
    Unchanged,
    /// No cluster: the decision was recorded, nothing scaled.
    DryRun,
    /// A read failed: the pool held its size, no decision was made.
    Held,
    /// Scaling failed: the pool is as it was.
    Failed,
}

impl Outcome {
    /// Whether the pool was left at the replicas decided (`applied`, `unchanged`,
    /// `dry-run`) rather than at those it had (`held`, `failed`).
    pub fn took_effect(self) -> bool {
        matches!(self, Self::Applied | Self::Unchanged | Self::DryRun)
    }
}

/// A unit enum by the name serde writes for it (`dry-run`, `hold-on-error`); `None` for
/// any other text.
pub fn from_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// The name serde writes for a unit enum's value.
pub fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The decision's snapshot of the pool, as JSON keeps it (absent fields are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DecisionInputs {
    /// Builds waiting for the pool's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    /// Where that count came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_sources: Option<QueueDemand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_executors: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_executors: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_agents: Option<u32>,
    /// The agents running builds, by node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_nodes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_agents: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_agents: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<u32>,
    /// Agents a predictive pool added for the forecast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_extra: Option<u32>,
    /// Utilisation and demand signals as the multi-metric policy scores them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub signals: Option<serde_json::Value>,
    /// A warm pool's idle agents and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmInputs>,
    /// Pod start-up as measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup: Option<StartupInputs>,
    /// The demand forecast the pool consulted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastInputs>,
}

/// The queue length for one label and where it came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct QueueDemand {
    pub queued: u32,
    /// Jenkins' load statistics (10-second series, rounded).
    pub load_statistics: u32,
    /// Items whose `why` names the label.
    pub from_why: u32,
    /// Items Jenkins still lists whose label only a webhook told.
    pub from_events: u32,
    /// Builds pipelines announced as about to wait (`autopilot.node`), not yet expired:
    /// the queue counts at least these, since Jenkins may not list them yet.
    pub announced: u32,
}

/// A warm pool's part of a decision: the idle agents it keeps; the model's figures, the
/// guard's verdict and the reason ride along as the warm plan wrote them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmInputs {
    #[serde(default)]
    pub agents: u32,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

/// Pod start-up as the pool measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct StartupInputs {
    pub samples: usize,
    pub measured_p50_ms: Option<i64>,
    pub measured_p95_ms: Option<i64>,
}

/// The forecast: builds expected at `target_at`, and whether the pool acts on it (both
/// `null` until a model is trained).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ForecastInputs {
    pub value: Option<f64>,
    pub target_at: Option<i64>,
    pub acting: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision's inputs as the controller has written them since they were JSON: read
    /// into the types and written back, the same document.
    #[test]
    fn stored_inputs_read_and_write_back_the_same() {
        let stored = serde_json::json!({
            "queued": 3,
            "queue_sources": {"queued": 3, "load_statistics": 2, "from_why": 3,
                "from_events": 0, "announced": 1},
            "busy_executors": 4, "idle_executors": 0, "busy_agents": 4,
            "busy_nodes": ["agent-a", "agent-b"], "ready_agents": 4, "pending_agents": 1,
            "current_replicas": 5, "forecast_extra": 0,
            "signals": {"scored_by": "weighted", "acting": false, "desired": 5,
                "total_score": 0.5, "reason": "r", "scores": []},
            "warm": {"agents": 1, "worth_first": 2.5, "price": null, "spent_hours": 1.0,
                "allowed_hours": 3.0, "reason": "kept", "guard": null, "acting": true,
                "would_keep": 1},
            "startup": {"samples": 7, "measured_p50_ms": 40000, "measured_p95_ms": null},
            "forecast": {"value": null, "target_at": null, "acting": false},
        });
        let typed: DecisionInputs = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(typed.busy_executors, Some(4));
        assert_eq!(typed.warm.as_ref().map(|w| w.agents), Some(1));
        assert_eq!(typed.queue_sources.map(|q| q.announced), Some(1));
        assert_eq!(serde_json::to_value(&typed).unwrap(), stored);
        // A decision whose reads failed stored nothing; a row of an older release may
        // lack any field.
        let empty: DecisionInputs = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, DecisionInputs::default());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
    }
}
