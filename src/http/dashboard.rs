//! The dashboard: static assets compiled into the binary (no CDN), reading only the JSON
//! API. Chart.js is vendored under `dashboard/vendor/` with its licence.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

/// `(path under /assets/, content type, bytes)`.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/style.css"),
    ),
    (
        "vendor/chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/vendor/chart.umd.min.js"),
    ),
    (
        "vendor/chart.js-LICENSE.md",
        "text/markdown; charset=utf-8",
        include_bytes!("dashboard/vendor/chart.js-LICENSE.md"),
    ),
];

/// The page.
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        ))
        .body(include_str!("dashboard/index.html"))
}

/// An asset, or 404.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, super::errors::ApiError> {
    let path = req.match_info().get("path").unwrap_or_default();
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, bytes)) => Ok(HttpResponse::Ok()
            .content_type(*ctype)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*bytes)),
        None => Err(super::errors::ApiError::NotFound(format!(
            "no asset {path}"
        ))),
    }
}
