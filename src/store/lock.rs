//! The leader's lock on PostgreSQL: a session advisory lock held on a connection of its
//! own, named after the replica so the others can tell who leads. The election around it
//! (when to try, when to give up) is `leader/postgres.rs`.

use super::StoreError;
use sqlx::Connection;
use std::time::Duration;

/// The advisory lock's key: one per database.
const LOCK_KEY: i64 = 0x6a61_7574_6f70_696c; // "jautopil"

/// A replica's session for the lock.
pub struct LockSession {
    conn: sqlx::PgConnection,
}

impl LockSession {
    /// Opens a session named after `identity`, which the server ends when it is silent
    /// for `idle` (PostgreSQL 14 and later; before, a leader cut off keeps the lock until
    /// TCP gives up, and a warning says so).
    pub async fn open(url: &str, identity: &str, idle: Duration) -> Result<Self, StoreError> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET application_name = '{}'",
            application_name(identity)
        )))
        .execute(&mut conn)
        .await?;
        let idle = format!("{}ms", idle.as_millis());
        if let Err(e) = sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(&idle)
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "leader election: the server cannot end silent sessions");
        }
        Ok(Self { conn })
    }

    /// Takes the lock if it is free; whether this session holds it.
    pub async fn try_lock(&mut self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// Whether the session answers (a session the server ended fails here); a session
    /// that holds the lock holds it for as long as it lives.
    pub async fn alive(&mut self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT TRUE")
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// The identity of the replica whose session holds the lock, if one does.
    pub async fn holder(&mut self) -> Result<Option<String>, StoreError> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
        )
        .bind(LOCK_KEY)
        .fetch_optional(&mut self.conn)
        .await?;
        Ok(name.map(|a| a.trim_start_matches("autopilot:").to_string()))
    }

    /// Ends the session, which frees the lock at once.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// `autopilot:<identity>`, with only characters a quoted SQL string takes as they are.
fn application_name(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(50)
        .collect();
    format!("autopilot:{clean}")
}
