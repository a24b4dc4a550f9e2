//! Domain events: what a webhook told us, validated, before it touches the store.

use super::{ControllerName, JobName, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which plugin sent an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Notification,
    CloudEvents,
    Statistics,
    /// Read from Jenkins' build history by a backfill.
    Backfill,
    /// Read from Jenkins' recent history by the repair of lost webhooks.
    Repair,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::CloudEvents => "cloudevents",
            Self::Statistics => "statistics",
            Self::Backfill => "backfill",
            Self::Repair => "repair",
        }
    }
}

/// One event ready to store: its idempotency key, where it came from, what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestEvent {
    /// Unique per real-world event: a redelivery carries the same key and stores nothing.
    pub key: String,
    pub controller: ControllerName,
    pub source: EventSource,
    /// Short type name for metrics and the event log, e.g. `build.started`, `queue.left`.
    pub kind: String,
    pub event: DomainEvent,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DomainEvent {
    Build(BuildFacts),
    Queue(QueueEvent),
    Node(NodeEvent),
    Step(StepEvent),
    /// A job was created or its configuration changed: kept in the event log only.
    JobChanged {
        job: JobName,
        change: String,
    },
}

/// A build's identity within one controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildKey {
    pub job: JobName,
    pub number: u64,
}

/// Lifecycle phase, in the order Jenkins goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildPhase {
    Queued,
    Started,
    Completed,
    Finalized,
}

impl BuildPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Finalized => "finalized",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "QUEUED" => Some(Self::Queued),
            "STARTED" => Some(Self::Started),
            "COMPLETED" => Some(Self::Completed),
            "FINALIZED" => Some(Self::Finalized),
            _ => None,
        }
    }
}

/// Jenkins' `hudson.model.Result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildResult {
    Success,
    Unstable,
    Failure,
    NotBuilt,
    Aborted,
}

impl BuildResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Unstable => "UNSTABLE",
            Self::Failure => "FAILURE",
            Self::NotBuilt => "NOT_BUILT",
            Self::Aborted => "ABORTED",
        }
    }

    /// `Ok(None)` for the placeholders plugins send while a build runs
    /// (`INPROGRESS`, `UNKNOWN`, empty); `Err` for anything else Jenkins never sends.
    /// The spellings plugins use besides Jenkins' own (the CloudEvents plugin's
    /// `job.failed` sends `FAILED`) map to it.
    pub fn parse(raw: &str) -> Result<Option<Self>, UnknownResult> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "SUCCESS" | "SUCCEEDED" | "SUCCESSFUL" | "PASSED" => Ok(Some(Self::Success)),
            "UNSTABLE" => Ok(Some(Self::Unstable)),
            "FAILURE" | "FAILED" | "FAIL" => Ok(Some(Self::Failure)),
            "NOT_BUILT" | "NOT BUILT" | "NOTBUILT" => Ok(Some(Self::NotBuilt)),
            "ABORTED" | "ABORT" | "CANCELLED" | "CANCELED" => Ok(Some(Self::Aborted)),
            "" | "INPROGRESS" | "UNKNOWN" | "NULL" => Ok(None),
            _ => Err(UnknownResult(raw.to_string())),
        }
    }
}

/// A result string Jenkins never sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Jenkins result (SUCCESS, UNSTABLE, FAILURE, NOT_BUILT, ABORTED)")]
pub struct UnknownResult(pub String);

/// What one event knows about one build. Every field but the key and phase may be
/// unknown; the store folds the facts of all events of a build into one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildFacts {
    pub build: BuildKey,
    pub phase: BuildPhase,
    pub queue_id: Option<u64>,
    pub queued_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub result: Option<BuildResult>,
    /// A result spelling no plugin is known to send, kept as sent (the result then
    /// stays unknown): a build is never lost over a spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_raw: Option<String>,
    pub node: Option<String>,
    pub label: Option<String>,
    pub url: Option<String>,
    pub parameters: Option<BTreeMap<String, String>>,
    pub scm_url: Option<String>,
    pub scm_branch: Option<String>,
    pub scm_commit: Option<String>,
}

impl BuildFacts {
    /// Facts with nothing known but the build and phase.
    pub fn new(build: BuildKey, phase: BuildPhase) -> Self {
        Self {
            build,
            phase,
            queue_id: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            result: None,
            result_raw: None,
            node: None,
            label: None,
            url: None,
            parameters: None,
            scm_url: None,
            scm_branch: None,
            scm_commit: None,
        }
    }
}

/// Where a queue item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Waiting,
    Blocked,
    Buildable,
    Left,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Blocked => "blocked",
            Self::Buildable => "buildable",
            Self::Left => "left",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "waiting" => Some(Self::Waiting),
            "blocked" => Some(Self::Blocked),
            "buildable" => Some(Self::Buildable),
            "left" => Some(Self::Left),
            _ => None,
        }
    }
}

/// A queue item changed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEvent {
    pub queue_id: u64,
    /// The task's display name as Jenkins shows it in the queue.
    pub task: String,
    /// The job's full name when the payload carries it.
    pub job: Option<JobName>,
    pub state: QueueState,
    /// When the item entered the queue (`inQueueSince`).
    pub entered_at: Option<Timestamp>,
    /// When it left, for `Left`.
    pub left_at: Option<Timestamp>,
    /// When this event happened (for ordering states of the same item).
    pub at: Timestamp,
    /// Jenkins' reason for waiting, e.g. "Waiting for next available executor on ‘linux’".
    pub why: Option<String>,
    /// The label the item waits for, when `why` names one.
    pub label: Option<String>,
}

impl QueueEvent {
    /// A queue item's event as a plugin reported it, settled: `times` are when it entered
    /// the queue, when it left and when the event happened.
    pub fn reported(
        queue_id: u64,
        (task, job): (String, Option<JobName>),
        state: QueueState,
        (entered_at, left_at, at): (Option<Timestamp>, Option<Timestamp>, Timestamp),
        why: Option<String>,
    ) -> Self {
        let event = Self {
            queue_id,
            task,
            job,
            state,
            entered_at,
            left_at,
            at,
            why,
            label: None,
        };
        event.settled()
    }

    /// Fills what follows from the rest: the label from `why`, and no `left_at` unless the
    /// item has left. Parsers build the event, then call this.
    pub fn settled(mut self) -> Self {
        if self.label.is_none() {
            self.label = self.why.as_deref().and_then(label_from_why);
        }
        if self.state != QueueState::Left {
            self.left_at = None;
        }
        self
    }
}

/// An agent came online or went offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub node: String,
    pub online: bool,
    pub executors: Option<u32>,
    pub offline_cause: Option<String>,
    pub at: Timestamp,
}

/// A build step started or finished (Statistics Gatherer's buildstep payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub build: BuildKey,
    pub step_id: String,
    pub step_type: String,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// The label a queue item waits for, from Jenkins' `why` text. Jenkins quotes names with
/// `‘’` (U+2018/U+2019); older versions and some locales use plain quotes. Only the
/// phrasings that name a label are read: a node name ("‘agent-1’ is offline") is not one.
pub fn label_from_why(why: &str) -> Option<String> {
    const MARKERS: [&str; 4] = [
        "available executor on ",
        "nodes with the label ",
        "nodes of label ",
        "node with label ",
    ];
    for marker in MARKERS {
        if let Some(i) = why.find(marker) {
            let rest = &why[i + marker.len()..];
            let mut chars = rest.chars();
            let open = chars.next()?;
            let close = match open {
                '‘' => '’',
                '\'' => '\'',
                '"' => '"',
                '`' => '\'',
                _ => continue,
            };
            let inner = chars.as_str();
            if let Some(end) = inner.find(close) {
                let label = inner[..end].trim();
                if !label.is_empty() {
                    return Some(label.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_read_from_the_phrasings_that_name_one() {
        let cases = [
            (
                "Waiting for next available executor on ‘linux’",
                Some("linux"),
            ),
            (
                "Waiting for next available executor on 'docker && amd64'",
                Some("docker && amd64"),
            ),
            ("There are no nodes with the label ‘gpu’", Some("gpu")),
            (
                "All nodes of label ‘linux-big’ are offline",
                Some("linux-big"),
            ),
            ("‘agent-1’ is offline", None),
            ("In the quiet period. Expires in 4.9 sec", None),
            ("Waiting for next available executor", None),
        ];
        for (why, want) in cases {
            assert_eq!(label_from_why(why).as_deref(), want, "{why}");
        }
    }

    #[test]
    fn results_and_phases_parse_as_jenkins_spells_them() {
        assert_eq!(
            BuildResult::parse("SUCCESS"),
            Ok(Some(BuildResult::Success))
        );
        assert_eq!(
            BuildResult::parse("NOT_BUILT"),
            Ok(Some(BuildResult::NotBuilt))
        );
        assert_eq!(BuildResult::parse("INPROGRESS"), Ok(None));
        assert!(BuildResult::parse("GREAT").is_err());
        assert_eq!(BuildPhase::parse("finalized"), Some(BuildPhase::Finalized));
        assert_eq!(BuildPhase::parse("NONE"), None);
    }
}
