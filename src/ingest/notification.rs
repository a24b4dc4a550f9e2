//! The Notification plugin (`com.tikal.hudson.plugins.notification`): one JSON object per
//! phase, snake_case, null fields dropped. Its timestamps depend on the phase: QUEUED is
//! sent when the build starts with `now - timeSpentInQueue`, STARTED with the build's
//! start, COMPLETED with start + duration, FINALIZED with the time of finalization.

use super::RawJob;
use super::{
    IngestContext, IngestError, Ingested, instant, nonzero, parameters, parse_json, result, text,
};
use crate::domain::{
    BuildFacts, BuildKey, BuildPhase, DomainEvent, EventSource, IngestEvent, Timestamp,
};
use serde_json::Value;

/// Parses one Notification plugin payload.
pub fn parse(body: &[u8], ctx: &IngestContext) -> Result<Ingested, IngestError> {
    let raw: RawJob = parse_json(body)?;
    let phase_raw = raw
        .build()?
        .phase
        .as_deref()
        .ok_or_else(|| IngestError::missing("build.phase"))?;
    let phase = BuildPhase::parse(phase_raw).ok_or_else(|| {
        IngestError::invalid(
            "build.phase",
            format!("{phase_raw:?} is not one of QUEUED, STARTED, COMPLETED, FINALIZED"),
        )
    })?;
    let (job, number, controller, build) = raw.identify(ctx)?;

    let at = match build.timestamp.as_ref() {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Timestamp::parse_notification_str(s)
                .map_err(|e| IngestError::invalid("build.timestamp", e))?,
        ),
        Some(v) => instant("build.timestamp", Some(v))?,
    };
    let at = nonzero(at);
    let duration = build.duration.filter(|d| *d > 0);
    if let Some(d) = build.duration
        && d < 0
    {
        return Err(IngestError::invalid(
            "build.duration",
            "must not be negative",
        ));
    }
    let queue_id = match build.queue_id {
        Some(q) if q < 0 => {
            return Err(IngestError::invalid(
                "build.queue_id",
                "must not be negative",
            ));
        }
        Some(q) if q > 0 => Some(q as u64),
        _ => None,
    };

    let key = BuildKey { job, number };
    let mut facts = BuildFacts::new(key.clone(), phase);
    facts.queue_id = queue_id;
    match phase {
        BuildPhase::Queued => facts.queued_at = at,
        BuildPhase::Started => facts.started_at = at,
        BuildPhase::Completed => {
            facts.finished_at = at;
            facts.duration_ms = duration;
            if let (Some(end), Some(d)) = (at, duration) {
                facts.started_at = Timestamp::from_millis(end.millis() - d).ok();
            }
        }
        // The FINALIZED timestamp is when post-build work ended, not the build's end.
        BuildPhase::Finalized => facts.duration_ms = duration,
    }
    if phase >= BuildPhase::Completed {
        let outcome = result(build.status.as_deref());
        facts.result = outcome.result;
        facts.result_raw = outcome.unrecognized;
    }
    facts.url = text(build.full_url).or(text(build.url));
    facts.parameters = parameters(build.parameters);
    if let Some(scm) = build.scm {
        scm.into_facts(&mut facts);
    }

    let event = IngestEvent {
        key: format!(
            "{controller}|notification|build|{}|{}|{}",
            key.job,
            key.number,
            phase.as_str()
        ),
        controller,
        source: EventSource::Notification,
        kind: format!("build.{}", phase.as_str()),
        event: DomainEvent::Build(facts),
    };
    Ok(Ingested::Events(vec![event]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BuildResult;
    use serde_json::json;

    fn ctx() -> IngestContext {
        crate::ingest::test_context(1)
    }

    fn facts(body: Value) -> (IngestEvent, BuildFacts) {
        let Ingested::Events(mut events) = parse(body.to_string().as_bytes(), &ctx()).unwrap()
        else {
            panic!("ignored")
        };
        let e = events.remove(0);
        let DomainEvent::Build(f) = e.event.clone() else {
            panic!("not a build")
        };
        (e, f)
    }

    #[test]
    fn completed_payload_as_the_plugin_sends_it() {
        let (event, f) = facts(json!({
            "name": "app", "display_name": "app", "url": "job/team/job/app/",
            "build": {"full_url": "https://ci.example.com/job/team/job/app/12/", "number": 12,
              "queue_id": 311, "timestamp": 1_700_000_060_000i64, "duration": 60_000,
              "phase": "COMPLETED", "status": "FAILURE", "url": "job/team/job/app/12/",
              "scm": {"url": "https://git/x.git", "branch": "origin/main", "commit": "abc"},
              "parameters": {"FOO": "1", "N": 2}, "log": "", "notes": "", "artifacts": {}}
        }));
        assert_eq!(event.controller.as_str(), "ci.example.com");
        assert_eq!(
            event.key,
            "ci.example.com|notification|build|team/app|12|completed"
        );
        assert_eq!(f.build.job.as_str(), "team/app");
        assert_eq!(f.result, Some(BuildResult::Failure));
        assert_eq!(f.started_at.unwrap().millis(), 1_700_000_000_000);
        assert_eq!(f.parameters.unwrap()["N"], "2");
        assert_eq!(f.scm_commit.as_deref(), Some("abc"));
    }

    #[test]
    fn started_has_no_status_and_zero_duration() {
        let (_, f) = facts(json!({"name": "app", "url": "job/app/",
            "build": {"number": 3, "phase": "STARTED", "timestamp": 1_700_000_000_000i64, "duration": 0}}));
        assert_eq!(f.started_at.unwrap().millis(), 1_700_000_000_000);
        assert_eq!(f.duration_ms, None);
        assert_eq!(f.result, None);
    }

    #[test]
    fn missing_and_wrong_fields_are_named() {
        let err = |v: Value| parse(v.to_string().as_bytes(), &ctx()).unwrap_err();
        assert_eq!(err(json!({"name": "a"})), IngestError::missing("build"));
        assert_eq!(
            err(json!({"name": "a", "build": {"number": 1}})),
            IngestError::missing("build.phase")
        );
        assert_eq!(
            err(json!({"name": "a", "build": {"phase": "STARTED"}})),
            IngestError::missing("build.number")
        );
        assert!(
            matches!(err(json!({"name": "a", "build": {"phase": "STARTED", "number": "x"}})),
            IngestError::Invalid { field, .. } if field == "build.number")
        );
        assert!(
            matches!(err(json!({"name": "a", "build": {"phase": "DONE", "number": 1}})),
            IngestError::Invalid { field, .. } if field == "build.phase")
        );
        assert!(
            matches!(err(json!({"build": {"phase": "STARTED", "number": 1}})),
            IngestError::Invalid { field, .. } if field.starts_with("name"))
        );
        assert!(
            matches!(parse(b"{\"name\": ", &ctx()).unwrap_err(), IngestError::Malformed(m) if m.contains("line 1"))
        );
    }
}
