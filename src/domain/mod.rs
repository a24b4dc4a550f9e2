//! Validated domain types. Raw payloads live in `ingest/`; everything here has already
//! passed its rules, so code that takes these types never re-checks them.

mod agents;
mod cluster;
mod decision;
mod event;
mod files;
mod label;
mod names;
mod quantity;
mod range;
mod record;
mod report_format;
mod stats;
mod time;
mod usage;

pub use agents::{
    ComputerView, ExecutorView, JenkinsError, LabelRef, LabelView, NodeRef, QueueItemView, TaskView,
};
pub use cluster::{KubeError, PodState, PoolState, PoolUsage, ScaleTo, Waker};
pub use decision::{
    DecisionInputs, ForecastInputs, Outcome, QueueDemand, StartupInputs, WarmInputs, from_name,
    name_of,
};
pub use event::{
    BuildFacts, BuildKey, BuildPhase, BuildResult, DomainEvent, EventSource, IngestEvent,
    NodeEvent, QueueEvent, QueueState, StepEvent, label_from_why,
};
pub use files::FileError;
pub use label::{Expr, Label, LabelError};
pub use names::{ControllerName, JobName, MAX_TEXT, NameError, is_dns_label, is_dns_subdomain};
pub use quantity::{Bytes, Millicores, QuantityError, Resources};
pub use range::{Range, RangeError};
pub use record::{BuildRecord, FoundBy, QueueItem};
pub use report_format::{NotOneOf, ReportFormat};
pub use stats::nearest_rank;
pub use time::{Timestamp, TimestampError};
pub use usage::{PerformanceReport, StageTiming};
