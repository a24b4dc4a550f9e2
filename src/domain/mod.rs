//! Validated domain types. Raw payloads live in `ingest/`; everything here has already
//! passed its rules, so code that takes these types never re-checks them.

mod event;
mod label;
mod names;
mod record;
mod time;

pub use event::{
    BuildFacts, BuildKey, BuildPhase, BuildResult, DomainEvent, EventSource, IngestEvent,
    NodeEvent, QueueEvent, QueueState, StepEvent, label_from_why,
};
pub use label::{Expr, Label};
pub use names::{ControllerName, JobName, NameError};
pub use record::{BuildRecord, FoundBy, QueueItem};
pub use time::{Timestamp, TimestampError};
