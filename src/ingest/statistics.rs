//! The Statistics Gatherer plugin (`org.jenkins.plugins.statistics.gatherer`): separate
//! build, queue and buildstep payloads, camelCase, posted to one configured URL each.
//! `POST /webhooks/statistics` takes all three; the kind is given by `?type=` or told
//! apart by shape (`jenkinsQueueId` for queue, `buildStepType` for a step, else a build).

use super::RawScm;
use super::cloudevents::RawQueueCause;
use super::{
    IngestContext, IngestError, Ingested, build_number, from_value, instant, job_name, nonzero,
    parameters, result, text,
};
use crate::domain::{
    BuildFacts, BuildKey, BuildPhase, DomainEvent, EventSource, IngestEvent, JobName, QueueEvent,
    QueueState, StepEvent, Timestamp,
};
use serde::Deserialize;
use serde_json::Value;

/// Which Statistics Gatherer payload a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatisticsKind {
    Build,
    Queue,
    BuildStep,
    /// An SCM checkout of a build (`startTime`, `endTime`, `buildUrl`): a stage.
    ScmCheckout,
    /// A job created, updated or deleted: acknowledged, not stored.
    Project,
}

impl StatisticsKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "build" => Some(Self::Build),
            "queue" => Some(Self::Queue),
            "buildstep" | "step" => Some(Self::BuildStep),
            "scm" | "checkout" => Some(Self::ScmCheckout),
            "project" | "job" => Some(Self::Project),
            _ => None,
        }
    }

    /// The kind a payload's shape tells: `jenkinsQueueId` a queue item, `buildStepType`
    /// a step, a `buildUrl` without a build number an SCM checkout, a job's name without
    /// either a project, else a build.
    fn of(value: &Value) -> Self {
        let has = |k: &str| value.get(k).is_some_and(|v| !v.is_null());
        if has("jenkinsQueueId") {
            Self::Queue
        } else if has("buildStepType") {
            Self::BuildStep
        } else if has("number") {
            Self::Build
        } else if has("buildUrl") {
            Self::ScmCheckout
        } else if has("name") || has("fullName") || has("projectName") {
            Self::Project
        } else {
            Self::Build
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBuild {
    ci_url: Option<String>,
    job_name: Option<String>,
    full_job_name: Option<String>,
    number: Option<i64>,
    slave_info: Option<RawSlave>,
    start_time: Option<Value>,
    result: Option<String>,
    duration: Option<i64>,
    parameters: Option<serde_json::Map<String, Value>>,
    scm_info: Option<RawScm>,
    queue_time: Option<i64>,
    build_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSlave {
    slave_name: Option<String>,
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQueue {
    ci_url: Option<String>,
    job_name: Option<String>,
    entry_time: Option<Value>,
    exit_time: Option<Value>,
    jenkins_queue_id: Option<i64>,
    status: Option<String>,
    queue_causes: Option<Vec<RawQueueCause>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStep {
    start_time: Option<Value>,
    end_time: Option<Value>,
    build_url: Option<String>,
    build_step_type: Option<String>,
    build_step_id: Option<String>,
}

/// Parses one payload; `kind` from `?type=` when the sender set it.
pub fn parse(
    body: &[u8],
    kind: Option<StatisticsKind>,
    ctx: &IngestContext,
) -> Result<Ingested, IngestError> {
    let value = super::json_value(body)?;
    if !value.is_object() {
        return Err(IngestError::invalid("$", "must be a JSON object"));
    }
    match kind.unwrap_or_else(|| StatisticsKind::of(&value)) {
        StatisticsKind::Build => build(value, ctx),
        StatisticsKind::Queue => queue(value, ctx),
        StatisticsKind::BuildStep => step(value, None, ctx),
        StatisticsKind::ScmCheckout => step(value, Some("scm-checkout"), ctx),
        StatisticsKind::Project => Ok(Ingested::Ignored {
            kind: "project".into(),
        }),
    }
}

fn build(value: Value, ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawBuild = from_value(value)?;
    let number = build_number("number", raw.number)?;
    let job = match text(raw.full_job_name) {
        Some(full) => JobName::parse(&full).map_err(|e| IngestError::invalid("fullJobName", e))?,
        None => job_name(
            "buildUrl",
            raw.build_url.as_deref(),
            "jobName",
            raw.job_name.as_deref(),
        )?,
    };
    let controller = ctx.controller([raw.ci_url.as_deref()]);
    let outcome = result(raw.result.as_deref());
    // onStarted sends result INPROGRESS with the start and time in queue; onFinalized
    // sends the result and duration, and a `startTime` that is only the object's
    // construction time, so it is not read there.
    let phase = if outcome.ended() {
        BuildPhase::Finalized
    } else {
        BuildPhase::Started
    };
    let mut facts = BuildFacts::new(BuildKey { job, number }, phase);
    if phase == BuildPhase::Started {
        facts.started_at = nonzero(instant("startTime", raw.start_time.as_ref())?);
        if let (Some(start), Some(q)) = (facts.started_at, raw.queue_time) {
            if q < 0 {
                return Err(IngestError::invalid("queueTime", "must not be negative"));
            }
            facts.queued_at = Timestamp::from_millis(start.millis() - q).ok();
        }
        if let Some(slave) = raw.slave_info {
            facts.node = text(slave.slave_name);
            facts.label = text(slave.label);
        }
    } else {
        if raw.duration.is_some_and(|d| d < 0) {
            return Err(IngestError::invalid("duration", "must not be negative"));
        }
        facts.duration_ms = raw.duration.filter(|d| *d > 0);
        facts.result = outcome.result;
        facts.result_raw = outcome.unrecognized;
    }
    facts.url = text(raw.build_url);
    facts.parameters = parameters(raw.parameters).filter(|p| !p.is_empty());
    if let Some(scm) = raw.scm_info {
        scm.into_facts(&mut facts);
    }
    let key = &facts.build;
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!(
            "{controller}|statistics|build|{}|{}|{}",
            key.job,
            key.number,
            phase.as_str()
        ),
        controller,
        source: EventSource::Statistics,
        kind: format!("build.{}", phase.as_str()),
        event: DomainEvent::Build(facts),
    }]))
}

fn queue(value: Value, ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawQueue = from_value(value)?;
    let id = super::queue_id(raw.jenkins_queue_id)?;
    let task = text(raw.job_name).ok_or_else(|| IngestError::missing("jobName"))?;
    let entered_at = nonzero(instant("entryTime", raw.entry_time.as_ref())?);
    let left_at = nonzero(instant("exitTime", raw.exit_time.as_ref())?);
    let causes = raw.queue_causes.unwrap_or_default();
    // The last cause's type and the status enter the event's idempotency key.
    let max = super::limits::MAX_EVENT_ID;
    let bound = |field: String, s: Option<&str>| match s {
        Some(s) if s.len() > max => Err(IngestError::invalid(
            &field,
            format!("must be at most {max} bytes (got {})", s.len()),
        )),
        _ => Ok(()),
    };
    bound("status".into(), raw.status.as_deref())?;
    for (i, c) in causes.iter().enumerate() {
        bound(format!("queueCauses[{i}].type"), c.cause_type.as_deref())?;
    }
    let last = causes.last();
    let cause_entry = match last {
        Some(c) => nonzero(instant("queueCauses.entryTime", c.entry_time.as_ref())?),
        None => None,
    };
    let cause_exit = match last {
        Some(c) => nonzero(instant("queueCauses.exitTime", c.exit_time.as_ref())?),
        None => None,
    };
    let status = raw.status.as_deref().map(str::to_ascii_lowercase);
    let state = match status.as_deref() {
        Some("left") => QueueState::Left,
        Some(s) if s.starts_with("enter") => QueueState::Waiting,
        // Transition events carry no status: the last cause says which state the item
        // entered (an entry time) or left (an exit time, after which it moves on).
        _ => match (last.and_then(|c| c.cause_type.as_deref()), cause_entry) {
            (Some("blocked"), Some(_)) => QueueState::Blocked,
            (Some("buildable"), Some(_)) => QueueState::Buildable,
            _ => QueueState::Waiting,
        },
    };
    let why = causes
        .iter()
        .rev()
        .find_map(|c| text(c.reason_for_waiting.clone()));
    let at = match state {
        QueueState::Left => left_at,
        _ => cause_entry.or(cause_exit),
    }
    .or(entered_at)
    .unwrap_or(ctx.received_at);
    let controller = ctx.controller([raw.ci_url.as_deref()]);
    let step = last
        .and_then(|c| c.cause_type.clone())
        .unwrap_or_else(|| state.as_str().to_string());
    let edge = if cause_exit.is_some() {
        "exit"
    } else {
        "entry"
    };
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!(
            "{controller}|statistics|queue|{id}|{}|{step}|{edge}|{}",
            status.as_deref().unwrap_or("-"),
            at.millis()
        ),
        controller,
        source: EventSource::Statistics,
        kind: format!("queue.{}", state.as_str()),
        event: DomainEvent::Queue(QueueEvent::reported(
            id,
            (task.clone(), JobName::parse(&task).ok()),
            state,
            (entered_at, left_at, at),
            why,
        )),
    }]))
}

/// A build step, or with `as_type` an SCM checkout recorded as a step of that type.
fn step(value: Value, as_type: Option<&str>, ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawStep = from_value(value)?;
    let url = text(raw.build_url).ok_or_else(|| IngestError::missing("buildUrl"))?;
    let job = JobName::from_job_url(&url).ok_or_else(|| {
        IngestError::invalid("buildUrl", "names no job (expected job/NAME/NUMBER/)")
    })?;
    let number = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    let number = build_number("buildUrl", number)?;
    let step_type = match as_type {
        Some(t) => t.to_string(),
        None => text(raw.build_step_type).ok_or_else(|| IngestError::missing("buildStepType"))?,
    };
    let step_id = text(raw.build_step_id).unwrap_or_else(|| step_type.clone());
    let started_at = nonzero(instant("startTime", raw.start_time.as_ref())?);
    let finished_at = nonzero(instant("endTime", raw.end_time.as_ref())?);
    let edge = match (started_at, finished_at) {
        (_, Some(_)) => "finished",
        (Some(_), None) => "started",
        (None, None) => return Err(IngestError::missing("startTime` or `endTime")),
    };
    let controller = ctx.controller([Some(url.as_str())]);
    let build = BuildKey { job, number };
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!(
            "{controller}|statistics|step|{}|{}|{step_id}|{edge}",
            build.job, build.number
        ),
        controller,
        source: EventSource::Statistics,
        kind: format!("step.{edge}"),
        event: DomainEvent::Step(StepEvent {
            build,
            step_id,
            step_type,
            started_at,
            finished_at,
        }),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> IngestContext {
        crate::ingest::test_context(5)
    }

    fn one(v: Value) -> IngestEvent {
        match parse(v.to_string().as_bytes(), None, &ctx()).unwrap() {
            Ingested::Events(mut e) => e.remove(0),
            Ingested::Ignored { .. } => panic!(),
        }
    }

    #[test]
    fn build_started_gives_queue_wait_node_and_label() {
        let e = one(
            json!({"ciUrl": "https://ci.example.com/", "jobName": "app", "fullJobName": "team/app",
            "number": 5, "slaveInfo": {"slaveName": "agent-7", "label": "linux docker", "executor": "0"},
            "startTime": 1_700_000_010_000i64, "endTime": 1_700_000_010_001i64, "result": "INPROGRESS",
            "duration": 0, "queueTime": 10_000, "buildUrl": "job/team/job/app/5/", "contextId": 1, "buildCause": "x"}),
        );
        let DomainEvent::Build(b) = e.event else {
            panic!()
        };
        assert_eq!(b.phase, BuildPhase::Started);
        assert_eq!(b.queued_at.unwrap().millis(), 1_700_000_000_000);
        assert_eq!(b.node.as_deref(), Some("agent-7"));
        assert_eq!(e.controller.as_str(), "ci.example.com");
    }

    #[test]
    fn shapes_are_told_apart() {
        let q = one(
            json!({"ciUrl": "https://ci/", "jobName": "app", "entryTime": 1000, "exitTime": 2000,
            "startedBy": "SCM", "jenkinsQueueId": 3, "status": "LEFT", "duration": 1000, "queueCauses": []}),
        );
        assert!(matches!(
            q.event,
            DomainEvent::Queue(QueueEvent {
                state: QueueState::Left,
                ..
            })
        ));
        let s = one(
            json!({"startTime": 0, "endTime": 5000, "buildUrl": "job/app/5/",
            "buildStepType": "hudson.tasks.Shell", "buildStepId": "hudson.tasks.Shell@1a2b"}),
        );
        assert!(matches!(
            s.event,
            DomainEvent::Step(StepEvent {
                finished_at: Some(_),
                started_at: None,
                ..
            })
        ));
        assert_eq!(s.kind, "step.finished");
    }
}
