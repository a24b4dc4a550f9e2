//! API tokens: JSON Web Tokens with `sub`, `exp`, `iat`, `iss` and a space-separated
//! `scope`, signed HS256 with the service's secret or RS256 with a key pair. `admin`
//! grants every scope.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A token's shortest lifetime: less could expire before it reaches its pipeline.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Its longest: a token that outlives a year is a key nobody rotates.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);
/// The longest subject (a pipeline or team name).
pub const MAX_SUBJECT: usize = 256;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Ask for build profiles and recommendations.
    ProfilesRead,
    /// Report build performance.
    BuildsWrite,
    /// Read analyses and reports.
    ReportsRead,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::ProfilesRead,
        Scope::BuildsWrite,
        Scope::ReportsRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ProfilesRead => "profiles:read",
            Scope::BuildsWrite => "builds:write",
            Scope::ReportsRead => "reports:read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a scope (profiles:read, builds:write, reports:read, admin)")
            })
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Space-separated scopes (RFC 8693 style).
    pub scope: String,
}

impl Claims {
    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scope.split_whitespace().filter_map(|s| s.parse().ok())
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes().any(|s| s == needed || s == Scope::Admin)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Missing, malformed, expired, wrongly signed or from another issuer: 401.
    #[error("{0}")]
    Invalid(String),
    /// Valid, but without the scope the endpoint needs: 403.
    #[error("the token's scopes ({held}) do not include {needed}")]
    MissingScope { needed: Scope, held: String },
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWT {which} key: {source}")]
    Read {
        which: &'static str,
        source: crate::domain::FileError,
    },
    #[error("{} is not an RSA {which} key (PEM): {source}", path.display())]
    NotRsa {
        which: &'static str,
        path: std::path::PathBuf,
        source: jsonwebtoken::errors::Error,
    },
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("RS256 tokens are signed with the private key: set auth.jwt_private_key_file")]
    NoPrivateKey,
    #[error("the subject must not be empty")]
    EmptySubject,
    #[error(
        "the subject must be at most {MAX_SUBJECT} bytes on one line, without control characters"
    )]
    BadSubject,
    #[error("the lifetime must be from 1 minute to 1 year (366 days)")]
    Lifetime,
    #[error("give at least one scope")]
    NoScope,
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The key in a PEM file, or what is wrong with it.
fn key_file<K>(
    which: &'static str,
    path: &Path,
    parse: impl FnOnce(&[u8]) -> jsonwebtoken::errors::Result<K>,
) -> Result<K, KeyError> {
    let pem = std::fs::read(path).map_err(|e| KeyError::Read {
        which,
        source: crate::domain::FileError::at("reading", path)(e),
    })?;
    parse(&pem).map_err(|source| KeyError::NotRsa {
        which,
        path: path.to_path_buf(),
        source,
    })
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// `None` for RS256 without the private key: the service checks, never signs.
    encoding: Option<EncodingKey>,
    issuer: String,
    clock_skew: Duration,
}

impl TokenKeys {
    /// The keys from settings: RS256 when a public key file is set, else HS256 with the
    /// configured secret or the one generated in `<data_dir>/jwt-secret`.
    pub fn load(settings: &AuthSettings, data_dir: &Path) -> Result<Self, KeyError> {
        if let Some(public) = &settings.jwt_public_key_file {
            let decoding = key_file("public", public, DecodingKey::from_rsa_pem)?;
            let encoding = match &settings.jwt_private_key_file {
                None => None,
                Some(private) => Some(key_file("private", private, EncodingKey::from_rsa_pem)?),
            };
            return Ok(Self {
                algorithm: Algorithm::RS256,
                decoding,
                encoding,
                issuer: settings.issuer.clone(),
                clock_skew: settings.clock_skew,
            });
        }
        let secret = match &settings.jwt_secret {
            Some(s) => s.clone(),
            None => crate::secrets::load_or_create(data_dir, "jwt-secret", 32)?,
        };
        let bytes = secret.expose_secret().as_bytes();
        Ok(Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(bytes),
            encoding: Some(EncodingKey::from_secret(bytes)),
            issuer: settings.issuer.clone(),
            clock_skew: settings.clock_skew,
        })
    }

    /// A signed token for `subject` with `scopes`, valid for `ttl` from `now` (epoch s).
    /// Signs a token for `subject` (at most [`MAX_SUBJECT`] bytes, one line) with
    /// `scopes`, valid for `ttl` ([`MIN_TTL`] to [`MAX_TTL`]) from `now` (Unix seconds).
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[Scope],
        ttl: Duration,
        now: i64,
    ) -> Result<String, IssueError> {
        let key = self.encoding.as_ref().ok_or(IssueError::NoPrivateKey)?;
        if subject.trim().is_empty() {
            return Err(IssueError::EmptySubject);
        }
        if subject.len() > MAX_SUBJECT
            || subject
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() && c != ' ')
        {
            return Err(IssueError::BadSubject);
        }
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(IssueError::Lifetime);
        }
        if scopes.is_empty() {
            return Err(IssueError::NoScope);
        }
        let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let claims = Claims {
            sub: subject.to_string(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            scope: names.join(" "),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            &claims,
            key,
        )?)
    }

    /// The claims of a valid token holding `needed`.
    pub fn verify(&self, token: &str, needed: Scope) -> Result<Claims, TokenError> {
        // Header parameters the token says must be understood (RFC 7515 `crit`): this
        // service understands none, so such a token is refused.
        if let Some(header) = token.split('.').next()
            && let Ok(raw) =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
            && let Ok(h) = serde_json::from_slice::<serde_json::Value>(&raw)
            && h.get("crit").is_some()
        {
            return Err(TokenError::Invalid(
                "the token's header names critical extensions (`crit`) the service does not know"
                    .into(),
            ));
        }
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = self.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                TokenError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                    ErrorKind::InvalidSignature => {
                        "the token's signature does not match the service's key".to_string()
                    }
                    ErrorKind::InvalidAlgorithm => format!(
                        "the token is not signed with {:?}, the algorithm the service accepts",
                        self.algorithm
                    ),
                    ErrorKind::InvalidIssuer => {
                        format!("the token was not issued by {}", self.issuer)
                    }
                    ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
                    ErrorKind::ImmatureSignature => {
                        "the token is not valid yet (`nbf` is in the future)".to_string()
                    }
                    _ => format!("the token is not a valid JWT: {e}"),
                })
            })?;
        let claims = data.claims;
        // Issued in the future (beyond the clock skew): not a token this service made.
        let now = chrono::Utc::now().timestamp();
        if claims.iat > now + self.clock_skew.as_secs() as i64 {
            return Err(TokenError::Invalid(
                "the token was issued in the future (`iat`)".into(),
            ));
        }
        if claims.allows(needed) {
            Ok(claims)
        } else {
            Err(TokenError::MissingScope {
                needed,
                held: if claims.scope.trim().is_empty() {
                    "none".into()
                } else {
                    claims.scope.clone()
                },
            })
        }
    }
}

/// API tokens: HS256 with a secret, or RS256 with a key pair.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// With reads open, the `Host` names a request may carry; empty: the loopback names
    /// when listening on loopback, else any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// HS256 secret; `None` (and no public key): generated under the data directory.
    pub jwt_secret: Option<SecretString>,
    /// RS256: tokens are verified with this PEM public key.
    pub jwt_public_key_file: Option<PathBuf>,
    /// RS256: `token issue` signs with this PEM private key.
    pub jwt_private_key_file: Option<PathBuf>,
    /// The `iss` claim.
    pub issuer: String,
    /// Clock difference allowed when checking `exp`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Require a `reports:read` token for the read API (builds, queue, pools, costs,
    /// reports, export) and the dashboard's data.
    pub protect_reads: bool,
}

impl AuthSettings {
    /// Every rule these settings break: (field, reason).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        if let Some(secret) = &self.jwt_secret {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < 32 {
                bad.push(("jwt_secret".into(), "must be at least 32 characters".into()));
            }
            if self.jwt_public_key_file.is_some() {
                bad.push((
                    "jwt_secret".into(),
                    "give either jwt_secret (HS256) or jwt_public_key_file (RS256), not both"
                        .into(),
                ));
            }
        }
        if self.jwt_private_key_file.is_some() && self.jwt_public_key_file.is_none() {
            bad.push((
                "jwt_private_key_file".into(),
                "needs jwt_public_key_file, which the service verifies tokens with".into(),
            ));
        }
        for (field, path) in [
            ("jwt_public_key_file", &self.jwt_public_key_file),
            ("jwt_private_key_file", &self.jwt_private_key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                bad.push((
                    field.into(),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if self.issuer.trim().is_empty() {
            bad.push(("issuer".into(), "must not be empty".into()));
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys(secret: &str) -> TokenKeys {
        let settings = AuthSettings {
            allowed_hosts: Vec::new(),
            jwt_secret: Some(secret.to_string().into()),
            jwt_public_key_file: None,
            jwt_private_key_file: None,
            issuer: "jenkins-autopilot".into(),
            clock_skew: Duration::from_secs(30),
            protect_reads: false,
        };
        TokenKeys::load(&settings, Path::new("/nonexistent")).unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_token_round_trips_and_admin_holds_every_scope() {
        let k = keys(SECRET);
        let t = k
            .issue(
                "jenkins-prod",
                &[Scope::ProfilesRead],
                Duration::from_secs(60),
                now(),
            )
            .unwrap();
        let c = k.verify(&t, Scope::ProfilesRead).unwrap();
        assert_eq!(c.sub, "jenkins-prod");
        assert!(matches!(
            k.verify(&t, Scope::BuildsWrite),
            Err(TokenError::MissingScope { .. })
        ));
        let admin = k
            .issue("ops", &[Scope::Admin], Duration::from_secs(60), now())
            .unwrap();
        for s in Scope::ALL {
            assert!(k.verify(&admin, s).is_ok(), "{s}");
        }
    }

    #[test]
    fn future_and_critical_tokens_are_invalid() {
        let k = keys(SECRET);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sign = |header: &str, claims: serde_json::Value| {
            let signing = format!(
                "{}.{}",
                b64.encode(header.as_bytes()),
                b64.encode(claims.to_string())
            );
            let mut mac =
                <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(SECRET.as_bytes())
                    .unwrap();
            hmac::Mac::update(&mut mac, signing.as_bytes());
            let sig = hmac::Mac::finalize(mac).into_bytes();
            format!("{signing}.{}", b64.encode(sig))
        };
        let claims = |iat: i64, nbf: Option<i64>| {
            let mut c = serde_json::json!({"sub": "a", "iss": "jenkins-autopilot", "iat": iat,
                "exp": now() + 600, "scope": "admin"});
            if let Some(n) = nbf {
                c["nbf"] = n.into();
            }
            c
        };
        let plain = r#"{"alg":"HS256","typ":"JWT"}"#;
        assert!(
            k.verify(&sign(plain, claims(now(), None)), Scope::Admin)
                .is_ok()
        );
        let err = |t: String| match k.verify(&t, Scope::Admin) {
            Err(TokenError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(sign(plain, claims(now() + 3600, None))).contains("iat"));
        assert!(err(sign(plain, claims(now(), Some(now() + 3600)))).contains("nbf"));
        let critical = r#"{"alg":"HS256","typ":"JWT","crit":["exp2"],"exp2":1}"#;
        assert!(err(sign(critical, claims(now(), None))).contains("crit"));
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_invalid() {
        let k = keys(SECRET);
        let old = k
            .issue("a", &[Scope::Admin], Duration::from_secs(60), now() - 3600)
            .unwrap();
        let e = k.verify(&old, Scope::Admin).unwrap_err();
        assert_eq!(e, TokenError::Invalid("the token has expired".into()));
        let other = keys("ffffffffffffffffffffffffffffffff")
            .issue("a", &[Scope::Admin], Duration::from_secs(60), now())
            .unwrap();
        assert!(
            matches!(k.verify(&other, Scope::Admin), Err(TokenError::Invalid(m)) if m.contains("signature"))
        );
        // alg: none with the same claims and no signature.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(
            serde_json::json!({"sub":"a","iss":"jenkins-autopilot","iat":now(),"exp":now()+60,"scope":"admin"})
                .to_string(),
        );
        for unsigned in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(matches!(
                k.verify(&unsigned, Scope::Admin),
                Err(TokenError::Invalid(_))
            ));
        }
        assert!(matches!(
            k.verify("not a token", Scope::Admin),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn scopes_parse_by_name_only() {
        assert_eq!("builds:write".parse::<Scope>(), Ok(Scope::BuildsWrite));
        assert!("builds".parse::<Scope>().is_err());
    }
}
