//! Authentication. Webhooks: one shared token, accepted four ways (`?token=`, bearer,
//! basic-auth password, HMAC-SHA256 signature of the raw body), compared in constant time.
//! The pipeline API: a JWT bearer token holding the endpoint's scope.

use super::errors::ApiError;
use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying `sha256=<hex>` of HMAC-SHA256(token, raw body).
pub const SIGNATURE_HEADER: &str = "X-Autopilot-Signature-256";

/// The webhook token and how to check it.
#[derive(Clone)]
pub struct WebhookAuth {
    token: SecretString,
}

impl WebhookAuth {
    pub fn new(token: SecretString) -> Self {
        Self { token }
    }

    /// Accepts the request when any of the four ways carries the token. A signature
    /// header, when present, must be right whatever else the request carries.
    pub fn verify(&self, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
        let token = self.token.expose_secret().as_bytes();
        if let Some(sig) = req.headers().get(SIGNATURE_HEADER) {
            let sig = sig
                .to_str()
                .map_err(|_| unauthorized("signature header is not text"))?;
            let hex_sig = sig
                .strip_prefix("sha256=")
                .ok_or_else(|| unauthorized("signature must be sha256=<hex>"))?;
            let raw =
                hex::decode(hex_sig.trim()).map_err(|_| unauthorized("signature is not hex"))?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(token).map_err(|_| unauthorized("bad key"))?;
            mac.update(body);
            return mac
                .verify_slice(&raw)
                .map_err(|_| unauthorized("signature does not match the body"));
        }
        let mut offered: Vec<Vec<u8>> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if k == "token" {
                offered.push(v.into_owned().into_bytes());
            }
        }
        if let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let value = value.trim();
            if let Some(bearer) = strip_scheme(value, "Bearer") {
                offered.push(bearer.trim().as_bytes().to_vec());
            } else if let Some(basic) = strip_scheme(value, "Basic")
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
            {
                // user:password; the password is the token, the user is free.
                if let Some(i) = decoded.iter().position(|b| *b == b':') {
                    offered.push(decoded[i + 1..].to_vec());
                }
            }
        }
        if offered.is_empty() {
            return Err(unauthorized(
                "a webhook token is required (?token=, Authorization: Bearer, basic-auth password, or X-Autopilot-Signature-256)",
            ));
        }
        // Check every offered credential so timing does not tell which one was tried.
        let ok = offered.iter().fold(subtle::Choice::from(0u8), |acc, o| {
            acc | o.as_slice().ct_eq(token)
        });
        if bool::from(ok) {
            Ok(())
        } else {
            Err(unauthorized("the webhook token is wrong"))
        }
    }
}

/// The claims of the request's bearer JWT when it holds `scope`: 401 without a valid
/// token, 403 with a valid one lacking the scope.
pub fn require_scope(
    req: &HttpRequest,
    keys: &crate::tokens::TokenKeys,
    scope: crate::tokens::Scope,
) -> Result<crate::tokens::Claims, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("a bearer token is required (Authorization: Bearer <JWT>)"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let token = strip_scheme(value.trim(), "Bearer")
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <JWT>`"))?;
    keys.verify(token.trim(), scope).map_err(|e| match e {
        crate::tokens::TokenError::Invalid(m) => unauthorized(&m),
        missing @ crate::tokens::TokenError::MissingScope { .. } => {
            ApiError::Forbidden(missing.to_string())
        }
    })
}

/// With `auth.protect_reads`, the read API needs a `reports:read` token.
pub fn require_read(req: &HttpRequest, state: &super::AppState) -> Result<(), ApiError> {
    if state.settings.auth.protect_reads {
        require_scope(req, &state.tokens, crate::tokens::Scope::ReportsRead)?;
    }
    Ok(())
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_string())
}

/// The token from settings, or else the one kept in `<data_dir>/webhook-token`, created
/// on first start with mode 0600. The token itself is never logged.
pub fn load_or_create_token(
    configured: Option<&SecretString>,
    data_dir: &std::path::Path,
) -> anyhow::Result<SecretString> {
    match configured {
        Some(t) => Ok(t.clone()),
        None => crate::secrets::load_or_create(data_dir, "webhook-token", 16),
    }
}
