//! `lease` mode: a Kubernetes Lease, taken and renewed through kube-lease-manager.
//!
//! The Lease is held for `lease_duration` after each renewal; the leader renews it every
//! `retry_every` (kube-lease-manager's grace is the difference). kube-lease-manager reports
//! only when the holder changes, not whether a renewal went through, so this replica
//! watches its own writes to the Lease: it leads while it holds the Lease, its newest
//! write succeeded, and that write was sent less than `renew_deadline` ago. A renewal
//! that fails stops it at once; one that hangs stops it at the deadline, before the Lease
//! can run out for the others.

use super::{Campaign, LeaseView};
use futures_util::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// This replica's writes to the Lease: when the newest successful and the newest failed
/// ones were sent.
#[derive(Debug, Default)]
struct Writes {
    holder: bool,
    ok: Option<Instant>,
    failed: Option<Instant>,
    /// The newest read of the Lease that named another holder, when it was sent.
    other_holder: Option<Instant>,
    /// When kube-lease-manager last said this replica took the Lease.
    taken: Option<Instant>,
}

impl Writes {
    fn record(&mut self, sent: Instant, ok: bool) {
        let slot = if ok { &mut self.ok } else { &mut self.failed };
        if slot.is_none_or(|t| t < sent) {
            *slot = Some(sent);
        }
    }

    /// A read of the Lease sent at `sent` named `holder`: another holder stops this
    /// replica until a later read names it again (or it takes the Lease anew).
    fn seen(&mut self, sent: Instant, holder: Option<&str>, me: &str) {
        if self.taken.is_some_and(|t| sent < t) {
            // Sent before this replica took the Lease: it tells of the one before.
            return;
        }
        match holder {
            Some(h) if h != me && self.other_holder.is_none_or(|t| t < sent) => {
                self.other_holder = Some(sent);
            }
            Some(h) if h == me && self.other_holder.is_some_and(|t| t < sent) => {
                self.other_holder = None;
            }
            _ => {}
        }
    }

    /// kube-lease-manager says who holds the Lease; taking it is a fresh start.
    fn held(&mut self, holder: bool, now: Instant) {
        if holder && !self.holder {
            self.other_holder = None;
            self.taken = Some(now);
        }
        self.holder = holder;
    }

    /// Whether this replica may act as the leader at `now`: it holds the Lease, its newest
    /// write succeeded less than `deadline` ago, and the newest read of the Lease did not
    /// name another holder (kube-lease-manager's renewals carry no precondition, so a
    /// late write of a former leader can land; a read catches a takeover the renewals
    /// would not).
    fn leading(&self, now: Instant, deadline: Duration) -> bool {
        match self.ok {
            Some(ok) => {
                self.holder
                    && now.saturating_duration_since(ok) < deadline
                    && self.failed.is_none_or(|f| f < ok)
                    && self.other_holder.is_none()
            }
            None => false,
        }
    }
}

/// A layer on the election's Kubernetes client that notes each write's outcome.
#[derive(Clone)]
struct Witness(Arc<Mutex<Writes>>);

impl<S> tower::Layer<S> for Witness {
    type Service = Witnessed<S>;

    fn layer(&self, inner: S) -> Witnessed<S> {
        Witnessed {
            inner,
            writes: self.0.clone(),
        }
    }
}

struct Witnessed<S> {
    inner: S,
    writes: Arc<Mutex<Writes>>,
}

impl<S, B> tower::Service<http::Request<kube::client::Body>> for Witnessed<S>
where
    S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let write = req.method() != http::Method::GET;
        let sent = Instant::now();
        let answer = self.inner.call(req);
        let writes = self.writes.clone();
        Box::pin(async move {
            let res = answer.await;
            if write {
                let ok = matches!(&res, Ok(r) if r.status().is_success());
                writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(sent, ok);
            }
            res
        })
    }
}

/// A connected election, not yet running.
pub(super) struct Election {
    client: kube::Client,
    name: String,
    namespace: String,
    writes: Arc<Mutex<Writes>>,
    le: super::LeaderElectionSettings,
}

impl Election {
    /// The election's own Kubernetes client: every request to it gives up within
    /// `renew_deadline`.
    pub(super) async fn connect(
        le: &super::LeaderElectionSettings,
        kubernetes: &crate::kube::KubernetesSettings,
    ) -> Result<Self, super::LeaderError> {
        let le = le.clone();
        let mut config = crate::kube::load_config(kubernetes).await?;
        config.connect_timeout = Some(le.renew_deadline);
        config.read_timeout = Some(le.renew_deadline);
        config.write_timeout = Some(le.renew_deadline);
        let namespace = le
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| config.default_namespace.clone());
        let writes = Arc::new(Mutex::new(Writes::default()));
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(super::LeaderError::Client)?
            .with_layer(&Witness(writes.clone()))
            .build();
        Ok(Self {
            client,
            name: le.lease_name.clone(),
            namespace,
            writes,
            le,
        })
    }

    fn view(&self, lease: Option<&Lease>, error: Option<String>) -> LeaseView {
        view(&self.name, &self.namespace, lease, error)
    }

    /// Reads the Lease every `retry_every` for the status (who leads), and says when it
    /// has no holder (`orphaned`) or is gone (`missing`: deleted by hand).
    fn look(
        &self,
        me: String,
        status: Arc<Mutex<super::Status>>,
        error: Arc<Mutex<Option<String>>>,
        orphaned: Arc<tokio::sync::Notify>,
        missing: Arc<tokio::sync::Notify>,
    ) -> impl std::future::Future<Output = ()> + use<> {
        let api: kube::Api<Lease> = kube::Api::namespaced(self.client.clone(), &self.namespace);
        let writes = self.writes.clone();
        let (name, namespace, every, deadline) = (
            self.name.clone(),
            self.namespace.clone(),
            self.le.retry_every,
            self.le.renew_deadline,
        );
        async move {
            let mut tick = tokio::time::interval(every);
            // A read that waited out the deadline is not followed by a burst of them.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let sent = Instant::now();
                let read = tokio::time::timeout(deadline, api.get(&name)).await;
                let failed = |why: String| Some(why);
                let (lease, why) = match read {
                    Ok(Ok(lease)) => (
                        Some(lease),
                        error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    ),
                    Ok(Err(e)) => {
                        if matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
                            missing.notify_one();
                        }
                        (None, failed(e.to_string()))
                    }
                    Err(_) => (None, failed("no answer within the renew deadline".into())),
                };
                let view = view(&name, &namespace, lease.as_ref(), why);
                writes.lock().unwrap_or_else(|e| e.into_inner()).seen(
                    sent,
                    view.holder.as_deref(),
                    &me,
                );
                if lease.is_some() && view.holder.is_none() {
                    orphaned.notify_one();
                }
                status.lock().unwrap_or_else(|e| e.into_inner()).lease = Some(view);
            }
        }
    }

    /// A manager for the Lease, creating it if missing; retried until it works.
    async fn manager(&self, c: &Campaign, me: &str) -> Arc<LeaseManager> {
        let duration = self.le.lease_duration.as_secs();
        let grace = duration
            .saturating_sub(self.le.retry_every.as_secs())
            .max(1);
        loop {
            let built = LeaseManagerBuilder::new(self.client.clone(), &self.name)
                .with_namespace(&self.namespace)
                .with_identity(me)
                .with_duration(duration)
                .with_grace(grace)
                .build()
                .await;
            match built {
                Ok(m) => return Arc::new(m),
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "leader election: cannot read or create the Lease");
                    c.set_lease(self.view(None, Some(e.to_string())));
                    tokio::time::sleep(self.le.retry_every).await;
                }
            }
        }
    }

    pub(super) async fn run(self, c: Campaign) {
        let me = super::identity();
        let mut manager = self.manager(&c, &me).await;
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let orphaned = Arc::new(tokio::sync::Notify::new());
        let missing = Arc::new(tokio::sync::Notify::new());
        let look = tokio::spawn(self.look(
            me.clone(),
            c.status.clone(),
            error.clone(),
            orphaned.clone(),
            missing.clone(),
        ));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut changed = Box::pin(next(manager.clone(), Duration::ZERO));
        loop {
            tokio::select! {
                held = &mut changed => {
                    let delay = match held {
                        Ok(holder) => {
                            self.writes.lock().unwrap_or_else(|e| e.into_inner()).held(holder, Instant::now());
                            *error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            Duration::ZERO
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "leader election: renewing or taking the Lease failed");
                            *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                            self.le.retry_every
                        }
                    };
                    changed = Box::pin(next(manager.clone(), delay));
                }
                _ = tick.tick() => {}
                _ = orphaned.notified() => {
                    // kube-lease-manager's standby sleeps until the holder's Lease would run
                    // out; a Lease given up (a leader shutting down) is taken at once by a
                    // fresh manager.
                    let holding = self.writes.lock().unwrap_or_else(|e| e.into_inner()).holder;
                    if !holding {
                        manager = self.manager(&c, &me).await;
                        changed = Box::pin(next(manager.clone(), Duration::ZERO));
                    }
                }
                _ = missing.notified() => {
                    // The Lease was deleted (by hand): a manager renewing it fails for ever;
                    // a fresh one makes it again and campaigns. Until then nobody leads
                    // (a holder's renewals fail, so it stops acting).
                    tracing::warn!(lease = %self.name, namespace = %self.namespace, "leader election: the Lease is gone; making it again");
                    manager = self.manager(&c, &me).await;
                    changed = Box::pin(next(manager.clone(), Duration::ZERO));
                }
                _ = c.step_down.notified() => {
                    c.set(false, None);
                    // Stop the renewals (and whatever they hold) before giving the Lease up.
                    drop(changed);
                    let held = self.writes.lock().unwrap_or_else(|e| e.into_inner()).holder;
                    if held && let Err(e) = manager.release().await {
                        tracing::warn!(error = %e, "leader election: giving the Lease up failed");
                    }
                    look.abort();
                    c.stepped_down.notify_one();
                    return;
                }
            }
            let leading = self
                .writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .leading(Instant::now(), self.le.renew_deadline);
            let holder = c
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lease
                .as_ref()
                .and_then(|l| l.holder.clone());
            let leader = if leading {
                Some(me.clone())
            } else {
                holder.filter(|h| *h != me)
            };
            c.set(leading, leader);
        }
    }
}

fn view(name: &str, namespace: &str, lease: Option<&Lease>, error: Option<String>) -> LeaseView {
    let spec = lease.and_then(|l| l.spec.as_ref());
    LeaseView {
        name: name.to_string(),
        namespace: namespace.to_string(),
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renew_time: spec
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.to_string()),
        duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
        transitions: spec.and_then(|s| s.lease_transitions),
        error,
    }
}

/// The Lease's next change of holder, after `delay`.
async fn next(manager: Arc<LeaseManager>, delay: Duration) -> kube_lease_manager::Result<bool> {
    tokio::time::sleep(delay).await;
    manager.changed().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_leads_only_while_its_newest_write_succeeded_within_the_deadline() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        let mut w = Writes::default();
        assert!(!w.leading(t0, deadline), "nothing written yet");
        w.record(t0, true);
        assert!(!w.leading(t0, deadline), "not the holder");
        w.holder = true;
        assert!(w.leading(t0 + Duration::from_secs(9), deadline));
        assert!(
            !w.leading(t0 + Duration::from_secs(10), deadline),
            "past the deadline"
        );
        // A renewal fails: stop at once, whatever the deadline says.
        w.record(t0 + Duration::from_secs(5), false);
        assert!(!w.leading(t0 + Duration::from_secs(6), deadline));
        // The next one succeeds: lead again.
        w.record(t0 + Duration::from_secs(7), true);
        assert!(w.leading(t0 + Duration::from_secs(8), deadline));
        // A late answer to an older write changes nothing.
        w.record(t0 + Duration::from_secs(1), true);
        assert!(!w.leading(t0 + Duration::from_secs(17), deadline));
        // A read that names another holder: not leading, whatever the writes say, until
        // a later read names this replica.
        w.seen(t0 + Duration::from_secs(8), Some("me"), "me");
        assert!(
            w.leading(t0 + Duration::from_secs(8), deadline),
            "our own name"
        );
        w.seen(t0 + Duration::from_secs(8), Some("other"), "me");
        w.record(t0 + Duration::from_secs(9), true);
        assert!(!w.leading(t0 + Duration::from_secs(9), deadline));
        w.seen(t0 + Duration::from_secs(7), Some("me"), "me");
        assert!(
            !w.leading(t0 + Duration::from_secs(9), deadline),
            "an older read"
        );
        w.seen(t0 + Duration::from_secs(9), Some("me"), "me");
        assert!(w.leading(t0 + Duration::from_secs(10), deadline));
        // Taking the Lease anew clears what an earlier read said, and a read sent before
        // it (answered after) tells of the former holder.
        w.seen(t0 + Duration::from_secs(10), Some("other"), "me");
        w.held(false, t0 + Duration::from_secs(11));
        w.held(true, t0 + Duration::from_secs(11));
        assert!(w.leading(t0 + Duration::from_secs(11), deadline));
        w.seen(t0 + Duration::from_secs(10), Some("other"), "me");
        assert!(w.leading(t0 + Duration::from_secs(11), deadline));
    }
}
