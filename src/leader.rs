//! Leader election: with several replicas on one PostgreSQL, one leads. Only the leader
//! scales pools and runs the periodic work (retention purges, cost alerts, scheduled
//! reports, the repair); every replica takes webhooks, serves the API and the dashboard,
//! and selects profiles.
//!
//! `postgres`: a session advisory lock held on a connection of its own. The lock lives as
//! long as the session: a leader that dies (its connection closes) frees it at once, and a
//! standby takes it at its next try. A leader that cannot reach the database for
//! `renew_deadline` stops acting before a standby can take over. `off`: one replica, always
//! the leader (the SQLite default). `auto`: `postgres` with a PostgreSQL store, else `off`.

use crate::config::{LeaderElectionSettings, LeaderMode, Settings};
use serde::Serialize;
use sqlx::Connection;
use std::sync::Arc;
use tokio::sync::watch;

/// The advisory lock's key: one per database.
const LOCK_KEY: i64 = 0x6a61_7574_6f70_696c; // "jautopil"

/// This replica's part, for the status endpoint, the metrics and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `leader`, `follower` or `single`.
    pub role: &'static str,
    /// This replica: `POD_NAME`, else the host name.
    pub identity: String,
    /// The leader's identity, when known.
    pub leader: Option<String>,
    /// How leadership is held: `postgres` (an advisory lock) or `off`.
    pub mode: &'static str,
    /// How often a standby tries to take the lead (ms).
    pub retry_every_ms: u64,
}

/// Whether this replica leads, as it changes.
#[derive(Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    status: Arc<std::sync::Mutex<Status>>,
    /// A single replica's sender, kept so the channel stays open.
    _single: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// A single replica: always the leader.
    pub fn single() -> Self {
        let (tx, rx) = watch::channel(true);
        let me = identity();
        Self {
            _single: Some(Arc::new(tx)),
            leading: rx,
            status: Arc::new(std::sync::Mutex::new(Status {
                role: "single",
                leader: Some(me.clone()),
                identity: me,
                mode: "off",
                retry_every_ms: 0,
            })),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until this replica leads (forever, if the election has stopped).
    pub async fn until_leading(&mut self) {
        if self.leading.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// This replica's name: `POD_NAME`, else the host name.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "jenkins-autopilot".into())
}

/// Starts the election the settings ask for; `metrics` shows the outcome.
pub fn start(settings: &Settings, metrics: crate::metrics::Metrics) -> Leadership {
    let le = &settings.leader_election;
    let mode = match (le.mode, settings.database.postgres_url()) {
        (LeaderMode::Off, _) | (LeaderMode::Auto, None) => None,
        (LeaderMode::Auto | LeaderMode::Postgres, Some(url)) => Some(url),
        (LeaderMode::Postgres, None) => {
            unreachable!("the settings check refuses postgres without a PostgreSQL store")
        }
    };
    let Some(url) = mode else {
        metrics.leader.set(1);
        return Leadership::single();
    };
    let (tx, rx) = watch::channel(false);
    let status = Arc::new(std::sync::Mutex::new(Status {
        role: "follower",
        identity: identity(),
        leader: None,
        mode: "postgres",
        retry_every_ms: le.retry_every.as_millis() as u64,
    }));
    metrics.leader.set(0);
    tokio::spawn(campaign(url, le.clone(), tx, status.clone(), metrics));
    Leadership {
        leading: rx,
        status,
        _single: None,
    }
}

fn set(
    tx: &watch::Sender<bool>,
    status: &std::sync::Mutex<Status>,
    metrics: &crate::metrics::Metrics,
    leading: bool,
    leader: Option<String>,
) {
    if *tx.borrow() != leading {
        tracing::warn!(leading, "leadership changed");
    }
    let _ = tx.send(leading);
    metrics.leader.set(i64::from(leading));
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    s.role = if leading { "leader" } else { "follower" };
    s.leader = leader;
}

/// Tries for the lock every `retry_every`; once held, checks the session every
/// `retry_every` and gives the lead up when a check fails or takes longer than
/// `renew_deadline`.
async fn campaign(
    url: String,
    le: LeaderElectionSettings,
    tx: watch::Sender<bool>,
    status: Arc<std::sync::Mutex<Status>>,
    metrics: crate::metrics::Metrics,
) {
    let me = identity();
    loop {
        let session = tokio::time::timeout(le.renew_deadline, async {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SET application_name = '{}'",
                application_name(&me)
            )))
            .execute(&mut conn)
            .await?;
            Ok::<_, sqlx::Error>(conn)
        })
        .await;
        let mut conn = match session {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election: cannot reach the database");
                set(&tx, &status, &metrics, false, None);
                tokio::time::sleep(le.retry_every).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("leader election: the database did not answer in time");
                set(&tx, &status, &metrics, false, None);
                continue;
            }
        };
        loop {
            let leading = *tx.borrow();
            let step = tokio::time::timeout(le.renew_deadline, async {
                let won: bool = if leading {
                    sqlx::query_scalar("SELECT TRUE").fetch_one(&mut conn).await?
                } else {
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(LOCK_KEY)
                        .fetch_one(&mut conn)
                        .await?
                };
                let leader: Option<String> = sqlx::query_scalar(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted \
                     AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
                )
                .bind(LOCK_KEY)
                .fetch_optional(&mut conn)
                .await?;
                Ok::<_, sqlx::Error>((won, leader))
            })
            .await;
            match step {
                Ok(Ok((won, leader))) => {
                    let leader = leader.map(|a| a.trim_start_matches("autopilot:").to_string());
                    set(&tx, &status, &metrics, won, leader);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election: the session failed; not leading");
                    set(&tx, &status, &metrics, false, None);
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        "leader election: no answer within the renew deadline; not leading"
                    );
                    set(&tx, &status, &metrics, false, None);
                    break;
                }
            }
            tokio::time::sleep(le.retry_every).await;
        }
        // The session is dropped: the lock, if held, goes with it.
        drop(conn);
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

/// Runs `work` only while this replica leads: it is started when the lead is won and
/// dropped (cancelled) when it is lost.
pub async fn while_leading<F, Fut>(mut leadership: Leadership, work: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        leadership.until_leading().await;
        let mut lost = leadership.leading.clone();
        let lost = async move {
            // A closed channel never changes again: the lead is never lost then.
            if lost.wait_for(|l| !*l).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = work() => return,
            _ = lost => {}
        }
    }
}
