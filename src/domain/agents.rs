//! What a pool's reconcile reads of Jenkins: the queue, a label's executors and nodes,
//! the agents, as Jenkins' REST API answers them, and how a call fails. The Jenkins
//! client (`jenkins/`) fetches them; the replay world builds them; the controller's
//! ports (`scaling::ports`) speak them.

use serde::Deserialize;

/// A failed Jenkins call. Never read as "zero".
#[derive(Debug, Clone, thiserror::Error)]
pub enum JenkinsError {
    #[error("{method} {url}: HTTP {status}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
    },
    #[error("{method} {url}: not authorized (HTTP {status}): check the user and API token")]
    Unauthorized {
        method: &'static str,
        url: String,
        status: u16,
    },
    #[error("{method} {url}: {detail}")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("GET {url}: the answer is not the JSON expected: {detail}")]
    BadJson { url: String, detail: String },
}

/// `/queue/api/json` items.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueItemView {
    #[serde(rename = "_class", default)]
    pub class: Option<String>,
    pub id: u64,
    #[serde(default)]
    pub why: Option<String>,
    #[serde(default)]
    pub buildable: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub stuck: bool,
    #[serde(default)]
    pub in_queue_since: Option<i64>,
    #[serde(default)]
    pub task: Option<TaskView>,
}

/// The queued task.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TaskView {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `/label/NAME/api/json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelView {
    pub busy_executors: u32,
    pub idle_executors: u32,
    pub total_executors: u32,
    #[serde(default)]
    pub nodes: Vec<NodeRef>,
}

/// A node named by a label.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRef {
    pub node_name: String,
}

/// `/computer/api/json` entries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComputerView {
    pub display_name: String,
    #[serde(default)]
    pub assigned_labels: Vec<LabelRef>,
    /// All executors idle.
    pub idle: bool,
    pub offline: bool,
    #[serde(default)]
    pub temporarily_offline: bool,
    pub num_executors: u32,
    /// Its executors, each idle or not.
    #[serde(default)]
    pub executors: Vec<ExecutorView>,
}

/// One executor of a computer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ExecutorView {
    pub idle: bool,
}

impl ComputerView {
    /// Executors running a build: by its executors, else at least one when not idle.
    pub fn busy_executors(&self) -> u32 {
        let counted = self.executors.iter().filter(|e| !e.idle).count() as u32;
        counted.max(u32::from(!self.idle))
    }

    fn carries(&self, atom: &str) -> bool {
        self.display_name == atom || self.assigned_labels.iter().any(|l| l.name == atom)
    }
}

impl LabelView {
    /// The label's executors and nodes as `/label/L` counts them, from `/computer`: busy
    /// and total over online computers, idle over those online and not taken offline.
    /// For an expression of atoms, `!`, `&&`, `||` and parentheses (an agent's labels and
    /// its own name are its atoms); any other (quotes, `->`, `<->`) needs Jenkins to
    /// evaluate it, so `None`.
    pub fn from_computers(label: &str, computers: &[ComputerView]) -> Option<Self> {
        let expr = crate::domain::Expr::parse(label)?;
        let mut view = LabelView {
            busy_executors: 0,
            idle_executors: 0,
            total_executors: 0,
            nodes: Vec::new(),
        };
        for c in computers.iter().filter(|c| expr.matches(&|a| c.carries(a))) {
            view.nodes.push(NodeRef {
                node_name: c.display_name.clone(),
            });
            if !c.offline {
                let busy = c.busy_executors().min(c.num_executors);
                view.busy_executors += busy;
                view.total_executors += c.num_executors;
                if !c.temporarily_offline {
                    view.idle_executors += c.num_executors - busy;
                }
            }
        }
        Some(view)
    }
}

/// A label of a computer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LabelRef {
    pub name: String,
}
