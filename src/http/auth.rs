//! Webhook authentication: one shared token, accepted four ways (`?token=`, bearer,
//! basic-auth password, HMAC-SHA256 signature of the raw body), compared in constant time.

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

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_string())
}

/// The token from settings, or else the one kept under the data directory, created on
/// first start with mode 0600. The token itself is never logged.
pub fn load_or_create_token(
    configured: Option<&SecretString>,
    data_dir: &std::path::Path,
) -> anyhow::Result<SecretString> {
    use anyhow::Context;
    if let Some(t) = configured {
        return Ok(t.clone());
    }
    let path = data_dir.join("webhook-token");
    if path.exists() {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let token = token.trim().to_string();
        anyhow::ensure!(
            token.len() >= 16,
            "{} holds no usable token (under 16 characters)",
            path.display()
        );
        tracing::info!(path = %path.display(), "webhook token read from file");
        return Ok(SecretString::from(token));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a webhook token; give it to Jenkins from this file");
    Ok(SecretString::from(token))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{content}\n"))
}
