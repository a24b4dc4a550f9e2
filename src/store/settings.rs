//! Where builds and events are stored: the store's settings and their check.

use secrecy::SecretString;
use serde::Deserialize;
use std::time::Duration;

/// Where builds and events are stored.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `None`: embedded SQLite under the data directory. Else a `sqlite:` or
    /// `postgres://` URL.
    pub url: Option<SecretString>,
    /// Connections kept for reads. Writes have their own (one on SQLite, a few on
    /// PostgreSQL), so no number of slow readers can hold up a webhook.
    pub max_connections: u32,
    /// Longest a read may wait for a connection or (PostgreSQL) run; a read past it
    /// fails and is answered 503, and its connection goes back to the others.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// SQLite only: the write-ahead log is truncated once this many MiB of it are in use
    /// (0: never; it then grows for as long as writes never pause).
    pub wal_limit_mib: u64,
    /// SQLite only: `full` (default) fsyncs every commit, so an answered webhook survives
    /// power loss; `normal` fsyncs at checkpoints only: still safe when the process is
    /// killed, not when the machine loses power.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl DatabaseSettings {
    /// The URL when the store is PostgreSQL.
    pub fn postgres_url(&self) -> Option<String> {
        use secrecy::ExposeSecret;
        self.url
            .as_ref()
            .map(|u| u.expose_secret().to_string())
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    /// Every rule these settings break: (field, reason).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        if self.max_connections == 0 {
            bad.push(("max_connections".into(), "must be at least 1".into()));
        }
        let rt = self.read_timeout;
        if rt < Duration::from_secs(1) || rt > Duration::from_secs(600) {
            bad.push(("read_timeout".into(), "must be between 1s and 10m".into()));
        }
        if self.wal_limit_mib != 0 && self.wal_limit_mib < 8 {
            bad.push((
                "wal_limit_mib".into(),
                "must be 0 (never truncate) or at least 8".into(),
            ));
        }
        if let Some(url) = &self.url {
            use secrecy::ExposeSecret;
            let u = url.expose_secret();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                bad.push((
                    "url".into(),
                    "must start with sqlite:, postgres:// or postgresql://".into(),
                ));
            }
        }
        bad
    }
}

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}
