//! The settings check: every rule a loaded settings tree must meet, each failure reported
//! with the field's path and origin.

use super::*;
use crate::domain::is_dns_label;

impl Settings {
    pub(super) fn validate(&self, origins: &Origins, errors: &mut Vec<FieldError>) {
        let mut bad = |path: &str, reason: &str| {
            errors.push(FieldError {
                path: format!("{}: {path}", origins.of(path)),
                reason: reason.to_string(),
            });
        };
        let ka = self.server.keep_alive;
        if ka < Duration::from_secs(1) || ka > Duration::from_secs(3600) {
            bad("server.keep_alive", "must be between 1s and 1h");
        }
        if self.server.body_limit_bytes < 1024 {
            bad("server.body_limit_bytes", "must be at least 1024");
        }
        for (field, reason) in self.database.check() {
            bad(&format!("database.{field}"), &reason);
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
        if let Some(token) = &self.webhook.token {
            use secrecy::ExposeSecret;
            if token.expose_secret().len() < 16 {
                bad("webhook.token", "must be at least 16 characters");
            }
        }
        for (field, reason) in self.auth.check() {
            bad(&format!("auth.{field}"), &reason);
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
                bad(&at("range"), &e.to_string());
            }
            if let Err(e) = crate::domain::ReportFormat::parse(&sch.format) {
                bad(&at("format"), &e.to_string());
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
        for (field, reason) in self.jenkins.check() {
            bad(&format!("jenkins.{field}"), &reason);
        }
        for (field, reason) in self.kubernetes.check() {
            bad(&format!("kubernetes.{field}"), &reason);
        }
        for (field, reason) in self.leader_election.check() {
            bad(&format!("leader_election.{field}"), &reason);
        }
        if self.scaling.reconcile_interval < Duration::from_secs(1) {
            bad("scaling.reconcile_interval", "must be at least 1s");
        }
        let le = &self.leader_election;
        if le.mode == LeaderMode::Postgres && self.database.postgres_url().is_none() {
            bad(
                "leader_election.mode",
                "postgres needs a PostgreSQL store (database.url); one replica on SQLite needs no election",
            );
        }
        let b = &self.backfill;
        if let Err(e) = BackfillSettings::check_rate(b.max_requests_per_second) {
            bad("backfill.max_requests_per_second", &e.to_string());
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
            for (field, reason) in p.check() {
                bad(&at(&field), &reason);
            }
        }
    }
}
