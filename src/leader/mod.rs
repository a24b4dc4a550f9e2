//! Leader election: with several replicas, one leads. Only the leader scales pools and
//! runs the periodic work (retention purges, cost alerts, scheduled reports, the repair);
//! every replica takes webhooks, serves the API and the dashboard, and selects profiles.
//!
//! `lease` ([`lease`]): a Kubernetes Lease in the service's namespace. `postgres`
//! ([`postgres`]): a session advisory lock on the store. `off`: one replica, always the
//! leader (the SQLite default). `auto`: `lease` in a cluster, else `postgres` with a
//! PostgreSQL store, else `off`.
//!
//! Either way a leader stops acting when it cannot renew for `renew_deadline`, which is
//! shorter than `lease_duration`, the time after its last renewal at which another
//! replica may take over.

mod lease;
mod postgres;

mod settings;
use serde::Serialize;
pub use settings::{LeaderElectionSettings, LeaderMode};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// A request to check the hold on the lead now, answered with whether it still holds.
pub(crate) type Ask = oneshot::Sender<bool>;

/// This replica's part, for the status endpoint, the metrics and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `leader`, `follower` or `single`.
    pub role: &'static str,
    /// This replica: `POD_NAME`, else the host name.
    pub identity: String,
    /// The leader's identity, when known.
    pub leader: Option<String>,
    /// How leadership is held: `lease`, `postgres` (an advisory lock) or `off`.
    pub mode: &'static str,
    /// How often the leader renews and a standby tries (ms).
    pub retry_every_ms: u64,
    /// The Lease as last read (`lease` mode).
    pub lease: Option<LeaseView>,
}

/// The Lease, as this replica last read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    pub name: String,
    pub namespace: String,
    /// Who holds it, by the Lease.
    pub holder: Option<String>,
    /// When the holder last renewed it (RFC 3339).
    pub renew_time: Option<String>,
    pub duration_seconds: Option<i32>,
    /// How many times it changed hands.
    pub transitions: Option<i32>,
    /// Why the Lease could not be read or renewed, if the latest try failed.
    pub error: Option<String>,
}

/// Whether this replica leads, as it changes.
#[derive(Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    status: Arc<std::sync::Mutex<Status>>,
    /// A single replica's sender, kept so the channel stays open.
    _single: Option<Arc<watch::Sender<bool>>>,
    /// Asks the election to give the lead up (shutdown); answered on `stepped_down`.
    step_down: Arc<Notify>,
    stepped_down: Arc<Notify>,
    /// Checks the hold now (`postgres` mode; a Lease's holder stops by its own clock).
    asks: Option<mpsc::Sender<Ask>>,
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
                lease: None,
            })),
            step_down: Arc::default(),
            stepped_down: Arc::default(),
            asks: None,
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Whether this replica leads, checked now where the lead's hold can vanish between
    /// checks: an advisory lock's session ended by the server (or an administrator) is
    /// found at the next query on it, so a leader asks before every action instead of
    /// acting on what the last periodic check said. Call it right before acting.
    pub async fn confirm(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        let Some(asks) = &self.asks else {
            return true;
        };
        let (tx, rx) = oneshot::channel();
        if asks.send(tx).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false) && self.is_leader()
    }

    /// Waits until this replica leads (forever, if the election has stopped).
    pub async fn until_leading(&mut self) {
        if self.leading.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until this replica stops leading (forever, if it never will).
    pub async fn until_following(&mut self) {
        if self.leading.wait_for(|l| !*l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Gives the lead up before the process ends, so another replica takes over at once
    /// instead of after the lease runs out. Waits at most `within`.
    pub async fn step_down(&self, within: std::time::Duration) {
        if self._single.is_some() {
            return;
        }
        let done = self.stepped_down.notified();
        self.step_down.notify_one();
        let _ = tokio::time::timeout(within, done).await;
    }
}

/// What a running election shares with the [`Leadership`] handles.
struct Campaign {
    tx: watch::Sender<bool>,
    status: Arc<std::sync::Mutex<Status>>,
    metrics: crate::metrics::Metrics,
    step_down: Arc<Notify>,
    stepped_down: Arc<Notify>,
}

impl Campaign {
    fn set(&self, leading: bool, leader: Option<String>) {
        if *self.tx.borrow() != leading {
            tracing::warn!(leading, "leadership changed");
        }
        let _ = self.tx.send(leading);
        self.metrics.leader.set(i64::from(leading));
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.role = if leading { "leader" } else { "follower" };
        s.leader = leader;
    }

    fn set_lease(&self, lease: LeaseView) {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).lease = Some(lease);
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

/// Whether the service runs in a Kubernetes pod.
fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty())
}

/// Why an election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader_election.mode lease needs a cluster: {0}")]
    NoCluster(#[from] crate::kube::ConnectError),
    #[error("building the election's Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Starts the election the settings ask for (`postgres_url`: the store's, when it is
/// PostgreSQL; `kubernetes`: the cluster a Lease lives in); `metrics` shows the outcome.
/// A `lease` election that cannot find a cluster is an error.
pub async fn start(
    le: &LeaderElectionSettings,
    postgres_url: Option<String>,
    kubernetes: &crate::kube::KubernetesSettings,
    metrics: crate::metrics::Metrics,
) -> Result<Leadership, LeaderError> {
    let url = postgres_url;
    let mode = match (le.mode, &url) {
        (LeaderMode::Off, _) => "off",
        (LeaderMode::Lease, _) => "lease",
        (LeaderMode::Auto, _) if in_cluster() => "lease",
        (LeaderMode::Auto | LeaderMode::Postgres, Some(_)) => "postgres",
        (LeaderMode::Auto, None) => "off",
        (LeaderMode::Postgres, None) => {
            unreachable!("the settings check refuses postgres without a PostgreSQL store")
        }
    };
    if mode == "off" {
        metrics.leader.set(1);
        return Ok(Leadership::single());
    }
    let (tx, rx) = watch::channel(false);
    let status = Arc::new(std::sync::Mutex::new(Status {
        role: "follower",
        identity: identity(),
        leader: None,
        mode,
        retry_every_ms: le.retry_every.as_millis() as u64,
        lease: None,
    }));
    metrics.leader.set(0);
    let (step_down, stepped_down) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (ask_tx, ask_rx) = mpsc::channel(64);
    let mut asks = None;
    let campaign = Campaign {
        tx,
        status: status.clone(),
        metrics,
        step_down: step_down.clone(),
        stepped_down: stepped_down.clone(),
    };
    match (mode, url) {
        ("lease", _) => {
            let election = lease::Election::connect(le, kubernetes).await?;
            tokio::spawn(election.run(campaign));
        }
        (_, Some(url)) => {
            asks = Some(ask_tx);
            tokio::spawn(postgres::campaign(url, le.clone(), campaign, ask_rx));
        }
        _ => unreachable!("postgres mode has a URL"),
    }
    Ok(Leadership {
        leading: rx,
        status,
        _single: None,
        step_down,
        stepped_down,
        asks,
    })
}

/// Runs `work` only while this replica leads: it is started when the lead is won and
/// dropped (cancelled) when it is lost. It is handed the leadership to
/// [`confirm`](Leadership::confirm) before each action.
pub async fn while_leading<F, Fut>(mut leadership: Leadership, work: F)
where
    F: Fn(Leadership) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        leadership.until_leading().await;
        let mut lost = leadership.clone();
        tokio::select! {
            _ = work(leadership.clone()) => return,
            _ = lost.until_following() => {}
        }
    }
}
