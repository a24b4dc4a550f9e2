//! The CloudEvents plugin (`io.jenkins.plugins.cloudevents`): binary mode (`ce-*` headers,
//! the model as a camelCase JSON body) and structured mode (`application/cloudevents+json`,
//! the model under `data` or `data_base64`). Dates are epoch milliseconds (Jackson).

use super::RawJob;
use super::{
    IngestContext, IngestError, Ingested, from_value, instant, job_name, nonzero, parameters,
    parse_json, result, text,
};
use crate::domain::{
    BuildFacts, BuildKey, BuildPhase, BuildResult, DomainEvent, EventSource, IngestEvent,
    NodeEvent, QueueEvent, QueueState,
};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// The CloudEvents context attributes this service reads.
#[derive(Debug, Clone, Default)]
pub struct CeAttributes {
    /// The CloudEvents version; this service reads 1.0, the one the plugin sends.
    pub specversion: Option<String>,
    pub id: Option<String>,
    pub ce_type: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Structured {
    specversion: Option<String>,
    id: Option<String>,
    #[serde(rename = "type")]
    ce_type: Option<String>,
    source: Option<String>,
    data: Option<Value>,
    data_base64: Option<String>,
}

/// Parses a structured-mode envelope into attributes and the data payload.
pub fn parse_structured(body: &[u8]) -> Result<(CeAttributes, Value), IngestError> {
    let env: Structured = parse_json(body)?;
    let data = match (env.data, env.data_base64) {
        (Some(d), _) => d,
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| IngestError::invalid("data_base64", e))?;
            super::json_value(&bytes).map_err(|e| match e {
                IngestError::Malformed(m) => {
                    IngestError::invalid("data_base64", format!("is not JSON: {m}"))
                }
                IngestError::Invalid { field, reason } => {
                    IngestError::invalid(&format!("data_base64.{field}"), reason)
                }
            })?
        }
        (None, None) => return Err(IngestError::missing("data")),
    };
    Ok((
        CeAttributes {
            specversion: env.specversion,
            id: env.id,
            ce_type: env.ce_type,
            source: env.source,
        },
        data,
    ))
}

/// Parses a binary-mode body.
pub fn parse_binary_data(body: &[u8]) -> Result<Value, IngestError> {
    super::json_value(body)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQueue {
    ci_url: Option<String>,
    display_name: Option<String>,
    entry_time: Option<Value>,
    exit_time: Option<Value>,
    jenkins_queue_id: Option<i64>,
    queue_causes: Option<Vec<RawQueueCause>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawQueueCause {
    pub(crate) reason_for_waiting: Option<String>,
    #[serde(rename = "type")]
    pub(crate) cause_type: Option<String>,
    pub(crate) entry_time: Option<Value>,
    pub(crate) exit_time: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNode {
    node_name: Option<String>,
    num_executors: Option<i64>,
    offline_cause: Option<Value>,
    connect_time: Option<Value>,
}

const PREFIX: &str = "org.jenkinsci.";

/// Turns one CloudEvent into domain events. Types outside the plugin's set are
/// acknowledged as [`Ingested::Ignored`].
pub fn parse(
    attrs: &CeAttributes,
    data: Value,
    ctx: &IngestContext,
) -> Result<Ingested, IngestError> {
    let ce_type = attrs
        .ce_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let ce_type = ce_type.ok_or_else(|| IngestError::missing("ce-type"))?;
    match attrs.specversion.as_deref().map(str::trim) {
        None | Some("") => return Err(IngestError::missing("ce-specversion")),
        Some("1.0") => {}
        Some(_) => {
            return Err(IngestError::invalid(
                "ce-specversion",
                "must be 1.0 (the CloudEvents version the plugin sends)",
            ));
        }
    }
    if let Some(id) = &attrs.id
        && id.len() > super::limits::MAX_EVENT_ID
    {
        return Err(IngestError::invalid(
            "ce-id",
            format!(
                "must be at most {} bytes (got {})",
                super::limits::MAX_EVENT_ID,
                id.len()
            ),
        ));
    }
    if let Some(source) = &attrs.source
        && source.len() > super::limits::MAX_URL
    {
        return Err(IngestError::invalid(
            "ce-source",
            format!("must be at most {} bytes", super::limits::MAX_URL),
        ));
    }
    if ce_type.len() > super::limits::MAX_CE_TYPE {
        return Err(IngestError::invalid(
            "ce-type",
            format!("must be at most {} bytes", super::limits::MAX_CE_TYPE),
        ));
    }
    let kind = ce_type.strip_prefix(PREFIX).unwrap_or(ce_type).to_string();
    // The plugin's README spells the type `job.finalzed`; its code sends `job.finalized`.
    let kind = if kind == "job.finalzed" {
        "job.finalized".to_string()
    } else {
        kind
    };
    match kind.as_str() {
        "queue.entered_waiting" | "queue.left" => queue(&kind, data, ctx),
        "job.started" | "job.completed" | "job.finalized" | "job.failed" => build(&kind, data, ctx),
        "job.created" | "job.updated" => job_changed(&kind, attrs, data, ctx),
        "node.online" | "node.offline" => node(&kind, attrs, data, ctx),
        _ => Ok(Ingested::Ignored {
            kind: ce_type.to_string(),
        }),
    }
}

fn queue(kind: &str, data: Value, ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawQueue = from_value(data)?;
    let id = super::queue_id(raw.jenkins_queue_id)?;
    let task = text(raw.display_name).ok_or_else(|| IngestError::missing("displayName"))?;
    let entered_at = nonzero(instant("entryTime", raw.entry_time.as_ref())?);
    let left_at = nonzero(instant("exitTime", raw.exit_time.as_ref())?);
    let why = raw
        .queue_causes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| text(c.reason_for_waiting))
        .next_back();
    let (state, at) = if kind == "queue.left" {
        (
            QueueState::Left,
            left_at.or(entered_at).unwrap_or(ctx.received_at),
        )
    } else {
        (QueueState::Waiting, entered_at.unwrap_or(ctx.received_at))
    };
    let controller = ctx.controller([raw.ci_url.as_deref()]);
    // The plugin sends only the task's display name, not the job's full name.
    let times = (entered_at, left_at, at);
    let event = QueueEvent::reported(id, (task, None), state, times, why);
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!("{controller}|cloudevents|queue|{id}|{kind}"),
        controller,
        source: EventSource::CloudEvents,
        kind: kind.to_string(),
        event: DomainEvent::Queue(event),
    }]))
}

fn build(kind: &str, data: Value, ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawJob = from_value(data)?;
    let (job, number, controller, build) = raw.identify(ctx)?;
    let phase = match kind {
        "job.started" => BuildPhase::Started,
        "job.completed" => BuildPhase::Completed,
        _ => BuildPhase::Finalized,
    };
    let at = nonzero(instant("build.timestamp", build.timestamp.as_ref())?);
    if build.duration.is_some_and(|d| d < 0) {
        return Err(IngestError::invalid(
            "build.duration",
            "must not be negative",
        ));
    }
    let duration = build.duration.filter(|d| *d > 0);
    let mut facts = BuildFacts::new(BuildKey { job, number }, phase);
    facts.queue_id = build.queue_id.filter(|q| *q > 0).map(|q| q as u64);
    // The plugin passes the same timestamps as the Notification plugin's listener:
    // start for STARTED, start + duration for COMPLETED, finalization for FINALIZED.
    match phase {
        BuildPhase::Started => facts.started_at = at,
        BuildPhase::Completed => {
            facts.finished_at = at;
            facts.duration_ms = duration;
        }
        _ => facts.duration_ms = duration,
    }
    if phase >= BuildPhase::Completed {
        let outcome = result(build.status.as_deref());
        facts.result = outcome.result;
        facts.result_raw = outcome.unrecognized;
        if kind == "job.failed" && facts.result.is_none() {
            facts.result = Some(BuildResult::Failure);
        }
    }
    facts.url = text(build.full_url).or(text(build.url));
    facts.parameters = parameters(build.parameters);
    if let Some(scm) = build.scm {
        scm.into_facts(&mut facts);
    }
    let key = &facts.build;
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!(
            "{controller}|cloudevents|build|{}|{}|{kind}",
            key.job, key.number
        ),
        controller,
        source: EventSource::CloudEvents,
        kind: format!("build.{}", kind.trim_start_matches("job.")),
        event: DomainEvent::Build(facts),
    }]))
}

fn job_changed(
    kind: &str,
    attrs: &CeAttributes,
    data: Value,
    ctx: &IngestContext,
) -> Result<Ingested, IngestError> {
    let raw: RawJob = from_value(data)?;
    let job = job_name("url", raw.url.as_deref(), "name", raw.name.as_deref())?;
    let id = attrs
        .id
        .as_deref()
        .ok_or_else(|| IngestError::missing("ce-id"))?;
    let controller = ctx.controller([None]);
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!("{controller}|cloudevents|{kind}|{job}|{id}"),
        controller,
        source: EventSource::CloudEvents,
        kind: kind.to_string(),
        event: DomainEvent::JobChanged {
            job,
            change: kind.trim_start_matches("job.").to_string(),
        },
    }]))
}

fn node(
    kind: &str,
    attrs: &CeAttributes,
    data: Value,
    ctx: &IngestContext,
) -> Result<Ingested, IngestError> {
    let raw: RawNode = from_value(data)?;
    let name = text(raw.node_name).ok_or_else(|| IngestError::missing("nodeName"))?;
    let id = attrs
        .id
        .as_deref()
        .ok_or_else(|| IngestError::missing("ce-id"))?;
    let executors = match raw.num_executors {
        None => None,
        Some(n) if (0..=10_000).contains(&n) => Some(n as u32),
        Some(_) => {
            return Err(IngestError::invalid(
                "numExecutors",
                "must be between 0 and 10000",
            ));
        }
    };
    // `OfflineCause` is serialised as a bean: take its description when it has one.
    let offline_cause = match raw.offline_cause {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Object(m)) => m
            .get("description")
            .or_else(|| m.get("shortDescription"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| Some(Value::Object(m).to_string())),
        Some(other) => Some(other.to_string()),
    };
    let connected = nonzero(instant("connectTime", raw.connect_time.as_ref())?);
    let controller = ctx.controller([None]);
    let online = kind == "node.online";
    Ok(Ingested::Events(vec![IngestEvent {
        key: format!("{controller}|cloudevents|{kind}|{name}|{id}"),
        controller,
        source: EventSource::CloudEvents,
        kind: kind.to_string(),
        event: DomainEvent::Node(NodeEvent {
            node: name,
            online,
            executors,
            offline_cause,
            at: if online {
                connected.unwrap_or(ctx.received_at)
            } else {
                ctx.received_at
            },
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

    fn attrs(t: &str) -> CeAttributes {
        CeAttributes {
            specversion: Some("1.0".into()),
            id: Some("id-1".into()),
            ce_type: Some(t.into()),
            source: Some("job/app".into()),
        }
    }

    fn one(t: &str, data: Value) -> IngestEvent {
        match parse(&attrs(t), data, &ctx()).unwrap() {
            Ingested::Events(mut e) => e.remove(0),
            Ingested::Ignored { kind } => panic!("ignored {kind}"),
        }
    }

    #[test]
    fn queue_entered_waiting_reads_label_from_cause() {
        let e = one(
            "org.jenkinsci.queue.entered_waiting",
            json!({
                "ciUrl": "http://jenkins:8080/", "displayName": "app", "entryTime": 1_700_000_000_000i64,
                "exitTime": null, "startedBy": "admin", "jenkinsQueueId": 17, "status": "ENTERED_WAITING",
                "duration": 0, "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on ‘linux’", "type": "entered_waiting"}]
            }),
        );
        assert_eq!(e.controller.as_str(), "jenkins-8080");
        let DomainEvent::Queue(q) = e.event else {
            panic!()
        };
        assert_eq!(q.state, QueueState::Waiting);
        assert_eq!(q.label.as_deref(), Some("linux"));
        assert_eq!(q.queue_id, 17);
    }

    #[test]
    fn failed_is_a_finalized_failure() {
        let e = one(
            "org.jenkinsci.job.failed",
            json!({
                "name": "app", "displayName": "app", "url": "job/app/", "userId": null, "userName": null,
                "build": {"fullUrl": "http://jenkins:8080/job/app/4/", "number": 4, "queueId": 9,
                  "timestamp": 1_700_000_000_000i64, "duration": 1000, "phase": "FINALIZED", "status": "FAILURE",
                  "url": "job/app/4/", "displayName": null, "parameters": null, "scmState": {"url": null, "branch": null, "commit": null}}
            }),
        );
        let DomainEvent::Build(b) = e.event else {
            panic!()
        };
        assert_eq!(b.phase, BuildPhase::Finalized);
        assert_eq!(b.result, Some(BuildResult::Failure));
        assert_eq!(b.duration_ms, Some(1000));
    }

    #[test]
    fn unknown_types_are_ignored_and_missing_type_refused() {
        assert!(matches!(
            parse(&attrs("com.example.other"), json!({}), &ctx()),
            Ok(Ingested::Ignored { .. })
        ));
        let none = CeAttributes::default();
        assert_eq!(
            parse(&none, json!({}), &ctx()).unwrap_err(),
            IngestError::missing("ce-type")
        );
    }

    #[test]
    fn structured_mode_unwraps_data_and_base64() {
        let env = json!({"specversion": "1.0", "id": "x", "type": "org.jenkinsci.node.online", "source": "node/a",
            "data": {"nodeName": "a", "numExecutors": 2}});
        let (a, d) = parse_structured(env.to_string().as_bytes()).unwrap();
        assert_eq!(a.ce_type.as_deref(), Some("org.jenkinsci.node.online"));
        assert_eq!(d["nodeName"], "a");
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"nodeName":"b"}"#);
        let env = json!({"specversion": "1.0", "id": "y", "type": "t", "data_base64": b64});
        assert_eq!(
            parse_structured(env.to_string().as_bytes()).unwrap().1["nodeName"],
            "b"
        );
    }
}
