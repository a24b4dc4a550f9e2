//! `POST /webhooks/*`: read the body within the limit, authenticate, check the content
//! type, parse, and answer 2xx only once the events are committed.

use super::AppState;
use super::errors::ApiError;
use crate::domain::{ControllerName, Timestamp};
use crate::ingest::{self, IngestContext, Ingested, cloudevents, statistics};
use crate::store::SubmitError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Serialize;

/// Answer to an accepted webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookReply {
    /// Events stored by this request.
    pub stored: usize,
    /// Events already stored by an earlier delivery, skipped.
    pub duplicates: usize,
    /// Set when the event's type is not tracked: acknowledged, not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// Notification plugin payload (JSON, all four phases).
#[utoipa::path(post, path = "/webhooks/notification", tag = "webhooks",
    params(("controller" = Option<String>, Query, description = "Controller name; default derived from the payload's URLs"),
           ("token" = Option<String>, Query, description = "Webhook token (or bearer, basic password, or signature)")),
    request_body(content = Object, content_type = "application/json", description = "Notification plugin JobState"),
    responses((status = 200, body = WebhookReply), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 413, body = super::errors::ErrorBody),
              (status = 415, body = super::errors::ErrorBody), (status = 503, body = super::errors::ErrorBody),
              (status = 507, body = super::errors::ErrorBody)))]
pub async fn receive_notification(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source = "notification";
    let body = accept(&req, payload, &state, source).await?;
    let ctx = context(&req, &state)?;
    let ingested = counted(&state, source, ingest::notification::parse(&body, &ctx))?;
    store(&state, source, ingested).await
}

/// CloudEvents plugin event, binary (`ce-*` headers) or structured mode.
#[utoipa::path(post, path = "/webhooks/cloudevents", tag = "webhooks",
    params(("controller" = Option<String>, Query, description = "Controller name"),
           ("token" = Option<String>, Query, description = "Webhook token"),
           ("ce-specversion" = Option<String>, Header, description = "CloudEvents version, binary mode: 1.0"),
           ("ce-type" = Option<String>, Header, description = "Event type, binary mode"),
           ("ce-id" = Option<String>, Header, description = "Event id, binary mode: at most 256 bytes")),
    request_body(content = Object, content_type = "application/json", description = "Event data (binary) or envelope (application/cloudevents+json)"),
    responses((status = 200, body = WebhookReply), (status = 202, body = WebhookReply, description = "Type not tracked: acknowledged, not stored"),
              (status = 400, body = super::errors::ErrorBody), (status = 401, body = super::errors::ErrorBody),
              (status = 413, body = super::errors::ErrorBody), (status = 415, body = super::errors::ErrorBody),
              (status = 503, body = super::errors::ErrorBody), (status = 507, body = super::errors::ErrorBody)))]
pub async fn receive_cloudevent(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source = "cloudevents";
    let structured = media_type(&req).as_deref() == Some("application/cloudevents+json");
    let body = accept_with(&req, payload, &state, source, structured).await?;
    let ctx = context(&req, &state)?;
    let parsed = if structured {
        cloudevents::parse_structured(&body)
    } else {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let attrs = cloudevents::CeAttributes {
            specversion: header("ce-specversion"),
            id: header("ce-id"),
            ce_type: header("ce-type"),
            source: header("ce-source"),
        };
        cloudevents::parse_binary_data(&body).map(|data| (attrs, data))
    };
    let result = parsed.and_then(|(attrs, data)| cloudevents::parse(&attrs, data, &ctx));
    let ingested = counted(&state, source, result)?;
    store(&state, source, ingested).await
}

/// Statistics Gatherer plugin payload: build, queue or buildstep.
#[utoipa::path(post, path = "/webhooks/statistics", tag = "webhooks",
    params(("controller" = Option<String>, Query, description = "Controller name"),
           ("token" = Option<String>, Query, description = "Webhook token"),
           ("type" = Option<String>, Query, description = "build | queue | buildstep; default told from the payload's shape")),
    request_body(content = Object, content_type = "application/json", description = "BuildStats, QueueStats or BuildStepStats"),
    responses((status = 200, body = WebhookReply), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 413, body = super::errors::ErrorBody),
              (status = 415, body = super::errors::ErrorBody), (status = 503, body = super::errors::ErrorBody),
              (status = 507, body = super::errors::ErrorBody)))]
pub async fn receive_statistics(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source = "statistics";
    let body = accept(&req, payload, &state, source).await?;
    let ctx = context(&req, &state)?;
    let kind = match query_value(&req, "type").inspect_err(|_| {
        state.metrics.count_event(source, "unknown", "rejected");
    })? {
        None => None,
        Some(t) => Some(statistics::StatisticsKind::parse(&t).ok_or_else(|| {
            state.metrics.count_event(source, "unknown", "rejected");
            ApiError::invalid("type", "must be build, queue, buildstep, scm or project")
        })?),
    };
    let ingested = counted(&state, source, statistics::parse(&body, kind, &ctx))?;
    store(&state, source, ingested).await
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    source: &str,
) -> Result<web::Bytes, ApiError> {
    accept_with(req, payload, state, source, false).await
}

/// Authentication from the head, size limit, the signature if any, content type: in that
/// order, so an unauthenticated body is never read (a signed one is read within the
/// limit, a few at a time), an oversized one never buffered, and none parsed unchecked.
async fn accept_with(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    source: &str,
    structured_ok: bool,
) -> Result<web::Bytes, ApiError> {
    let limit = state.settings.server.body_limit_bytes;
    let reject = |outcome: &str| state.metrics.count_event(source, "unknown", outcome);
    let verified = state
        .auth
        .verify_head(req)
        .inspect_err(|_| reject("unauthorized"))?;
    let signed = verified == super::auth::Verified::NeedsBody;
    // Bodies read before they are authenticated: a bounded number at a time.
    let _slot = match signed {
        true => Some(
            state
                .unverified_bodies
                .try_acquire()
                .map_err(|_| ApiError::Overloaded { retry_after: 1 })?,
        ),
        false => None,
    };
    let body = read_body(req, payload, limit, state.settings.server.body_timeout)
        .await
        .inspect_err(|_| reject("rejected"))?;
    if signed {
        state
            .auth
            .verify_signature(req, &body)
            .inspect_err(|_| reject("unauthorized"))?;
    }
    let json = match media_type(req).as_deref() {
        Some("application/json" | "text/json") => true,
        Some("application/cloudevents+json") => structured_ok,
        Some(t) => {
            t.starts_with("application/")
                && t.ends_with("+json")
                && !t.starts_with("application/cloudevents")
        }
        None => false,
    };
    if !json {
        reject("rejected");
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json{}, got {}",
            if structured_ok {
                " or application/cloudevents+json"
            } else {
                ""
            },
            media_type(req).unwrap_or_else(|| "none".into())
        )));
    }
    Ok(body)
}

/// The request's body, refused past `limit` bytes or when it takes longer than
/// `timeout` to arrive (408: a client trickling its body holds no connection for long).
pub(super) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, ApiError> {
    tokio::time::timeout(timeout, read_body_whole(req, payload, limit))
        .await
        .map_err(|_| ApiError::Timeout(format!("the request body took longer than {timeout:?}")))?
}

async fn read_body_whole(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::Malformed(format!("reading the request body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// 415 unless the request says its body is JSON: a cross-site form (text/plain,
/// form-encoded) cannot start anything.
pub(super) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    match media_type(req).as_deref() {
        Some("application/json") => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got {}",
            other.unwrap_or("none")
        ))),
    }
}

fn media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
}

/// The query parameter `key`; given twice, the request is refused (which one was meant
/// cannot be told, and two readers could take different ones).
fn query_value(req: &HttpRequest, key: &str) -> Result<Option<String>, ApiError> {
    let mut values = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::invalid(
            key,
            "is given more than once; give it once",
        ));
    }
    Ok(first)
}

fn context(req: &HttpRequest, state: &AppState) -> Result<IngestContext, ApiError> {
    let controller_override = match query_value(req, "controller")? {
        None => None,
        Some(c) => Some(ControllerName::parse(&c).map_err(|e| ApiError::invalid("controller", e))?),
    };
    Ok(IngestContext {
        controller_override,
        default_controller: state.settings.webhook.default_controller.clone(),
        received_at: Timestamp::now(),
    })
}

fn counted(
    state: &AppState,
    source: &str,
    result: Result<Ingested, ingest::IngestError>,
) -> Result<Ingested, ApiError> {
    // Every event is held to what Jenkins can produce, and secret-looking parameters
    // masked, before anything is stored.
    let checked = result.and_then(|mut ingested| {
        if let Ingested::Events(events) = &mut ingested {
            events.iter().try_for_each(ingest::limits::check)?;
            for e in events.iter_mut() {
                ingest::limits::mask_secrets(e, &state.secret_parameters);
                if let crate::domain::DomainEvent::Build(b) = &e.event
                    && let Some(raw) = &b.result_raw
                {
                    // Kept with the result unknown; counted so a new spelling shows.
                    tracing::info!(source, result = %raw, "a build result spelling no plugin is known to send; kept, result unknown");
                    state
                        .metrics
                        .count_event(source, "build.result_unrecognized", "accepted");
                }
            }
        }
        Ok(ingested)
    });
    checked.map_err(|e| {
        tracing::info!(source, error = %e, "webhook payload refused");
        state.metrics.count_event(source, "unknown", "rejected");
        ApiError::from(e)
    })
}

async fn store(
    state: &AppState,
    source: &str,
    ingested: Ingested,
) -> Result<HttpResponse, ApiError> {
    let events = match ingested {
        Ingested::Ignored { kind } => {
            // The type is the sender's: counted under one label to keep metrics bounded.
            state.metrics.count_event(source, "untracked", "ignored");
            tracing::debug!(source, kind, "event type not tracked; acknowledged");
            return Ok(HttpResponse::Accepted().json(WebhookReply {
                stored: 0,
                duplicates: 0,
                ignored: Some(kind),
            }));
        }
        Ingested::Events(events) => events,
    };
    state.disk.check().inspect_err(|_| {
        state
            .metrics
            .count_event(source, "unknown", "insufficient_storage");
    })?;
    let kinds: Vec<String> = events.iter().map(|e| e.kind.clone()).collect();
    // Queue changes wake their controller's pools of the label once the events are
    // committed (every pool of the controller when the label is unknown).
    let wake: Vec<(crate::domain::ControllerName, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.event {
            crate::domain::DomainEvent::Queue(q) => Some((e.controller.clone(), q.label.clone())),
            _ => None,
        })
        .collect();
    match state.writer.write(events).await {
        Ok(outcome) => {
            for (controller, label) in &wake {
                state.scaling.notify(controller, label.as_deref());
            }
            for (kind, stored) in kinds.iter().zip(&outcome.stored_events) {
                let label = if *stored { "stored" } else { "duplicate" };
                state.metrics.count_event(source, kind, label);
            }
            Ok(HttpResponse::Ok().json(WebhookReply {
                stored: outcome.stored,
                duplicates: outcome.duplicates,
                ignored: None,
            }))
        }
        Err(SubmitError::Full) => {
            for kind in &kinds {
                state.metrics.count_event(source, kind, "overloaded");
            }
            Err(ApiError::Overloaded {
                retry_after: state.settings.ingest.retry_after_seconds,
            })
        }
        Err(SubmitError::Closed) => {
            Err(ApiError::Unavailable("the writer is shutting down".into()))
        }
        Err(SubmitError::DiskFull) => {
            for kind in &kinds {
                state
                    .metrics
                    .count_event(source, kind, "insufficient_storage");
            }
            Err(ApiError::InsufficientStorage(
                "the store's disk is full: nothing was stored; send it again once space is freed"
                    .into(),
            ))
        }
        Err(SubmitError::Failed) => {
            for kind in &kinds {
                state.metrics.count_event(source, kind, "failed");
            }
            Err(ApiError::Internal("storing the event failed".into()))
        }
    }
}
