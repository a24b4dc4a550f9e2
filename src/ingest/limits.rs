//! What Jenkins can produce, as bounds every parsed event is held to before it is stored:
//! instants between 2000 and 2100, durations and waits of at most a year, build numbers
//! Jenkins can count to, and text fields no longer than Jenkins writes them. A payload
//! outside them is refused (400, naming the field), so no stored number can make a sum
//! overflow and no webhook can fill the disk with one field.

use super::IngestError;
use crate::domain::{DomainEvent, IngestEvent, Timestamp};

/// 2000-01-01T00:00:00Z: before any Jenkins.
pub const EARLIEST_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z.
pub const LATEST_MS: i64 = 4_102_444_800_000;
/// A year: the longest build, queue wait or step.
pub const MAX_SPAN_MS: i64 = 366 * 86_400_000;
/// Jenkins numbers builds with an `int`.
pub const MAX_BUILD_NUMBER: u64 = i32::MAX as u64;
/// CloudEvents types (`org.jenkinsci.job.finalized` and the like).
pub const MAX_CE_TYPE: usize = 256;
/// CloudEvents ids (the plugin sends UUIDs) and queue cause types.
pub const MAX_EVENT_ID: usize = 256;
/// An event's idempotency key, whatever it is made of: well under PostgreSQL's limit
/// for an index entry (2,704 bytes).
pub const MAX_KEY: usize = 2_048;
/// Agent names, labels, step ids and types, causes.
pub use crate::domain::MAX_TEXT;
/// URLs (build, SCM).
pub const MAX_URL: usize = 2_048;
/// Jenkins' queue `why` texts.
pub const MAX_WHY: usize = 4_096;
/// Branch names (git allows long ones; Jenkins shows them whole).
pub const MAX_BRANCH: usize = 512;
/// Commit ids: a SHA-256 in hex is 64; other SCMs stay well below.
pub const MAX_COMMIT: usize = 128;
/// Build parameters kept per build, and their sizes.
pub const MAX_PARAMETERS: usize = 256;
pub const MAX_PARAMETER_NAME: usize = 256;
pub const MAX_PARAMETER_VALUE: usize = 8_192;

fn instant(field: &str, t: Option<Timestamp>) -> Result<(), IngestError> {
    match t {
        Some(t) if !(EARLIEST_MS..LATEST_MS).contains(&t.millis()) => Err(IngestError::invalid(
            field,
            "must lie between 2000-01-01 and 2100-01-01",
        )),
        _ => Ok(()),
    }
}

fn span(field: &str, ms: Option<i64>) -> Result<(), IngestError> {
    match ms {
        Some(ms) if !(0..=MAX_SPAN_MS).contains(&ms) => Err(IngestError::invalid(
            field,
            format!("must be between 0 and {MAX_SPAN_MS} ms (a year)"),
        )),
        _ => Ok(()),
    }
}

/// The time between two instants, when both are known and in order.
fn between(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<i64> {
    Some(b?.millis() - a?.millis()).filter(|d| *d >= 0)
}

fn text(field: &str, s: Option<&str>, max: usize) -> Result<(), IngestError> {
    match s {
        Some(s) if s.len() > max => Err(IngestError::invalid(
            field,
            format!("must be at most {max} bytes (got {})", s.len()),
        )),
        _ => Ok(()),
    }
}

fn number(field: &str, n: u64) -> Result<(), IngestError> {
    if (1..=MAX_BUILD_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(IngestError::invalid(
            field,
            format!("must be between 1 and {MAX_BUILD_NUMBER}"),
        ))
    }
}

/// What a masked parameter's value is stored as.
pub const MASKED: &str = "********";

/// Masks the values of parameters whose names look secret, before anything is stored.
pub fn mask_secrets(e: &mut IngestEvent, secret: &regex::Regex) {
    if let DomainEvent::Build(b) = &mut e.event
        && let Some(params) = b.parameters.as_mut()
    {
        mask_parameters(params, secret);
    }
}

/// Masks the values of the parameters whose names match `secret`.
pub fn mask_parameters(
    params: &mut std::collections::BTreeMap<String, String>,
    secret: &regex::Regex,
) {
    for (name, value) in params.iter_mut() {
        if secret.is_match(name) && !value.is_empty() {
            *value = MASKED.to_string();
        }
    }
}

/// Holds one parsed event to the bounds.
pub fn check(e: &IngestEvent) -> Result<(), IngestError> {
    if e.key.len() > MAX_KEY {
        // Each part is bounded where it is read; this holds whatever they add up to.
        return Err(IngestError::invalid(
            "id",
            format!(
                "the event's names and ids together are {} bytes, more than {MAX_KEY}",
                e.key.len()
            ),
        ));
    }
    match &e.event {
        DomainEvent::Build(b) => {
            number("number", b.build.number)?;
            instant("queued_at", b.queued_at)?;
            instant("started_at", b.started_at)?;
            instant("finished_at", b.finished_at)?;
            span("duration", b.duration_ms)?;
            span("queue wait", between(b.queued_at, b.started_at))?;
            span("duration", between(b.started_at, b.finished_at))?;
            text("result", b.result_raw.as_deref(), MAX_TEXT)?;
            text("node", b.node.as_deref(), MAX_TEXT)?;
            text("label", b.label.as_deref(), MAX_TEXT)?;
            text("url", b.url.as_deref(), MAX_URL)?;
            text("scm.url", b.scm_url.as_deref(), MAX_URL)?;
            text("scm.branch", b.scm_branch.as_deref(), MAX_BRANCH)?;
            text("scm.commit", b.scm_commit.as_deref(), MAX_COMMIT)?;
            if let Some(params) = &b.parameters {
                if params.len() > MAX_PARAMETERS {
                    return Err(IngestError::invalid(
                        "parameters",
                        format!("must be at most {MAX_PARAMETERS} (got {})", params.len()),
                    ));
                }
                for (k, v) in params {
                    text("parameters", Some(k), MAX_PARAMETER_NAME)?;
                    text(&format!("parameters.{k}"), Some(v), MAX_PARAMETER_VALUE)?;
                }
            }
            Ok(())
        }
        DomainEvent::Queue(q) => {
            instant("entered_at", q.entered_at)?;
            instant("left_at", q.left_at)?;
            instant("at", Some(q.at))?;
            span("queue wait", between(q.entered_at, q.left_at))?;
            text("task", Some(&q.task), MAX_TEXT)?;
            text("why", q.why.as_deref(), MAX_WHY)?;
            text("label", q.label.as_deref(), MAX_TEXT)
        }
        DomainEvent::Node(n) => {
            instant("at", Some(n.at))?;
            text("node", Some(&n.node), MAX_TEXT)?;
            text("offline_cause", n.offline_cause.as_deref(), MAX_WHY)
        }
        DomainEvent::Step(s) => {
            number("number", s.build.number)?;
            instant("started_at", s.started_at)?;
            instant("finished_at", s.finished_at)?;
            span("step duration", between(s.started_at, s.finished_at))?;
            text("step_id", Some(&s.step_id), MAX_TEXT)?;
            text("step_type", Some(&s.step_type), MAX_TEXT)
        }
        DomainEvent::JobChanged { change, .. } => text("change", Some(change), MAX_TEXT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BuildFacts, BuildKey, BuildPhase, ControllerName, EventSource, JobName};

    fn build(f: impl FnOnce(&mut BuildFacts)) -> IngestEvent {
        let mut b = BuildFacts::new(
            BuildKey {
                job: JobName::parse("app").unwrap(),
                number: 7,
            },
            BuildPhase::Completed,
        );
        b.started_at = Timestamp::from_millis(1_700_000_000_000).ok();
        b.duration_ms = Some(60_000);
        f(&mut b);
        IngestEvent {
            key: "k".into(),
            controller: ControllerName::parse("prod").unwrap(),
            source: EventSource::Notification,
            kind: "build.completed".into(),
            event: DomainEvent::Build(b),
        }
    }

    fn field(e: &IngestEvent) -> Option<String> {
        match check(e) {
            Ok(()) => None,
            Err(IngestError::Invalid { field, .. }) => Some(field),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn what_jenkins_produces_passes_and_the_rest_names_its_field() {
        assert_eq!(field(&build(|_| {})), None);
        assert_eq!(
            field(&build(|b| b.duration_ms = Some(5_000_000_000_000_000_000))),
            Some("duration".into())
        );
        assert_eq!(
            field(&build(
                |b| b.finished_at = Timestamp::from_millis(LATEST_MS).ok()
            )),
            Some("finished_at".into())
        );
        assert_eq!(field(&build(|b| b.build.number = 0)), Some("number".into()));
        assert_eq!(
            field(&build(|b| b.build.number = u64::MAX)),
            Some("number".into())
        );
        assert_eq!(
            field(&build(|b| b.scm_commit = Some("a".repeat(129)))),
            Some("scm.commit".into())
        );
        assert_eq!(
            field(&build(|b| {
                b.parameters = Some((0..300).map(|i| (format!("P{i}"), "x".into())).collect())
            })),
            Some("parameters".into())
        );
        assert_eq!(
            field(&build(|b| {
                b.queued_at = Timestamp::from_millis(EARLIEST_MS).ok();
            })),
            Some("queue wait".into()),
            "queued 23 years before it started"
        );
    }
}
