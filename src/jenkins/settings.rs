//! The Jenkins controllers the service reads and drains: their settings and their check.

use crate::domain::ControllerName;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Jenkins controllers, by name. The name is the one webhooks use (`?controller=`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JenkinsSettings {
    /// Controllers by name, e.g. `prod: {url: https://ci.example.com/, user: autopilot}`.
    #[serde(default)]
    pub controllers: BTreeMap<String, JenkinsControllerSettings>,
}

impl JenkinsSettings {
    /// The controller named `name` (controller names compare without case).
    pub fn controller(&self, name: &str) -> Option<&JenkinsControllerSettings> {
        self.controllers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
    }
}

/// How to reach one Jenkins controller's REST API.
#[derive(Debug, Clone, Deserialize)]
pub struct JenkinsControllerSettings {
    /// Root URL, e.g. `https://ci.example.com/` or `https://host/jenkins/`.
    pub url: url::Url,
    /// User for basic auth with an API token.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's API token (AUTOPILOT_JENKINS__CONTROLLERS__<NAME>__API_TOKEN).
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// Time allowed for one request.
    #[serde(default = "default_jenkins_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of a failed read (with exponential backoff from 100 ms); writes are never
    /// retried.
    #[serde(default = "default_jenkins_retries")]
    pub retries: u32,
}

fn default_jenkins_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_jenkins_retries() -> u32 {
    2
}

impl JenkinsSettings {
    /// Every rule these settings break: (field, reason).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (name, c) in &self.controllers {
            if ControllerName::parse(name).is_err() {
                bad.push((
                    format!("controllers.{name}"),
                    "name: letters, digits, '.', '_', '-' only".into(),
                ));
            }
            if !matches!(c.url.scheme(), "http" | "https") {
                bad.push((
                    format!("controllers.{name}.url"),
                    "must be an http or https URL".into(),
                ));
            }
            if !c.url.username().is_empty() || c.url.password().is_some() {
                // A URL is written into logs, errors and answers; credentials in it would
                // go with it.
                bad.push((format!("controllers.{name}.url"), "must not carry a user or password (user@host): set `user` and `api_token` instead".into()));
            }
            if c.api_token.is_some() && c.user.is_none() {
                bad.push((
                    format!("controllers.{name}.user"),
                    "is required with api_token".into(),
                ));
            }
        }
        bad
    }
}
