//! Jenkins' build history, as a backfill reads it: the jobs of a folder (folders,
//! multibranch projects and organisation folders hold more jobs) and a job's builds, a
//! page at a time, with narrow `tree=` queries.

use super::{JenkinsClient, JenkinsError};
use serde::Deserialize;

/// One item of a folder.
#[derive(Debug, Clone, Deserialize)]
pub struct JobEntry {
    pub name: String,
    #[serde(rename = "_class", default)]
    pub class: String,
}

impl JobEntry {
    /// Whether the item holds jobs rather than builds: a folder, a multibranch project,
    /// an organisation folder.
    pub fn is_folder(&self) -> bool {
        let c = self.class.as_str();
        c.ends_with(".Folder")
            || c.ends_with("MultiBranchProject")
            || c.ends_with(".OrganizationFolder")
            || c.ends_with("ComputedFolder")
    }
}

#[derive(Deserialize)]
struct Jobs {
    #[serde(default)]
    jobs: Vec<JobEntry>,
}

/// One build as a job's history lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoricBuild {
    pub number: u64,
    /// When it started (epoch ms).
    pub timestamp: i64,
    /// How long it ran (ms); 0 while running.
    #[serde(default)]
    pub duration: i64,
    /// `None` while running.
    pub result: Option<String>,
    /// The node it ran on; empty for the built-in node.
    pub built_on: Option<String>,
    pub queue_id: Option<u64>,
    #[serde(default)]
    pub actions: Vec<serde_json::Value>,
}

impl HistoricBuild {
    /// The node it ran on: `built-in` for the controller's own (Jenkins says `""`).
    pub fn node(&self) -> Option<&str> {
        self.built_on
            .as_deref()
            .map(|n| if n.is_empty() { "built-in" } else { n })
    }

    /// Its time in the queue, from the Metrics plugin's `TimeInQueueAction`.
    pub fn queue_wait_ms(&self) -> Option<i64> {
        self.actions.iter().find_map(|a| {
            let ms = a.get("queuingDurationMillis")?.as_i64()?;
            (ms >= 0).then_some(ms)
        })
    }
}

#[derive(Deserialize)]
struct Builds {
    #[serde(default)]
    builds: Vec<HistoricBuild>,
}

/// The path segments of a job (or folder) by its full name.
fn job_segments(full_name: &str) -> Vec<&str> {
    full_name
        .split('/')
        .filter(|s| !s.is_empty())
        .flat_map(|s| ["job", s])
        .collect()
}

impl JenkinsClient {
    /// The items of the folder `folder` (`""`: the controller's top level).
    pub async fn folder_items(&self, folder: &str) -> Result<Vec<JobEntry>, JenkinsError> {
        let mut segments = job_segments(folder);
        segments.extend(["api", "json"]);
        let url = self.url(&segments, Some("tree=jobs[name,_class]"));
        Ok(self.get_json::<Jobs>(url).await?.jobs)
    }

    /// Builds `from..to` of the job `job`, newest first (Jenkins' own order).
    pub async fn builds_page(
        &self,
        job: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<HistoricBuild>, JenkinsError> {
        let mut segments = job_segments(job);
        segments.extend(["api", "json"]);
        let query = format!(
            "tree=builds[number,timestamp,duration,result,builtOn,queueId,actions[_class,queuingDurationMillis]]{{{from},{to}}}"
        );
        let url = self.url(&segments, Some(&query));
        Ok(self.get_json::<Builds>(url).await?.builds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_told_from_jobs_and_queue_time_is_read_from_its_action() {
        let entry = |class: &str| JobEntry {
            name: "x".into(),
            class: class.into(),
        };
        assert!(entry("com.cloudbees.hudson.plugins.folder.Folder").is_folder());
        assert!(
            entry("org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject")
                .is_folder()
        );
        assert!(entry("jenkins.branch.OrganizationFolder").is_folder());
        assert!(!entry("org.jenkinsci.plugins.workflow.job.WorkflowJob").is_folder());
        assert!(!entry("hudson.model.FreeStyleProject").is_folder());
        let b: HistoricBuild = serde_json::from_value(serde_json::json!({
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": 4,
            "timestamp": 1_700_000_000_000i64, "duration": 61_000, "result": "SUCCESS",
            "builtOn": "agent-1", "queueId": 77,
            "actions": [{"_class": "hudson.model.CauseAction"}, {},
                {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 4200}]
        }))
        .unwrap();
        assert_eq!(b.queue_wait_ms(), Some(4200));
        assert_eq!(
            job_segments("team/app/feature%2Fx"),
            ["job", "team", "job", "app", "job", "feature%2Fx"]
        );
    }
}
