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

    /// Authenticates from the request's head alone, before any of its body is read:
    /// `Ok(Verified::Yes)` for the token (query, bearer, basic-auth password),
    /// `Ok(Verified::NeedsBody)` when a signature header asks for the body to be checked
    /// (it must then be right whatever else the request carries), else 401. Exactly one
    /// credential may be offered (`?token=a&token=b` is refused: one request, one guess).
    pub fn verify_head(&self, req: &HttpRequest) -> Result<Verified, ApiError> {
        if req.headers().contains_key(SIGNATURE_HEADER) {
            return Ok(Verified::NeedsBody);
        }
        let token = self.token.expose_secret().as_bytes();
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
        match offered.as_slice() {
            [] => Err(unauthorized(
                "a webhook token is required (?token=, Authorization: Bearer, basic-auth password, or X-Autopilot-Signature-256)",
            )),
            [one] if same_secret(one, token) => Ok(Verified::Yes),
            [_] => Err(unauthorized("the webhook token is wrong")),
            _ => Err(unauthorized("offer one webhook token, not several")),
        }
    }

    /// The signature check of a request [`WebhookAuth::verify_head`] left to the body.
    pub fn verify_signature(&self, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
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
        Err(unauthorized("a signature header is required"))
    }
}

/// What the request's head proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The token: the body may be read.
    Yes,
    /// A signature of the body: checked once it is read.
    NeedsBody,
}

/// Compares two secrets in time that depends on neither's content nor length: their
/// SHA-256 digests are compared in constant time.
fn same_secret(offered: &[u8], token: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (Sha256::digest(offered), Sha256::digest(token));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
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

/// With `auth.protect_reads`, the read API needs a `reports:read` token; with reads open,
/// the request's `Host` must be one of the allowed names (a page on another site that
/// rebinds its name to this address is refused).
pub fn require_read(req: &HttpRequest, state: &super::AppState) -> Result<(), ApiError> {
    if state.settings.auth.protect_reads {
        require_scope(req, &state.tokens, crate::tokens::Scope::ReportsRead)?;
        return Ok(());
    }
    let allowed = &state.read_hosts;
    if allowed.is_empty() {
        return Ok(());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .unwrap_or_default();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Host {host:?} is not one this service answers reads for (auth.allowed_hosts)"
        )))
    }
}

/// The host names reads are answered for: the configured ones, else the loopback names
/// when the service listens on loopback, else none (any host).
pub fn allowed_hosts(settings: &crate::config::Settings) -> Vec<String> {
    if !settings.auth.allowed_hosts.is_empty() {
        return settings.auth.allowed_hosts.clone();
    }
    if settings.server.listen.ip().is_loopback() {
        return vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    }
    Vec::new()
}

/// A `Host` header's name, without its port.
fn host_name(h: &str) -> String {
    let h = h.trim();
    if let Some(end) = h.strip_prefix('[').and_then(|r| r.find(']')) {
        return h[..end + 2].to_string();
    }
    h.split(':').next().unwrap_or_default().to_string()
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
) -> Result<SecretString, crate::secrets::SecretError> {
    match configured {
        Some(t) => Ok(t.clone()),
        None => crate::secrets::load_or_create(data_dir, "webhook-token", 16),
    }
}
