//! The Jenkins REST client: all Jenkins I/O lives here. Reads are retried with backoff;
//! writes (taking a node offline) are not, since Jenkins' `toggleOffline` toggles.

pub mod history;

pub use crate::domain::{
    ComputerView, ExecutorView, JenkinsError, LabelRef, LabelView, NodeRef, QueueItemView, TaskView,
};

mod ports;
mod settings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
pub use settings::{JenkinsControllerSettings, JenkinsSettings};
use std::time::Duration;
use tokio::sync::Mutex;
use url::Url;

/// A transport error with its causes: reqwest's own message leaves them out.
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Debug, Deserialize)]
struct ComputerSet {
    computer: Vec<ComputerView>,
}

#[derive(Debug, Deserialize)]
struct QueueView {
    items: Vec<QueueItemView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadStatistics {
    queue_length: TimeSeries,
}

#[derive(Debug, Deserialize)]
struct TimeSeries {
    sec10: SeriesPoint,
}

#[derive(Debug, Deserialize)]
struct SeriesPoint {
    latest: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crumb {
    crumb: String,
    crumb_request_field: String,
}

/// A client for one controller.
pub struct JenkinsClient {
    http: reqwest::Client,
    base: Url,
    user: Option<String>,
    token: Option<SecretString>,
    retries: u32,
    crumb: Mutex<Option<(String, String)>>,
}

impl JenkinsClient {
    /// The client for one controller; fails only when no HTTP client can be built (no
    /// TLS backend).
    pub fn new(settings: &JenkinsControllerSettings) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default TLS provider; ring is the process's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .cookie_store(true) // crumbs are tied to the session cookie
            // toggleOffline answers 302 to the node page: the POST is done then.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jenkins-autopilot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut base = settings.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http,
            base,
            user: settings.user.clone(),
            token: settings.api_token.clone(),
            retries: settings.retries,
            crumb: Mutex::new(None),
        })
    }

    /// `base` + path segments, each encoded (label expressions hold spaces and `&`).
    fn url(&self, segments: &[&str], query: Option<&str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty();
            path.extend(segments);
        }
        url.set_query(query);
        url
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.user {
            Some(user) => req.basic_auth(
                user,
                self.token.as_ref().map(|t| t.expose_secret().to_string()),
            ),
            None => req,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, JenkinsError> {
        let mut attempt = 0;
        loop {
            let result = self.get_once(&url).await;
            match result {
                Err(JenkinsError::Transport { .. })
                | Err(JenkinsError::Status {
                    status: 500..=599, ..
                }) if attempt < self.retries => {
                    let backoff = Duration::from_millis(100 << attempt.min(6));
                    tracing::debug!(url = %url, attempt, ?backoff, "Jenkins read failed; retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn get_once<T: DeserializeOwned>(&self, url: &Url) -> Result<T, JenkinsError> {
        let shown = url.to_string();
        let resp = self
            .authed(self.http.get(url.clone()))
            .send()
            .await
            .map_err(|e| JenkinsError::Transport {
                method: "GET",
                url: shown.clone(),
                detail: describe(&e),
            })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(JenkinsError::Unauthorized {
                    method: "GET",
                    url: shown,
                    status,
                });
            }
            _ => {
                return Err(JenkinsError::Status {
                    method: "GET",
                    url: shown,
                    status,
                });
            }
        }
        let body = resp.bytes().await.map_err(|e| JenkinsError::Transport {
            method: "GET",
            url: shown.clone(),
            detail: describe(&e),
        })?;
        serde_json::from_slice(&body).map_err(|e| JenkinsError::BadJson {
            url: shown,
            detail: e.to_string(),
        })
    }

    /// The build queue.
    pub async fn queue(&self) -> Result<Vec<QueueItemView>, JenkinsError> {
        let url = self.url(
            &["queue", "api", "json"],
            Some("tree=items[_class,id,why,buildable,blocked,stuck,inQueueSince,task[name,url]]"),
        );
        Ok(self.get_json::<QueueView>(url).await?.items)
    }

    /// A label's executors and nodes.
    pub async fn label(&self, label: &str) -> Result<LabelView, JenkinsError> {
        let url = self.url(
            &["label", label, "api", "json"],
            Some("tree=busyExecutors,idleExecutors,totalExecutors,nodes[nodeName]"),
        );
        self.get_json(url).await
    }

    /// The label's queue length as Jenkins' load statistics count it (10-second series).
    pub async fn label_queue_length(&self, label: &str) -> Result<f64, JenkinsError> {
        let url = self.url(
            &["label", label, "loadStatistics", "api", "json"],
            Some("depth=1"),
        );
        Ok(self
            .get_json::<LoadStatistics>(url)
            .await?
            .queue_length
            .sec10
            .latest)
    }

    /// Every agent.
    pub async fn computers(&self) -> Result<Vec<ComputerView>, JenkinsError> {
        let url = self.url(
            &["computer", "api", "json"],
            Some("tree=computer[displayName,assignedLabels[name],idle,offline,temporarilyOffline,numExecutors,executors[idle]]"),
        );
        Ok(self.get_json::<ComputerSet>(url).await?.computer)
    }

    /// One agent.
    pub async fn computer(&self, node: &str) -> Result<ComputerView, JenkinsError> {
        let url = self.url(
            &["computer", node, "api", "json"],
            Some("tree=displayName,assignedLabels[name],idle,offline,temporarilyOffline,numExecutors"),
        );
        self.get_json(url).await
    }

    async fn crumb(&self) -> Result<Option<(String, String)>, JenkinsError> {
        let mut cached = self.crumb.lock().await;
        if cached.is_none() {
            let url = self.url(&["crumbIssuer", "api", "json"], None);
            match self.get_once::<Crumb>(&url).await {
                Ok(c) => *cached = Some((c.crumb_request_field, c.crumb)),
                // No crumb issuer (CSRF protection off): post without one.
                Err(JenkinsError::Status { status: 404, .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(cached.clone())
    }

    /// Takes a node offline (or brings it back) with a message. Jenkins only offers a
    /// toggle, so the node's `temporarilyOffline` is read first and the toggle sent only
    /// when it differs. Returns whether a toggle was sent.
    pub async fn set_offline(
        &self,
        node: &str,
        offline: bool,
        message: &str,
    ) -> Result<bool, JenkinsError> {
        let now = self.computer(node).await?;
        if now.temporarily_offline == offline {
            return Ok(false);
        }
        let crumb = self.crumb().await?;
        let mut url = self.url(&["computer", node, "toggleOffline"], None);
        url.query_pairs_mut().append_pair("offlineMessage", message);
        let shown = url.to_string();
        let mut req = self.authed(self.http.post(url));
        if let Some((field, value)) = &crumb {
            req = req.header(field.as_str(), value.as_str());
        }
        let resp = req.send().await.map_err(|e| JenkinsError::Transport {
            method: "POST",
            url: shown.clone(),
            detail: describe(&e),
        })?;
        let status = resp.status().as_u16();
        match status {
            200..=399 => Ok(true),
            401 | 403 => {
                // A stale crumb is refused with 403: drop it so the next call fetches anew.
                *self.crumb.lock().await = None;
                Err(JenkinsError::Unauthorized {
                    method: "POST",
                    url: shown,
                    status,
                })
            }
            _ => Err(JenkinsError::Status {
                method: "POST",
                url: shown,
                status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn computer(name: &str, labels: &[&str], execs: u32, busy: u32) -> ComputerView {
        ComputerView {
            display_name: name.into(),
            assigned_labels: labels
                .iter()
                .map(|l| LabelRef {
                    name: l.to_string(),
                })
                .collect(),
            idle: busy == 0,
            offline: false,
            temporarily_offline: false,
            num_executors: execs,
            executors: (0..execs)
                .map(|e| ExecutorView { idle: e >= busy })
                .collect(),
        }
    }

    #[test]
    fn a_label_expression_is_counted_from_the_agents_as_jenkins_counts_it() {
        let mut drained = computer("c", &["linux"], 2, 1);
        drained.offline = true;
        drained.temporarily_offline = true;
        let mut disconnected = computer("d", &["linux"], 1, 0);
        disconnected.offline = true;
        let computers = vec![
            computer("a", &["linux", "big"], 4, 3),
            computer("b", &["linux"], 1, 0),
            drained,
            disconnected,
            computer("w", &["windows"], 2, 2),
        ];
        let v = LabelView::from_computers("linux", &computers).unwrap();
        // Busy and total over online agents; a drained agent's build is not the label's.
        assert_eq!(
            (v.busy_executors, v.idle_executors, v.total_executors),
            (3, 2, 5)
        );
        let nodes: Vec<&str> = v.nodes.iter().map(|n| n.node_name.as_str()).collect();
        assert_eq!(nodes, ["a", "b", "c", "d"], "every node of the label");
        // A node's own name is a label of it.
        assert_eq!(
            LabelView::from_computers("w", &computers)
                .unwrap()
                .busy_executors,
            2
        );
        // Without executors in the answer, a busy agent counts one.
        let mut bare = computer("e", &["linux"], 2, 1);
        bare.executors.clear();
        assert_eq!(
            LabelView::from_computers("linux", &[bare])
                .unwrap()
                .busy_executors,
            1
        );
        // Atoms joined by &&: the agents that carry all of them.
        let both = LabelView::from_computers("linux && big", &computers).unwrap();
        assert_eq!(
            (both.busy_executors, both.total_executors, both.nodes.len()),
            (3, 4, 1)
        );
        let none = LabelView::from_computers("linux&&big&&windows", &computers).unwrap();
        assert!(none.nodes.is_empty());
        // Other expressions, as Jenkins evaluates them.
        let not_big = LabelView::from_computers("linux && !big", &computers).unwrap();
        let nodes: Vec<&str> = not_big.nodes.iter().map(|n| n.node_name.as_str()).collect();
        assert_eq!(nodes, ["b", "c", "d"]);
        assert_eq!(not_big.total_executors, 1, "only b is online");
        let either = LabelView::from_computers("(big || windows)", &computers).unwrap();
        assert_eq!((either.busy_executors, either.total_executors), (5, 6));
        for expression in ["a->b", "\"a b\"", " ", "linux &&", "a b"] {
            assert_eq!(
                LabelView::from_computers(expression, &computers),
                None,
                "{expression}"
            );
        }
    }
}
