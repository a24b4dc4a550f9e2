//! The settings check: every rule a loaded settings tree must meet, each failure reported
//! with the field's path and origin.

use super::*;

impl Settings {
    pub(super) fn validate(&self, origins: &Origins, errors: &mut Vec<FieldError>) {
        let mut bad = |path: &str, reason: &str| {
            errors.push(FieldError {
                path: format!("{}: {path}", origins.of(path)),
                reason: reason.to_string(),
            });
        };
        if self.server.body_limit_bytes < 1024 {
            bad("server.body_limit_bytes", "must be at least 1024");
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections", "must be at least 1");
        }
        let rt = self.database.read_timeout;
        if rt < Duration::from_secs(1) || rt > Duration::from_secs(600) {
            bad("database.read_timeout", "must be between 1s and 10m");
        }
        if self.database.wal_limit_mib != 0 && self.database.wal_limit_mib < 8 {
            bad(
                "database.wal_limit_mib",
                "must be 0 (never truncate) or at least 8",
            );
        }
        if self.ingest.write_queue_capacity == 0 {
            bad("ingest.write_queue_capacity", "must be at least 1");
        }
        // The default is known to build (a unit test): only a configured one is compiled.
        let pattern = &self.ingest.secret_parameters;
        if *pattern != default_secret_parameters()
            && let Err(e) = build_secret_pattern(pattern)
        {
            bad(
                "ingest.secret_parameters",
                &format!("is not a regular expression: {e}"),
            );
        }
        if self.ingest.event_retention < Duration::from_secs(3600) {
            bad("ingest.event_retention", "must be at least 1h");
        }
        if self.ingest.max_batch == 0 {
            bad("ingest.max_batch", "must be at least 1");
        }
        if let Some(url) = &self.database.url {
            use secrecy::ExposeSecret;
            let u = url.expose_secret();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                bad(
                    "database.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                );
            }
        }
        if let Some(token) = &self.webhook.token {
            use secrecy::ExposeSecret;
            if token.expose_secret().len() < 16 {
                bad("webhook.token", "must be at least 16 characters");
            }
        }
        if let Some(secret) = &self.auth.jwt_secret {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < 32 {
                bad("auth.jwt_secret", "must be at least 32 characters");
            }
            if self.auth.jwt_public_key_file.is_some() {
                bad(
                    "auth.jwt_secret",
                    "give either jwt_secret (HS256) or jwt_public_key_file (RS256), not both",
                );
            }
        }
        if self.auth.jwt_private_key_file.is_some() && self.auth.jwt_public_key_file.is_none() {
            bad(
                "auth.jwt_private_key_file",
                "needs jwt_public_key_file, which the service verifies tokens with",
            );
        }
        for (field, path) in [
            ("auth.jwt_public_key_file", &self.auth.jwt_public_key_file),
            ("auth.jwt_private_key_file", &self.auth.jwt_private_key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                bad(field, &format!("{} is not a readable file", path.display()));
            }
        }
        if self.auth.issuer.trim().is_empty() {
            bad("auth.issuer", "must not be empty");
        }
        let c = &self.cost;
        if c.currency.trim().is_empty() {
            bad("cost.currency", "must not be empty");
        }
        for (field, v) in [
            ("cost.prices.cpu_hour", c.prices.cpu_hour),
            ("cost.prices.memory_gib_hour", c.prices.memory_gib_hour),
            ("cost.prices.storage_gib_month", c.prices.storage_gib_month),
        ] {
            if !v.is_finite() || v < 0.0 {
                bad(field, "must be a price of 0 or more");
            }
        }
        if c.alerts
            .cost_per_build
            .is_some_and(|v| !v.is_finite() || v < 0.0)
        {
            bad("cost.alerts.cost_per_build", "must be 0 or more, or null");
        }
        if c.alerts
            .idle_share_percent
            .is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            bad(
                "cost.alerts.idle_share_percent",
                "must be 0 to 100, or null",
            );
        }
        if !self.reports.regression_percent.is_finite() || self.reports.regression_percent <= 0.0 {
            bad("reports.regression_percent", "must be above 0");
        }
        for (i, sch) in self.reports.schedules.iter().enumerate() {
            let at = |f: &str| format!("reports.schedules.{i}.{f}");
            if sch.name.is_empty()
                || !sch
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bad(&at("name"), "must be letters, digits, '-' or '_'");
            }
            if self.reports.schedules[..i]
                .iter()
                .any(|o| o.name == sch.name)
            {
                bad(&at("name"), "is used by another schedule");
            }
            if let Err(e) = sch.cron.parse::<croner::Cron>() {
                bad(&at("cron"), &format!("is not a cron expression: {e}"));
            }
            if let Err(e) = crate::domain::Range::parse(&sch.range, crate::domain::Timestamp::now())
            {
                bad(&at("range"), &e);
            }
            if let Err(e) = crate::analytics::render::Format::parse(&sch.format) {
                bad(&at("format"), &e);
            }
            if sch.keep == 0 {
                bad(&at("keep"), "must be at least 1");
            }
        }
        for (path, reason) in
            crate::profiles::settings::validate(&self.profiles, &self.build_optimization)
        {
            bad(&path, &reason);
        }
        for (field, reason) in self.logging.check() {
            bad(&format!("logging.{field}"), &reason);
        }
        self.validate_pools(&mut bad);
    }

    fn validate_pools(&self, bad: &mut impl FnMut(&str, &str)) {
        for (name, c) in &self.jenkins.controllers {
            if ControllerName::parse(name).is_err() {
                bad(
                    &format!("jenkins.controllers.{name}"),
                    "name: letters, digits, '.', '_', '-' only",
                );
            }
            if !matches!(c.url.scheme(), "http" | "https") {
                bad(
                    &format!("jenkins.controllers.{name}.url"),
                    "must be an http or https URL",
                );
            }
            if !c.url.username().is_empty() || c.url.password().is_some() {
                // A URL is written into logs, errors and answers; credentials in it would
                // go with it.
                bad(
                    &format!("jenkins.controllers.{name}.url"),
                    "must not carry a user or password (user@host): set `user` and `api_token` instead",
                );
            }
            if c.api_token.is_some() && c.user.is_none() {
                bad(
                    &format!("jenkins.controllers.{name}.user"),
                    "is required with api_token",
                );
            }
        }
        if self.scaling.reconcile_interval < Duration::from_secs(1) {
            bad("scaling.reconcile_interval", "must be at least 1s");
        }
        let kt = self.kubernetes.timeout;
        if kt < Duration::from_millis(100) || kt > Duration::from_secs(300) {
            bad("kubernetes.timeout", "must be between 100ms and 5m");
        }
        let le = &self.leader_election;
        if le.retry_every < Duration::from_millis(100) || le.retry_every > Duration::from_secs(60) {
            bad(
                "leader_election.retry_every",
                "must be between 100ms and 1m",
            );
        }
        if le.renew_deadline < Duration::from_millis(100)
            || le.renew_deadline > Duration::from_secs(60)
        {
            bad(
                "leader_election.renew_deadline",
                "must be between 100ms and 1m",
            );
        }
        if le.lease_duration <= le.renew_deadline || le.lease_duration > Duration::from_secs(300) {
            bad(
                "leader_election.lease_duration",
                "must be longer than renew_deadline and at most 5m",
            );
        }
        if le.retry_every >= le.renew_deadline {
            bad(
                "leader_election.retry_every",
                "must be shorter than renew_deadline (the leader renews this often)",
            );
        }
        if le.mode == LeaderMode::Lease {
            for (field, d) in [
                ("leader_election.lease_duration", le.lease_duration),
                ("leader_election.retry_every", le.retry_every),
            ] {
                if d.subsec_nanos() != 0 || d.is_zero() {
                    bad(
                        field,
                        "must be whole seconds in lease mode (a Lease counts seconds)",
                    );
                }
            }
        }
        if !is_dns_subdomain(&le.lease_name) {
            bad(
                "leader_election.lease_name",
                "must be a Kubernetes name: lower-case letters, digits, - and ., at most 253",
            );
        }
        if let Some(ns) = &le.lease_namespace
            && !is_dns_label(ns)
        {
            bad(
                "leader_election.lease_namespace",
                "must be a Kubernetes namespace name",
            );
        }
        if le.mode == LeaderMode::Postgres && self.database.postgres_url().is_none() {
            bad(
                "leader_election.mode",
                "postgres needs a PostgreSQL store (database.url); one replica on SQLite needs no election",
            );
        }
        let b = &self.backfill;
        if let Err(e) = crate::backfill::Options::check_rate(b.max_requests_per_second) {
            bad("backfill.max_requests_per_second", &e);
        }
        if !b.repair_every.is_zero() && b.repair_every < Duration::from_secs(60) {
            bad("backfill.repair_every", "must be 0s (off) or at least 1m");
        }
        if b.repair_window < Duration::from_secs(60)
            || b.repair_window > Duration::from_secs(7 * 86_400)
        {
            bad("backfill.repair_window", "must be between 1m and 7d");
        }
        let ttl = self.scaling.announcement_ttl;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(600) {
            bad("scaling.announcement_ttl", "must be between 1s and 10m");
        }
        for (name, p) in &self.scaling.pools {
            let at = |field: &str| format!("scaling.pools.{name}.{field}");
            if !is_dns_label(name) {
                bad(
                    &format!("scaling.pools.{name}"),
                    "name must be a DNS label (a-z, 0-9, '-')",
                );
            }
            if self.jenkins.controller(p.controller.as_str()).is_none() {
                bad(
                    &at("controller"),
                    &format!(
                        "names no controller in jenkins.controllers ({:?})",
                        p.controller
                    ),
                );
            }
            if p.policy == crate::scaling::PolicyName::Warm && p.warm.max_idle > p.max {
                bad(&at("warm.max_idle"), "must not exceed max");
            }
            if p.warm.window < Duration::from_secs(3600) {
                bad(&at("warm.window"), "must be at least 1h");
            }
            for (i, sch) in p.schedules.iter().enumerate() {
                if let Err(e) = crate::scaling::schedule::Schedule::parse(sch) {
                    bad(&at(&format!("schedules[{i}]")), &e);
                }
                if sch.min > p.max {
                    bad(&at(&format!("schedules[{i}].min")), "must not exceed max");
                }
            }
            if p.predictive == PredictiveMode::Scale {
                bad(
                    &at("predictive"),
                    "scale is no longer offered: in replay a plain scale-down window cost less and started more builds at once (`simulate --compare predictive,queue` and `--frontier`); use `policy: warm`, which beat every window; `forecast-only` still records the forecast",
                );
            }
            if !is_dns_label(&p.namespace) {
                bad(
                    &at("namespace"),
                    "must be a DNS label (a-z, 0-9, '-', at most 63)",
                );
            }
            if !is_dns_subdomain(&p.deployment) {
                bad(
                    &at("deployment"),
                    "must be a DNS subdomain name (a-z, 0-9, '-', '.')",
                );
            }
            if p.executors_per_agent == 0 {
                bad(&at("executors_per_agent"), "must be at least 1");
            }
            if p.min > p.max {
                bad(&at("min"), &format!("must not exceed max ({})", p.max));
            }
            for (dir, rules) in [
                ("scaleUp", &p.behavior.scale_up),
                ("scaleDown", &p.behavior.scale_down),
            ] {
                for (i, policy) in rules.policies.iter().enumerate() {
                    if policy.period.is_zero() {
                        bad(
                            &at(&format!("behavior.{dir}.policies.{i}.period")),
                            "must be longer than 0s",
                        );
                    }
                    if policy.value == 0 {
                        bad(
                            &at(&format!("behavior.{dir}.policies.{i}.value")),
                            "must be at least 1",
                        );
                    }
                }
            }
        }
    }
}

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}
