//! What an installation runs besides the service: the agents' preStop hook
//! (`ci-cd-integration/k8s/agent/prestop.sh`, the real script in the real shell with curl)
//! against the fake Jenkins, and the manifests that wire it.

use crate::fake_jenkins::{self, FakeJenkins};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Starts the hook as the kubelet would, for the pod `node`.
fn prestop(jenkins: &FakeJenkins, node: &str, timeout_s: u32, token: &str) -> Child {
    Command::new("sh")
        .arg(repo("ci-cd-integration/k8s/agent/prestop.sh"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JENKINS_URL", &jenkins.url)
        .env("POD_NAME", node)
        .env("SWARM_USER", fake_jenkins::USER)
        .env("SWARM_PASSWORD", token)
        .env("AUTOPILOT_DRAIN_TIMEOUT_SECONDS", timeout_s.to_string())
        .env("AUTOPILOT_DRAIN_POLL_SECONDS", "0.1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh")
}

/// Waits for the hook to end; its exit status, stderr and when it ended.
async fn ended(mut child: Child, within: Duration) -> (i32, String, Instant) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let at = Instant::now();
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err, at);
        }
        assert!(Instant::now() < deadline, "the preStop hook did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn offline(j: &FakeJenkins, node: &str) -> bool {
    j.state.lock().unwrap().agents[node].temporarily_offline
}

#[tokio::test]
async fn the_prestop_hook_lets_a_busy_agent_finish_its_build_before_the_pod_goes() {
    let jenkins = FakeJenkins::start().await;
    jenkins.add_agent("agent-linux-a", "linux", 1, 1);
    let hook = prestop(&jenkins, "agent-linux-a", 60, fake_jenkins::API_TOKEN);
    // The build runs on: the node is taken offline (no new build) and the hook waits.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(offline(&jenkins, "agent-linux-a"), "taken offline at once");
    assert_eq!(
        jenkins.state.lock().unwrap().toggles,
        ["agent-linux-a"],
        "one toggle, with the crumb"
    );
    let mut hook = hook;
    assert!(
        hook.try_wait().unwrap().is_none(),
        "still waiting for the build"
    );
    // The build finishes; only then does the hook end (and Kubernetes stop the agent).
    let finished = Instant::now();
    jenkins
        .state
        .lock()
        .unwrap()
        .agents
        .get_mut("agent-linux-a")
        .unwrap()
        .busy = 0;
    let (code, err, at) = ended(hook, Duration::from_secs(5)).await;
    assert_eq!(code, 0, "{err}");
    assert!(at > finished, "the pod went only after the build");
    assert!(err.contains("took agent-linux-a offline"), "{err}");
    assert!(err.contains("agent-linux-a is idle; stopping"), "{err}");
}

#[tokio::test]
async fn the_prestop_hook_is_bounded_and_never_blocks_a_stop() {
    let jenkins = FakeJenkins::start().await;
    jenkins.add_agent("agent-linux-a", "linux", 1, 1);
    jenkins.add_agent("agent-linux-b", "linux", 1, 0);
    // A build that outlasts the bound: the hook gives up in time, with exit 0.
    let started = Instant::now();
    let (code, err, at) = ended(
        prestop(&jenkins, "agent-linux-a", 2, fake_jenkins::API_TOKEN),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(code, 0);
    // The deadline is in whole seconds (`date +%s`): 2 s means more than 1.
    assert!(at.duration_since(started) > Duration::from_secs(1));
    assert!(
        err.contains("still busy after 2s; stopping anyway"),
        "{err}"
    );
    // An idle agent goes at once, offline first.
    let (code, err, _) = ended(
        prestop(&jenkins, "agent-linux-b", 60, fake_jenkins::API_TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(code, 0);
    assert!(offline(&jenkins, "agent-linux-b"), "{err}");
    // A node already offline is not toggled back online.
    let toggles = jenkins.state.lock().unwrap().toggles.len();
    let (code, _, _) = ended(
        prestop(&jenkins, "agent-linux-b", 60, fake_jenkins::API_TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(jenkins.state.lock().unwrap().toggles.len(), toggles);
    assert!(offline(&jenkins, "agent-linux-b"));
    // A wrong token or an unknown node: nothing to wait for, the pod still goes.
    let (code, err, _) = ended(
        prestop(&jenkins, "agent-linux-b", 60, "wrong"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(code, 0);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn the_agent_deployment_runs_the_hook_inside_its_grace_period() {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo("ci-cd-integration/k8s"))
        .output()
        .expect("kubectl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> =
        serde_yaml::Deserializer::from_str(std::str::from_utf8(&out.stdout).unwrap())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(name))
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let script = std::fs::read_to_string(repo("ci-cd-integration/k8s/agent/prestop.sh")).unwrap();
    let cm = find("ConfigMap", "jenkins-agent-prestop");
    assert_eq!(
        cm["data"]["prestop.sh"], script,
        "the ConfigMap is the tested script"
    );
    let agent = find("Deployment", "jenkins-agent-linux");
    let spec = &agent["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    assert_eq!(
        container["lifecycle"]["preStop"]["exec"]["command"],
        serde_json::json!(["sh", "/autopilot/prestop.sh"])
    );
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "prestop")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    let timeout: u64 = env("AUTOPILOT_DRAIN_TIMEOUT_SECONDS")
        .unwrap()
        .parse()
        .unwrap();
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        timeout + 10 <= grace,
        "the hook ends {timeout}s in, the grace period is {grace}s"
    );
    let service = find("Deployment", "jenkins-autopilot");
    assert_eq!(
        service["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/jenkins-autopilot/jenkins-autopilot:0.1.0"
    );
}
