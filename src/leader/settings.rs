//! Which replica leads: the election's settings and their check.

use crate::domain::{is_dns_label, is_dns_subdomain};
use serde::Deserialize;
use std::time::Duration;

/// How replicas elect the one that leads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderMode {
    /// `lease` in a cluster (`KUBERNETES_SERVICE_HOST` set), else `postgres` with a
    /// PostgreSQL store, else `off`.
    #[default]
    Auto,
    /// A Kubernetes Lease in the service's namespace.
    Lease,
    /// A session advisory lock on the PostgreSQL store.
    Postgres,
    /// One replica: it always leads.
    Off,
}

/// Leader election.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionSettings {
    #[serde(default)]
    pub mode: LeaderMode,
    /// A standby tries to take the lead this often; the leader checks its hold as often.
    #[serde(default = "default_retry_every", with = "humantime_serde")]
    pub retry_every: Duration,
    /// A leader whose check gets no answer within this long stops acting.
    #[serde(default = "default_renew_deadline", with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// How long a hold lasts without a renewal: a Lease's duration, or how long PostgreSQL
    /// keeps a silent leader's session (and its lock). Longer than `renew_deadline`, so a
    /// leader that cannot renew stops acting before another can take over.
    #[serde(default = "default_lease_duration", with = "humantime_serde")]
    pub lease_duration: Duration,
    /// The Lease's name (`lease` mode).
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// The Lease's namespace: else `POD_NAMESPACE`, else the kubeconfig's.
    #[serde(default)]
    pub lease_namespace: Option<String>,
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_lease_name() -> String {
    "jenkins-autopilot-leader".into()
}

fn default_retry_every() -> Duration {
    Duration::from_secs(5)
}

fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        Self {
            mode: LeaderMode::Auto,
            retry_every: default_retry_every(),
            renew_deadline: default_renew_deadline(),
            lease_duration: default_lease_duration(),
            lease_name: default_lease_name(),
            lease_namespace: None,
        }
    }
}

impl LeaderElectionSettings {
    /// Every rule these settings break: (field, reason).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        if self.retry_every < Duration::from_millis(100)
            || self.retry_every > Duration::from_secs(60)
        {
            bad.push(("retry_every".into(), "must be between 100ms and 1m".into()));
        }
        if self.renew_deadline < Duration::from_millis(100)
            || self.renew_deadline > Duration::from_secs(60)
        {
            bad.push((
                "renew_deadline".into(),
                "must be between 100ms and 1m".into(),
            ));
        }
        if self.lease_duration <= self.renew_deadline
            || self.lease_duration > Duration::from_secs(300)
        {
            bad.push((
                "lease_duration".into(),
                "must be longer than renew_deadline and at most 5m".into(),
            ));
        }
        if self.retry_every >= self.renew_deadline {
            bad.push((
                "retry_every".into(),
                "must be shorter than renew_deadline (the leader renews this often)".into(),
            ));
        }
        if self.mode == LeaderMode::Lease {
            for (field, d) in [
                ("lease_duration", self.lease_duration),
                ("retry_every", self.retry_every),
            ] {
                if d.subsec_nanos() != 0 || d.is_zero() {
                    bad.push((
                        field.into(),
                        "must be whole seconds in lease mode (a Lease counts seconds)".into(),
                    ));
                }
            }
        }
        if !is_dns_subdomain(&self.lease_name) {
            bad.push((
                "lease_name".into(),
                "must be a Kubernetes name: lower-case letters, digits, - and ., at most 253"
                    .into(),
            ));
        }
        if let Some(ns) = &self.lease_namespace
            && !is_dns_label(ns)
        {
            bad.push((
                "lease_namespace".into(),
                "must be a Kubernetes namespace name".into(),
            ));
        }
        bad
    }
}
