//! The one mapping from errors to HTTP statuses, with a JSON body
//! `{error, field?, detail}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or has a value it may not have (400).
    #[error("field `{field}` {detail}")]
    Invalid { field: String, detail: String },
    /// The body is not JSON (400), with the parser's position.
    #[error("{0}")]
    Malformed(String),
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the permission the endpoint needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at this address (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than the limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The request took too long to arrive (408).
    #[error("{0}")]
    Timeout(String),
    /// The content type is not one the endpoint reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The write queue is full: retry after the given seconds (503).
    #[error("the service is busy; retry after {retry_after} s")]
    Overloaded { retry_after: u32 },
    /// The disk is too full to store more (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A dependency (the store) is not reachable (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected (500).
    #[error("{0}")]
    Internal(String),
}

/// What a client is told of an unexpected error.
pub const INTERNAL_DETAIL: &str = "an unexpected error occurred; the service's log says why";

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind, e.g. `invalid_field`, `unauthorized`, `payload_too_large`.
    pub error: &'static str,
    /// The offending field's path, for field errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, for people.
    pub detail: String,
}

impl ApiError {
    pub fn invalid(field: &str, detail: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.to_string(),
            detail: detail.to_string(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_field",
            Self::Malformed(_) => "malformed_json",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::TooLarge { .. } => "payload_too_large",
            Self::Timeout(_) => "request_timeout",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (field, detail) = match self {
            Self::Invalid { field, detail } => (Some(field.clone()), detail.clone()),
            Self::Internal(cause) => {
                // The cause can name tables, values or addresses: it stays in the log.
                tracing::error!(cause = %cause, "request failed");
                (None, INTERNAL_DETAIL.to_string())
            }
            other => (None, other.to_string()),
        };
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            Self::Overloaded { retry_after } => {
                resp.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::Unauthorized(_) => {
                resp.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"jenkins-autopilot\", Basic realm=\"jenkins-autopilot\"",
                    ),
                ));
            }
            _ => {}
        }
        resp.json(ErrorBody {
            error: self.kind(),
            field,
            detail,
        })
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> Self {
        match e {
            crate::ingest::IngestError::Malformed(m) => {
                Self::Malformed(format!("malformed JSON: {m}"))
            }
            crate::ingest::IngestError::Invalid { field, reason } => Self::Invalid {
                field,
                detail: reason,
            },
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        // The database's own text stays in the log: it can name tables, columns and values.
        if e.is_busy() {
            tracing::warn!(error = %e, "store read timed out");
            return Self::Overloaded { retry_after: 1 };
        }
        Self::Internal(format!("store read failed: {e}"))
    }
}
