//! Reports: the performance report of a range in JSON, CSV, Markdown or HTML.

use super::AppState;
use super::costs::range_param;
use super::errors::ApiError;
use crate::analytics::performance::{Filter, PerformanceReport, performance_report};
use crate::analytics::render::{Format, render};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Query of `GET /api/v1/reports/performance`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// `24h` (default), `7d`, `30d` (any span ending now), or `FROM..TO`.
    range: Option<String>,
    controller: Option<String>,
    /// Full job name.
    job: Option<String>,
    label: Option<String>,
    /// `json` (default), `csv`, `md` or `html`.
    format: Option<String>,
}

/// Builds, success and error rates, demand, queue wait and duration (mean, p50, p95),
/// scaling events, cost efficiency, trends against the range before, regressions, and
/// recommendations.
#[utoipa::path(get, path = "/api/v1/reports/performance", tag = "reports", params(ReportQuery),
    responses((status = 200, body = PerformanceReport), (status = 400, body = super::errors::ErrorBody)))]
pub async fn performance(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let q = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let range = range_param(q.range.as_deref())?;
    let heavy = state.heavy.admit(&req)?;
    let format = Format::parse(q.format.as_deref().unwrap_or("json"))
        .map_err(|e| ApiError::invalid("format", e))?;
    let filter = Filter {
        controller: q.controller,
        job: q.job,
        label: q.label,
    };
    let report = performance_report(&state.store, &state.settings, range, filter).await?;
    if format != Format::Html {
        return Ok(HttpResponse::Ok()
            .content_type(format.content_type())
            .body(render(&report, format, &[])));
    }
    // The HTML report replays each pool's history for its frontier: one replay at a time.
    let state = state.clone();
    super::heavy::answer_while_working(state.stopping.clone(), format.content_type(), async move {
        let _heavy = heavy;
        let slot = state
            .replaying
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let frontiers = crate::analytics::frontier::pool_frontiers(
            &state.store,
            state.settings.clone(),
            range,
            None,
            &state.metrics,
            slot,
        )
        .await?;
        Ok(web::Bytes::from(render(&report, format, &frontiers)))
    })
    .await
}

/// Query of `GET /api/v1/export`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `24h` (default), `7d`, `30d`, or `FROM..TO`.
    range: Option<String>,
    /// `csv` (default) or `json` (an array).
    format: Option<String>,
}

/// One exported build.
#[derive(Debug, serde::Serialize)]
struct ExportRow<'a> {
    controller: std::borrow::Cow<'a, str>,
    job: std::borrow::Cow<'a, str>,
    number: u64,
    label: std::borrow::Cow<'a, str>,
    result: std::borrow::Cow<'a, str>,
    finished_at: String,
    queue_wait_ms: Option<i64>,
    duration_ms: i64,
    cost: f64,
    cost_cpu: f64,
    cost_memory: f64,
    priced_by: &'static str,
}

const EXPORT_COLUMNS: [&str; 12] = [
    "controller",
    "job",
    "number",
    "label",
    "result",
    "finished_at",
    "queue_wait_ms",
    "duration_ms",
    "cost",
    "cost_cpu",
    "cost_memory",
    "priced_by",
];

fn export_bytes<'a>(
    settings: &crate::config::Settings,
    b: &'a crate::store::PricedBuild,
    json: bool,
    first: bool,
) -> web::Bytes {
    let (cost, priced_by) = crate::analytics::costs::price_build(settings, b);
    let r4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
    // Text cells of the CSV are neutralised for spreadsheets; JSON carries them as they are.
    let cell = |s: &'a str| {
        if json {
            std::borrow::Cow::Borrowed(s)
        } else {
            crate::analytics::render::csv_cell(s)
        }
    };
    let row = ExportRow {
        controller: cell(&b.controller),
        job: cell(&b.job),
        number: b.number,
        label: cell(b.label.as_deref().unwrap_or("")),
        result: cell(b.result.as_deref().unwrap_or("")),
        finished_at: crate::domain::Timestamp::from_millis(b.finished_at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        queue_wait_ms: b.queue_wait_ms,
        duration_ms: b.duration_ms,
        cost: r4(cost.total()),
        cost_cpu: r4(cost.cpu),
        cost_memory: r4(cost.memory),
        priced_by,
    };
    if json {
        let mut out = if first {
            b"\n".to_vec()
        } else {
            b",\n".to_vec()
        };
        serde_json::to_writer(&mut out, &row).expect("a row serializes");
        web::Bytes::from(out)
    } else {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.serialize(&row).expect("a row serializes");
        web::Bytes::from(w.into_inner().expect("flushing to memory"))
    }
}

/// Builds read per page of an export.
const EXPORT_PAGE: u32 = 500;
/// Longest an export waits for its client to take the next rows before it gives up.
const EXPORT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the export's pages and hands their rows to the answer; stops when the client is
/// gone or has not taken a row for [`EXPORT_WRITE_TIMEOUT`]. Holds no connection while it
/// waits for the client, and its heavy-read place until it ends.
async fn produce_export(
    store: crate::store::Store,
    range: crate::analytics::Range,
    tx: tokio::sync::mpsc::Sender<crate::store::PricedBuild>,
    complete: Arc<AtomicBool>,
    _permit: super::heavy::Permit,
) {
    let mut after: Option<crate::store::PricedBuild> = None;
    loop {
        let page = match store
            .finished_builds_page(range.from, range.to, after.as_ref(), EXPORT_PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "export failed part-way; the answer ends broken");
                return;
            }
        };
        let last_page = page.len() < EXPORT_PAGE as usize;
        after = page.last().cloned();
        for b in page {
            match tokio::time::timeout(EXPORT_WRITE_TIMEOUT, tx.send(b)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // the client went away
                Err(_) => {
                    tracing::warn!(
                        timeout = ?EXPORT_WRITE_TIMEOUT,
                        "an export's client stopped reading; the export is dropped"
                    );
                    return;
                }
            }
        }
        if last_page {
            complete.store(true, Ordering::Release);
            return;
        }
    }
}

/// Every finished build of the range with its cost, streamed page by page (oldest
/// first): CSV with a header, or a JSON array. Memory stays flat whatever the range, and a
/// client that stops reading holds no database connection.
#[utoipa::path(get, path = "/api/v1/export", tag = "reports", params(ExportQuery),
    responses((status = 200, description = "CSV or a JSON array of builds", content_type = "text/csv"),
              (status = 400, body = super::errors::ErrorBody)))]
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let q = web::Query::<ExportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let range = range_param(q.range.as_deref())?;
    let json = match q.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "json" => true,
        _ => return Err(ApiError::invalid("format", "must be csv or json")),
    };
    let permit = state.heavy.admit(&req)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<crate::store::PricedBuild>(EXPORT_PAGE as usize);
    let complete = Arc::new(AtomicBool::new(false));
    tokio::spawn(produce_export(
        state.store.clone(),
        range,
        tx,
        complete.clone(),
        permit,
    ));
    let settings = state.settings.clone();
    let head = if json {
        web::Bytes::from_static(b"[")
    } else {
        web::Bytes::from(format!("{}\n", EXPORT_COLUMNS.join(",")))
    };
    // States: the header, then rows, then (JSON) the closing bracket. An export that
    // stopped short ends in an error, so the client sees a broken transfer, never a
    // complete-looking file that lacks rows.
    let body = futures_util::stream::unfold(
        (rx, Some(head), true, false),
        move |(mut rx, head, first, done)| {
            let settings = settings.clone();
            let complete = complete.clone();
            async move {
                if let Some(h) = head {
                    return Some((Ok::<_, actix_web::Error>(h), (rx, None, first, done)));
                }
                if done {
                    return None;
                }
                match rx.recv().await {
                    Some(b) => Some((
                        Ok(export_bytes(&settings, &b, json, first)),
                        (rx, None, false, false),
                    )),
                    None if !complete.load(Ordering::Acquire) => Some((
                        Err(actix_web::error::ErrorInternalServerError(
                            "the export stopped short",
                        )),
                        (rx, None, false, true),
                    )),
                    None if json => Some((
                        Ok(web::Bytes::from_static(b"\n]\n")),
                        (rx, None, false, true),
                    )),
                    None => None,
                }
            }
        },
    );
    let (ctype, ext) = if json {
        ("application/json", "json")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    Ok(HttpResponse::Ok()
        .content_type(ctype)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"builds.{ext}\""),
        ))
        .streaming(body))
}
