//! Raw plugin payloads -> domain events. No I/O here: each parser takes the request's
//! body (and headers, for CloudEvents) and returns validated events or a precise error.

pub mod cloudevents;
mod json;
pub mod limits;
pub mod notification;
pub mod performance;
pub mod statistics;

use crate::domain::{ControllerName, JobName, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a payload was refused. Nothing of a refused payload is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// Not JSON at all, with the parser's position.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON, but a field is missing or wrong.
    #[error("field `{field}` {reason}")]
    Invalid { field: String, reason: String },
}

impl IngestError {
    pub fn missing(field: &str) -> Self {
        Self::Invalid {
            field: field.to_string(),
            reason: "is required".to_string(),
        }
    }

    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// What a payload amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Events to store (one payload may carry more than one).
    Events(Vec<crate::domain::IngestEvent>),
    /// A well-formed payload of a type this service does not track: acknowledged, counted,
    /// not stored.
    Ignored { kind: String },
}

/// What the parsers need to know besides the payload.
#[derive(Debug, Clone)]
pub struct IngestContext {
    /// `?controller=` from the request, which beats anything derived from the payload.
    pub controller_override: Option<ControllerName>,
    /// Used when neither the request nor the payload names the controller.
    pub default_controller: ControllerName,
    /// When the request arrived, for payloads that carry no time of their own.
    pub received_at: Timestamp,
}

impl IngestContext {
    /// The controller: the request's override, else the first URL in the payload that
    /// names a host, else the configured default.
    pub fn controller<'a>(
        &self,
        urls: impl IntoIterator<Item = Option<&'a str>>,
    ) -> ControllerName {
        if let Some(c) = &self.controller_override {
            return c.clone();
        }
        urls.into_iter()
            .flatten()
            .find_map(ControllerName::from_jenkins_url)
            .unwrap_or_else(|| self.default_controller.clone())
    }
}

#[cfg(test)]
pub(crate) fn test_context(received_ms: i64) -> IngestContext {
    IngestContext {
        controller_override: None,
        default_controller: ControllerName::parse("default").expect("valid name"),
        received_at: Timestamp::from_millis(received_ms).expect("valid instant"),
    }
}

/// Parses JSON into a raw payload struct in one pass: syntax errors keep serde's line and
/// column, type errors name the field's path.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, IngestError> {
    json::check_unique_keys(body)?;
    // serde would read a struct from an array by position: anything but an object goes
    // through a `Value` so it is refused as such (or reported as malformed).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return from_value(json::value(body)?);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => IngestError::Malformed(inner.to_string()),
            serde_json::error::Category::Data => {
                let field = if path.is_empty() || path == "." {
                    "$".to_string()
                } else {
                    path
                };
                IngestError::invalid(&field, strip_position(&inner.to_string()))
            }
        }
    })?;
    // Trailing characters after the object are malformed JSON too.
    de.end()
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    Ok(value)
}

/// serde_json appends "at line L column C" to data errors; the field path says where.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

pub(crate) use json::value as json_value;

pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, IngestError> {
    if !value.is_object() {
        return Err(IngestError::invalid("$", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        IngestError::invalid(&path, e.into_inner())
    })
}

/// An optional instant field; a present but unreadable value is an error naming the field.
pub(crate) fn instant(
    field: &str,
    value: Option<&Value>,
) -> Result<Option<Timestamp>, IngestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Timestamp::from_json(v)
            .map(Some)
            .map_err(|e| IngestError::invalid(field, e)),
    }
}

/// Java's `new Date(0)` and a missing executor's `0L` mean "not set".
pub(crate) fn nonzero(t: Option<Timestamp>) -> Option<Timestamp> {
    t.filter(|t| t.millis() > 0)
}

/// The job's full name: from the job or build URL when there is one (it carries the folder
/// path), else the plain name.
pub(crate) fn job_name(
    url_field: &str,
    url: Option<&str>,
    name_field: &str,
    name: Option<&str>,
) -> Result<JobName, IngestError> {
    if let Some(job) = url.and_then(JobName::from_job_url) {
        return Ok(job);
    }
    match name {
        Some(n) => JobName::parse(n).map_err(|e| IngestError::invalid(name_field, e)),
        None => Err(IngestError::missing(&format!(
            "{name_field}` or `{url_field}"
        ))),
    }
}

/// A job and one of its builds, as the Notification plugin sends them and the
/// CloudEvents plugin sends its job events (the same fields, camelCase there).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawJob {
    pub name: Option<String>,
    pub url: Option<String>,
    pub build: Option<RawBuild>,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawBuild {
    #[serde(alias = "fullUrl")]
    pub full_url: Option<String>,
    pub number: Option<i64>,
    #[serde(alias = "queueId")]
    pub queue_id: Option<i64>,
    pub timestamp: Option<Value>,
    pub duration: Option<i64>,
    /// Notification only: `QUEUED`, `STARTED`, `COMPLETED`, `FINALIZED`.
    pub phase: Option<String>,
    pub status: Option<String>,
    pub url: Option<String>,
    pub parameters: Option<serde_json::Map<String, Value>>,
    /// Notification's `scm`, CloudEvents' `scmState`.
    #[serde(alias = "scmState")]
    pub scm: Option<RawScm>,
}

impl RawJob {
    /// The build, or `build` missing.
    pub(crate) fn build(&self) -> Result<&RawBuild, IngestError> {
        self.build
            .as_ref()
            .ok_or_else(|| IngestError::missing("build"))
    }

    /// The job (from the job's URL, else the build's, else the name), the build number,
    /// the controller and the build; or the field that is wrong.
    pub(crate) fn identify(
        self,
        ctx: &IngestContext,
    ) -> Result<(JobName, u64, ControllerName, RawBuild), IngestError> {
        let build = self.build.ok_or_else(|| IngestError::missing("build"))?;
        let number = build_number("build.number", build.number)?;
        let url = self.url.as_deref().or(build.url.as_deref());
        let job = job_name("url", url, "name", self.name.as_deref())?;
        let controller = ctx.controller([build.full_url.as_deref()]);
        Ok((job, number, controller, build))
    }
}

/// A queue item's id (`jenkinsQueueId`): Jenkins numbers them from 1.
pub(crate) fn queue_id(raw: Option<i64>) -> Result<u64, IngestError> {
    match raw {
        None => Err(IngestError::missing("jenkinsQueueId")),
        Some(id) if id >= 1 => Ok(id as u64),
        Some(_) => Err(IngestError::invalid("jenkinsQueueId", "must be 1 or more")),
    }
}

/// A build number: Jenkins numbers start at 1.
pub(crate) fn build_number(field: &str, n: Option<i64>) -> Result<u64, IngestError> {
    match n {
        None => Err(IngestError::missing(field)),
        Some(n) if n >= 1 => Ok(n as u64),
        Some(_) => Err(IngestError::invalid(field, "must be 1 or more")),
    }
}

/// The SCM a payload names (the Notification plugin's `scm`, CloudEvents' `scmState`,
/// Statistics Gatherer's `scmInfo`): the same three fields in all three.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawScm {
    url: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
}

impl RawScm {
    /// Sets the build's SCM facts (blank fields stay unknown).
    pub(crate) fn into_facts(self, facts: &mut crate::domain::BuildFacts) {
        facts.scm_url = text(self.url);
        facts.scm_branch = text(self.branch);
        facts.scm_commit = text(self.commit);
    }
}

/// Optional text: empty strings count as absent.
pub(crate) fn text(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Build parameters as strings (plugins send `EnvVars`; some send numbers or booleans).
pub(crate) fn parameters(
    raw: Option<serde_json::Map<String, Value>>,
) -> Option<std::collections::BTreeMap<String, String>> {
    raw.map(|m| {
        m.into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect()
    })
}

/// A build result field: Jenkins' result (spellings plugins use map to it), none while
/// the build runs, or a spelling nobody sends kept as it came (the result unknown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    pub result: Option<crate::domain::BuildResult>,
    pub unrecognized: Option<String>,
}

impl Outcome {
    /// Whether the build has ended: a result, or a spelling that is not a placeholder.
    pub fn ended(&self) -> bool {
        self.result.is_some() || self.unrecognized.is_some()
    }
}

pub(crate) fn result(raw: Option<&str>) -> Outcome {
    match raw.map(crate::domain::BuildResult::parse) {
        None | Some(Ok(None)) => Outcome::default(),
        Some(Ok(Some(r))) => Outcome {
            result: Some(r),
            unrecognized: None,
        },
        Some(Err(unknown)) => Outcome {
            result: None,
            unrecognized: Some(unknown.0),
        },
    }
}
