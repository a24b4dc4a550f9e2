//! The settings tree. Built-in defaults (`ci-cd-integration/service.yaml`, embedded in the
//! binary), then every `*.yaml` in the config directory, then `AUTOPILOT_SECTION__FIELD`
//! environment variables. Every invalid or unknown field is reported with its path.

use crate::domain::ControllerName;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod pools;
mod sections;
mod tree;
mod validate;

pub use crate::jenkins::{JenkinsControllerSettings, JenkinsSettings};
pub use crate::kube::{KubernetesMode, KubernetesSettings};
pub use crate::leader::{LeaderElectionSettings, LeaderMode};
pub use crate::store::{DatabaseSettings, SqliteSynchronous};
pub use crate::telemetry::{LogFormat, LoggingSettings};
pub use crate::tokens::AuthSettings;
pub use pools::*;
pub use sections::*;
use tree::{
    collect_leaves, defaults_tree, deserialize_reporting_all, lookup, merge, set_path, yaml_files,
    yaml_mapping,
};

/// The built-in defaults, which are also the documented sample files.
pub const DEFAULTS_YAML: [(&str, &str); 5] = [
    (
        "service.yaml",
        include_str!("../../ci-cd-integration/service.yaml"),
    ),
    (
        "resource-profiles.yaml",
        include_str!("../../ci-cd-integration/resource-profiles.yaml"),
    ),
    (
        "build-optimization.yaml",
        include_str!("../../ci-cd-integration/build-optimization.yaml"),
    ),
    (
        "cost-policies.yaml",
        include_str!("../../ci-cd-integration/cost-policies.yaml"),
    ),
    (
        "pipeline-performance.yaml",
        include_str!("../../ci-cd-integration/pipeline-performance.yaml"),
    ),
];
const ENV_PREFIX: &str = "AUTOPILOT_";

/// All settings of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP listener and local storage.
    pub server: ServerSettings,
    /// Where builds and events are stored.
    pub database: DatabaseSettings,
    /// The webhook write path.
    pub ingest: IngestSettings,
    /// Webhook authentication and defaults.
    pub webhook: WebhookSettings,
    /// Log output.
    pub logging: LoggingSettings,
    /// Jenkins controllers the service reads and drains.
    #[serde(default)]
    pub jenkins: JenkinsSettings,
    /// The Kubernetes cluster the pools run in.
    #[serde(default)]
    pub kubernetes: KubernetesSettings,
    /// Agent pools and the controller loop.
    #[serde(default)]
    pub scaling: ScalingSettings,
    /// Reading Jenkins' build history: backfills and the repair of lost webhooks.
    #[serde(default)]
    pub backfill: BackfillSettings,
    /// Which replica scales pools and runs the periodic work.
    #[serde(default)]
    pub leader_election: LeaderElectionSettings,
    /// API tokens (JWT).
    pub auth: AuthSettings,
    /// The resource profile ladder and the build container.
    pub profiles: crate::profiles::settings::ProfileSettings,
    /// Profile rules and the learned recommendation.
    pub build_optimization: crate::profiles::settings::BuildOptimizationSettings,
    /// Prices and cost alerts.
    pub cost: CostSettings,
    /// Performance reports and their schedules.
    pub reports: ReportSettings,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `file: section.field` (or `env AUTOPILOT_X__Y: section.field`).
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every invalid field found while loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<FieldError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} invalid setting(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Where a value in the merged tree came from, for error messages.
#[derive(Debug, Clone, Default)]
struct Origins(Vec<(String, String)>);

impl Origins {
    fn set(&mut self, path: &str, origin: String) {
        self.0.retain(|(p, _)| p != path);
        self.0.push((path.to_string(), origin));
    }

    fn of(&self, path: &str) -> String {
        // The longest recorded prefix of the path names its origin; else a setting below
        // it (an unknown section is reported by its name, its origin recorded by leaf).
        let below = format!("{path}.");
        self.0
            .iter()
            .filter(|(p, _)| path == p || path.starts_with(&format!("{p}.")))
            .max_by_key(|(p, _)| p.len())
            .or_else(|| self.0.iter().rev().find(|(p, _)| p.starts_with(&below)))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "defaults".to_string())
    }
}

impl Settings {
    /// Loads the defaults, the YAML files of `config_dir` (when given) and the
    /// `AUTOPILOT_*` variables of `env`.
    pub fn load(
        config_dir: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        if let Some(dir) = config_dir {
            match yaml_files(dir) {
                Ok(found) => {
                    for file in found {
                        let shown = file.display().to_string();
                        match std::fs::read_to_string(&file) {
                            Ok(text) => files.push((shown, text)),
                            Err(e) => errors.push(FieldError {
                                path: shown,
                                reason: format!("cannot read: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => errors.push(FieldError {
                    path: dir.display().to_string(),
                    reason: format!("cannot read the config directory: {}", e.source),
                }),
            }
        }
        Self::from_texts(files, env, errors)
    }

    /// The defaults, then each settings file's text (named as errors should show it), in
    /// order, then the `AUTOPILOT_*` variables of `env`; `errors` found on the way (files
    /// that could not be read) are reported with the rest.
    pub fn from_texts(
        files: Vec<(String, String)>,
        env: impl IntoIterator<Item = (String, String)>,
        mut errors: Vec<FieldError>,
    ) -> Result<Self, ConfigErrors> {
        let defaults = defaults_tree();
        let mut tree = defaults.clone();
        let mut origins = Origins::default();
        for (shown, text) in files {
            if text.trim().is_empty() {
                continue;
            }
            match yaml_mapping(&text) {
                Err(e) => errors.push(FieldError {
                    path: shown,
                    reason: format!("is not valid YAML: {e}"),
                }),
                Ok(Value::Null) => {}
                Ok(Value::Object(map)) => {
                    for (section, value) in map {
                        let mut leaves = Vec::new();
                        collect_leaves(&value, &section, &mut leaves);
                        for leaf in leaves {
                            origins.set(&leaf, shown.clone());
                        }
                        merge(&mut tree, &section, value);
                    }
                }
                Ok(_) => errors.push(FieldError {
                    path: shown,
                    reason: "must be a mapping of sections".into(),
                }),
            }
        }

        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                continue;
            }
            let dotted = path.join(".");
            let existing = lookup(&tree, &path);
            let value = match existing {
                Some(Value::Number(_)) | Some(Value::Bool(_)) => {
                    serde_yaml::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone()))
                }
                _ => Value::String(raw.clone()),
            };
            origins.set(&dotted, format!("env {name}"));
            set_path(&mut tree, &path, value);
        }

        let settings = deserialize_reporting_all::<Settings>(tree, defaults, &origins, &mut errors);
        if let Some(s) = &settings {
            s.validate(&origins, &mut errors);
        }
        match settings {
            Some(s) if errors.is_empty() => Ok(s),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_load_with_no_file_and_no_env() {
        let s = Settings::load(None, Vec::new()).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.database.url.is_none());
        assert_eq!(s.webhook.default_controller.as_str(), "default");
    }

    /// The settings check skips compiling the default secret-parameter pattern.
    #[test]
    fn the_default_secret_pattern_builds_and_a_bad_one_is_refused() {
        let p = build_secret_pattern(&default_secret_parameters()).unwrap();
        assert!(p.is_match("DB_PASSWORD") && !p.is_match("BRANCH"));
        let err = Settings::from_texts(
            vec![(
                "x.yaml".into(),
                "ingest:\n  secret_parameters: \"(unclosed\"\n".into(),
            )],
            Vec::new(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ingest.secret_parameters"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_files_and_keeps_strings_as_strings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("service.yaml"),
            "server:\n  body_limit_bytes: 2048\n",
        )
        .unwrap();
        let env = vec![
            (
                "AUTOPILOT_WEBHOOK__TOKEN".to_string(),
                "0123456789012345".to_string(),
            ),
            ("AUTOPILOT_INGEST__MAX_BATCH".to_string(), "64".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let s = Settings::load(Some(dir.path()), env).unwrap();
        assert_eq!(s.server.body_limit_bytes, 2048);
        assert_eq!(s.ingest.max_batch, 64);
        assert_eq!(s.webhook.token.unwrap().expose_secret(), "0123456789012345");
    }

    #[test]
    fn report_schedules_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline-performance.yaml"),
            "reports:\n  schedules:\n    - {name: a, cron: 'every day', range: 7d, format: html, directory: r, keep: 1}\n\
             \x20   - {name: a, cron: '0 6 * * MON', range: soon, format: pdf, directory: r, keep: 0}\n",
        )
        .unwrap();
        let errs = Settings::load(Some(dir.path()), Vec::new()).unwrap_err().0;
        for field in [
            "schedules.0.cron",
            "schedules.1.name",
            "schedules.1.range",
            "schedules.1.format",
            "schedules.1.keep",
        ] {
            assert!(
                errs.iter()
                    .any(|e| e.path.ends_with(&format!("reports.{field}"))),
                "{field}: {errs:?}"
            );
        }
        assert!(!errs.iter().any(|e| e.path.ends_with("schedules.0.range")));
    }

    #[test]
    fn pools_are_checked_against_controllers_and_their_own_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("jenkins-scaling.yaml"),
            "jenkins:\n  controllers:\n    prod: {url: \"https://ci.example.com/\", user: autopilot}\n\
             scaling:\n  pools:\n    linux: {controller: prod, label: linux, namespace: ci-agents, deployment: agents}\n\
             \x20   gpu: {controller: nope, label: gpu, namespace: CI, deployment: agents, min: 5, max: 2, executors_per_agent: 0, policy: sometimes}\n",
        )
        .unwrap();
        let errs = Settings::load(Some(dir.path()), Vec::new()).unwrap_err().0;
        let has = |suffix: &str| errs.iter().any(|e| e.path.ends_with(suffix));
        for field in [
            "gpu.controller",
            "gpu.namespace",
            "gpu.min",
            "gpu.executors_per_agent",
            "gpu.policy",
        ] {
            assert!(has(&format!("scaling.pools.{field}")), "{field}: {errs:?}");
        }
        assert!(
            !errs.iter().any(|e| e.path.contains("pools.linux")),
            "{errs:?}"
        );
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("service.yaml"),
            "server:\n  listen: nowhere\n  body_limit_bytes: 10\n  colour: blue\ningest:\n  max_batch: -1\nlogging:\n  format: xml\n",
        )
        .unwrap();
        let env = vec![(
            "AUTOPILOT_WEBHOOK__DEFAULT_CONTROLLER".to_string(),
            "has space".to_string(),
        )];
        let errs = Settings::load(Some(dir.path()), env).unwrap_err().0;
        let paths: Vec<String> = errs.iter().map(|e| e.path.clone()).collect();
        let has = |suffix: &str| paths.iter().any(|p| p.ends_with(suffix));
        assert!(has("server.listen"), "{paths:?}");
        assert!(has("server.colour"), "{paths:?}");
        assert!(has("ingest.max_batch"), "{paths:?}");
        assert!(has("logging.format"), "{paths:?}");
        assert!(has("webhook.default_controller"), "{paths:?}");
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("env AUTOPILOT_WEBHOOK__DEFAULT_CONTROLLER")),
            "{paths:?}"
        );
        // body_limit_bytes parsed (it is a number) but fails validation: reported as well.
        assert!(has("server.body_limit_bytes"), "{paths:?}");
    }
}
