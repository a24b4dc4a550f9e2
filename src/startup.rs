//! Builds the application from settings: store, writer, HTTP server.

use crate::config::Settings;
use crate::http::{self, AppState, auth};
use crate::kube::KubeExecutor;
use crate::metrics::Metrics;
use crate::store::{Store, Writer};
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use std::net::TcpListener;
use std::sync::Arc;

/// A bound, ready-to-run service.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    leadership: crate::leader::Leadership,
    stopping: tokio_util::sync::CancellationToken,
    /// Closes and drains the write queue.
    writer: crate::store::Drain,
    /// The pools' reconcile loops, the leader's jobs, the wake-up listener.
    tasks: crate::tasks::Tasks,
}

/// Why the service did not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("a secret: {0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[error("the token keys: {0}")]
    Keys(#[from] crate::tokens::KeyError),
    #[error("the cluster: {0}")]
    Cluster(#[from] crate::kube::ConnectError),
    #[error("the pools: {0}")]
    Pools(#[from] crate::controller::StartError),
    #[error("leader election: {0}")]
    Leader(#[from] crate::leader::LeaderError),
    #[error("binding {listen}: {source}")]
    Bind {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

impl Application {
    /// Opens the store (applying migrations), starts the writer and binds the listener.
    /// Port 0 binds a free port; [`Application::port`] tells which.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, None).await
    }

    /// [`Application::build`] with the pools' controller running on `adapters` instead
    /// of the configured Jenkins controllers and cluster (the demo's in-memory pool).
    pub async fn build_with(
        settings: Settings,
        adapters: Option<crate::controller::Adapters>,
    ) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let data_dir = settings.server.data_dir.clone();
        let store = Store::connect(&settings.database, &data_dir).await?;
        // A backfill still `running` from this replica's last life ended with it.
        match store
            .backfill_mark_interrupted(&crate::leader::identity(), crate::domain::Timestamp::now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(runs = n, "backfills interrupted by the last stop marked so"),
            Err(e) => tracing::warn!(error = %e, "marking interrupted backfills failed"),
        }
        let token = auth::load_or_create_token(settings.webhook.token.as_ref(), &data_dir)?;
        let tokens = crate::tokens::TokenKeys::load(&settings.auth, &data_dir)?;
        let metrics = Metrics::new();
        let (writer, drain) = Writer::spawn(
            store.clone(),
            settings.ingest.write_queue_capacity,
            settings.ingest.max_batch,
            metrics.clone(),
        );
        let adapters = match adapters {
            Some(a) => a,
            None => {
                let kube = KubeExecutor::from_settings(
                    &settings.kubernetes,
                    metrics.kube_watch_up.clone(),
                )
                .await?;
                crate::controller::Adapters::real(&settings, kube)?
            }
        };
        // Every replica takes webhooks and serves reads; the leader also scales the pools
        // and runs the periodic work.
        let leadership = crate::leader::start(
            &settings.leader_election,
            settings.database.postgres_url(),
            &settings.kubernetes,
            metrics.clone(),
        )
        .await?;
        if leadership.status().role != "single" {
            // Several replicas may run: a token made here is this replica's alone.
            let generated: Vec<&str> = [
                ("webhook.token", settings.webhook.token.is_none()),
                (
                    "auth.jwt_secret",
                    settings.auth.jwt_secret.is_none()
                        && settings.auth.jwt_public_key_file.is_none(),
                ),
            ]
            .into_iter()
            .filter_map(|(field, made)| made.then_some(field))
            .collect();
            if !generated.is_empty() {
                tracing::warn!(
                    fields = ?generated,
                    "leader election is on but these secrets are made in this replica's data directory: other replicas will refuse webhooks and tokens this one accepts; set them from a shared Secret (docs/operations.md)"
                );
            }
        }
        let mut tasks = crate::tasks::Tasks::default();
        let scaling = crate::controller::start_with(
            &settings,
            store.clone(),
            metrics.clone(),
            adapters,
            leadership.clone(),
            &mut tasks,
        )?;
        let backfills = Arc::new(crate::backfill::Backfills::default());
        crate::jobs::spawn_all(
            &settings,
            &store,
            &metrics,
            &backfills,
            &leadership,
            &mut tasks,
        );
        let state = AppState {
            store: store.clone(),
            writer,
            metrics,
            auth: auth::WebhookAuth::new(token),
            tokens,
            optimizing: Arc::new(tokio::sync::Semaphore::new(1)),
            replaying: Arc::new(tokio::sync::Semaphore::new(1)),
            // Three quarters of the read connections: the rest stay for builds, pools,
            // readiness and the dashboard's small reads.
            heavy: crate::http::heavy::HeavyReads::new(
                (settings.database.max_connections as usize * 3 / 4).max(1),
            ),
            disk: Arc::new(crate::http::disk::DiskFloor::new(
                (store.backend() == crate::store::Backend::Sqlite).then(|| data_dir.clone()),
                settings.server.min_free_disk_mib,
            )),
            read_hosts: crate::http::auth::allowed_hosts(&settings),
            secret_parameters: settings.ingest.secret_pattern(),
            unverified_bodies: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_unverified_bodies.max(1),
            )),
            backfills: backfills.clone(),
            leadership: leadership.clone(),
            settings: settings.clone(),
            scaling,
            stopping: tokio_util::sync::CancellationToken::new(),
        };
        let stopping = state.stopping.clone();
        let listen = settings.server.listen;
        let bind = |source| StartupError::Bind { listen, source };
        let listener = TcpListener::bind(listen).map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        let data = web::Data::new(state);
        let peers = crate::http::peers::PeerLimit::new(settings.server.max_requests_per_peer);
        let server = HttpServer::new(move || {
            let peers = peers.clone();
            App::new()
                .wrap_fn(move |req, srv| {
                    use actix_web::dev::Service;
                    let slot = req.peer_addr().map(|a| peers.admit(a.ip()));
                    let call = match slot {
                        Some(None) => None,
                        _ => Some(srv.call(req)),
                    };
                    async move {
                        let _slot = slot;
                        match call {
                            Some(call) => call.await,
                            None => {
                                Err(http::errors::ApiError::Overloaded { retry_after: 1 }.into())
                            }
                        }
                    }
                })
                .app_data(data.clone())
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| http::errors::ApiError::invalid("query", e).into()),
                )
                .configure(http::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(http::errors::ApiError::NotFound(
                        "no such endpoint".into(),
                    ))
                }))
        })
        .listen(listener)
        .map_err(bind)?
        .max_connections(settings.server.max_connections.max(1))
        .keep_alive(settings.server.keep_alive)
        .shutdown_timeout(10)
        .disable_signals()
        .run();
        tracing::info!(port, backend = ?store.backend(), "listening");
        Ok(Self {
            port,
            server,
            store,
            leadership,
            stopping,
            writer: drain,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server (graceful or not) from elsewhere.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM) or its server is stopped,
    /// then shuts down in order: no new connections and the requests in flight finish
    /// (each webhook answered only once its events are committed); the write queue is
    /// closed and drained; the pools' loops and the leader's jobs stop and are waited for;
    /// the lead is handed over; the store closes last.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let (handle, stopping) = (self.server.handle(), self.stopping.clone());
        let signals = tokio::spawn(async move {
            let signal = told_to_stop().await;
            tracing::info!(
                signal,
                "stopping: requests in flight finish, replays stop now"
            );
            // Replays are dropped at once (their clients get 503); other requests have
            // the drain timeout to finish.
            stopping.cancel();
            handle.stop(true).await;
        });
        let served = self.server.await;
        signals.abort();
        served.map_err(StartupError::Serve)?;
        self.writer.drain().await;
        let aborted = self.tasks.stop(std::time::Duration::from_secs(10)).await;
        if aborted > 0 {
            tracing::warn!(tasks = aborted, "background tasks did not stop in time");
        }
        // Hand the lead over now rather than when the lease runs out.
        self.leadership
            .step_down(std::time::Duration::from_secs(3))
            .await;
        self.store.close().await;
        Ok(())
    }
}

/// Waits for SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C); which one came.
async fn told_to_stop() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // No signal handling here: Ctrl-C through tokio's portable handler.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
