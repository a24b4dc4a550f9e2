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
    let docs = kustomized(&repo("ci-cd-integration/k8s"));
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

/// One fenced block of a Markdown file: its info string, body and first line.
struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in md.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    body: String::new(),
                    line: n + 1,
                })
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// `key=value` words of an info string.
fn attr<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// JCasC keys and value types against the keys the plugins define: each problem with
/// its path.
fn check_jcasc(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (schema, doc) {
        (Value::String(kind), v) => {
            let ok = match kind.as_str() {
                "string" => v.is_string(),
                "bool" => v.is_boolean(),
                "int" => v.is_i64(),
                other => panic!("unknown type {other} in the JCasC keys"),
            };
            if !ok {
                out.push(format!("{at}: expected {kind}, found {v}"));
            }
        }
        (Value::Object(keys), Value::Object(set)) => {
            for (k, v) in set {
                match keys.get(k) {
                    Some(sub) => check_jcasc(v, sub, &format!("{at}/{k}"), out),
                    None => out.push(format!(
                        "{at}/{k}: no such key (known here: {})",
                        keys.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }
        (Value::Array(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_jcasc(v, &item[0], &format!("{at}[{i}]"), out);
            }
        }
        (_, v) => out.push(format!(
            "{at}: expected {}, found {v}",
            match schema {
                Value::Object(_) => "a mapping",
                Value::Array(_) => "a list",
                _ => "something else",
            }
        )),
    }
}

fn jcasc_problems(yaml: &str) -> Vec<String> {
    let schema: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/jcasc-keys.yaml")).unwrap(),
    )
    .unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(yaml).expect("JCasC YAML parses");
    let mut out = Vec::new();
    check_jcasc(&doc, &schema, "", &mut out);
    out
}

#[test]
fn every_jcasc_file_sets_only_keys_the_plugins_define() {
    let mut files = Vec::new();
    for dir in ["jenkins/casc", "jenkins/samples"] {
        for e in std::fs::read_dir(repo(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let problems = jcasc_problems(&std::fs::read_to_string(f).unwrap());
        assert!(problems.is_empty(), "{}: {problems:?}", f.display());
    }
    // The check fails as JCasC would: a misspelled key, a string for a boolean.
    let problems = jcasc_problems(
        "unclassified:\n  cloudEventsGlobalConfig:\n    sinkUrl: x\n    started: 'yes'\n",
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("/unclassified/cloudEventsGlobalConfig/sinkUrl: no such key"));
    assert!(
        problems[1].contains("started: expected bool"),
        "{problems:?}"
    );
}

/// docs/install.md as a newcomer follows it: the commands that need no cluster run, in
/// order, in a copy of the repository; the Secrets its cluster commands create are rendered
/// (`--dry-run=client`), valid, and hold every key the manifests read; every snippet is
/// checked by what it is.
/// Runs a guide's code blocks in `work` (a copy of the repository): `sh` blocks run,
/// `sh cluster` blocks' `kubectl create secret` lines run with `--dry-run=client` (their
/// Secrets are returned), `yaml` and `groovy` blocks are checked. Returns the Secrets and
/// how many blocks ran and were checked.
fn run_guide(guide: &str, work: &Path) -> (Vec<serde_json::Value>, usize, usize) {
    let md = std::fs::read_to_string(repo(guide)).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str| {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(work)
            .env("PATH", &path)
            .env("HOME", work)
            .env(
                "AUTOPILOT_JENKINS_API_TOKEN",
                "11aa22bb33cc44dd55ee66ff77aa88bb99",
            )
            .env("SWARM_API_TOKEN", "99bb88aa77ff66ee55dd44cc33bb22aa11")
            .env(
                "AUTOPILOT_DATABASE_URL",
                "postgres://autopilot:secret@db.example.com:5432/autopilot",
            )
            .output()
            .expect("bash")
    };
    let mut secrets: Vec<serde_json::Value> = Vec::new();
    let (mut ran, mut checked) = (0, 0);
    for b in blocks(&md) {
        let at = format!("{guide}:{}", b.line);
        let kind: Vec<&str> = b
            .info
            .split_whitespace()
            .filter(|w| !w.contains('='))
            .collect();
        match kind.as_slice() {
            ["sh"] => {
                let out = sh(&b.body);
                assert!(
                    out.status.success(),
                    "{at}: the command failed:\n{}\n{}{}",
                    b.body,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                ran += 1;
            }
            ["sh", "cluster"] => {
                for line in b.body.lines().filter(|l| l.contains(" create secret ")) {
                    // `create ... --dry-run=client -o yaml | kubectl apply -f -` (an
                    // update) is checked as the create it pipes.
                    let create = line
                        .split(" | ")
                        .next()
                        .unwrap()
                        .replace(" --dry-run=client -o yaml", "");
                    let out = sh(&format!("{create} --dry-run=client -o json"));
                    assert!(
                        out.status.success(),
                        "{at}: {line}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    secrets.push(serde_json::from_slice(&out.stdout).unwrap());
                }
            }
            ["sh", "jenkins" | "docker" | "database"] => {}
            ["yaml", "jcasc"] => {
                if let Some(file) = attr(&b.info, "file") {
                    assert_eq!(
                        b.body,
                        std::fs::read_to_string(repo(file)).unwrap(),
                        "{at}: not {file} as it is"
                    );
                }
                let problems = jcasc_problems(&b.body);
                assert!(problems.is_empty(), "{at}: {problems:?}");
                checked += 1;
            }
            ["yaml", "settings"] => {
                let dir = tempfile::tempdir().unwrap();
                let name = attr(&b.info, "name").expect("settings blocks name their file");
                std::fs::write(dir.path().join(name), &b.body).unwrap();
                let out = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
                    .arg("check-config")
                    .arg(dir.path())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{at}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
            ["groovy"] => {
                let file = attr(&b.info, "file")
                    .expect("Groovy blocks show a file npm-groovy-lint checks");
                assert_eq!(
                    b.body,
                    std::fs::read_to_string(repo(file)).unwrap(),
                    "{at}: not {file} as it is"
                );
                checked += 1;
            }
            other => panic!(
                "{at}: a code block of unknown kind {other:?}: mark it sh (run here), sh cluster|jenkins|docker|database, yaml jcasc|settings, or groovy file=..."
            ),
        }
    }
    (secrets, ran, checked)
}

/// The Secrets are valid objects and hold every key the kustomization's Deployments read.
fn check_secrets(secrets: &[serde_json::Value], work: &Path, kustomization: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (i, s) in secrets.iter().enumerate() {
        let file = dir.path().join(format!("secret-{i}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(s).unwrap()).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate (scripts/test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let docs = kustomized(&work.join(kustomization));
    let mut wanted = Vec::new();
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let ns = d["metadata"]["namespace"].as_str().unwrap();
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            for e in c["env"].as_array().into_iter().flatten() {
                let r = &e["valueFrom"]["secretKeyRef"];
                if r.is_object() {
                    wanted.push((
                        ns.to_string(),
                        r["name"].as_str().unwrap().to_string(),
                        r["key"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    assert!(wanted.len() >= 3, "{wanted:?}");
    for (ns, name, key) in wanted {
        let found = secrets.iter().any(|s| {
            s["metadata"]["namespace"] == ns.as_str()
                && s["metadata"]["name"] == name.as_str()
                && s["data"].get(&key).is_some()
        });
        assert!(
            found,
            "the guides create no Secret {ns}/{name} with key {key}, which a Deployment of {kustomization} reads"
        );
    }
}

#[test]
fn the_install_and_operations_guides_work_as_written() {
    let work = tempfile::tempdir().unwrap();
    for dir in ["ci-cd-integration", "jenkins", "pipelines"] {
        copy_dir(&repo(dir), &work.path().join(dir));
    }
    let (secrets, ran, checked) = run_guide("docs/install.md", work.path());
    assert!(ran >= 3 && checked >= 5, "ran {ran}, checked {checked}");
    check_secrets(&secrets, work.path(), "ci-cd-integration/k8s");
    // Several replicas: the operations guide's Secret replaces the install guide's one of
    // the same name.
    let (more, ran, _) = run_guide("docs/operations.md", work.path());
    assert!(
        ran >= 1 && !more.is_empty(),
        "ran {ran}, {} secrets",
        more.len()
    );
    let mut all: Vec<serde_json::Value> = secrets
        .into_iter()
        .filter(|s| {
            !more.iter().any(|m| {
                m["metadata"]["name"] == s["metadata"]["name"]
                    && m["metadata"]["namespace"] == s["metadata"]["namespace"]
            })
        })
        .collect();
    all.extend(more);
    check_secrets(&all, work.path(), "ci-cd-integration/k8s-replicated");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `kubectl kustomize` of a kustomization, as JSON documents.
fn kustomized(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_str(std::str::from_utf8(&out.stdout).unwrap())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn the_replicated_manifests_run_two_replicas_that_elect_one_leader() {
    let lease_name = jenkins_autopilot::config::Settings::load(None, Vec::new())
        .unwrap()
        .leader_election
        .lease_name;
    for (dir, replicas) in [
        ("ci-cd-integration/k8s", 1),
        ("ci-cd-integration/k8s-replicated", 2),
    ] {
        let docs = kustomized(&repo(dir));
        let find = |kind: &str, name: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{dir}: no {kind} {name}"))
                .clone()
        };
        let dep = find("Deployment", "jenkins-autopilot");
        assert_eq!(dep["spec"]["replicas"], replicas, "{dir}");
        let pod = &dep["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{dir}");
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
        };
        assert_eq!(
            env("POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name",
            "{dir}"
        );
        assert_eq!(
            env("POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace",
            "{dir}"
        );
        // The Lease exists, in the service's namespace; the Role reads and renews that one
        // alone, and may make a Lease there (RBAC cannot name what is created), so a Lease
        // deleted by hand is made again.
        let lease = find("Lease", &lease_name);
        assert_eq!(lease["metadata"]["namespace"], dep["metadata"]["namespace"]);
        let role = find("Role", "jenkins-autopilot-leader");
        assert_eq!(role["metadata"]["namespace"], dep["metadata"]["namespace"]);
        let rules = role["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{dir}");
        for r in rules {
            assert_eq!(r["resources"], serde_json::json!(["leases"]), "{dir}");
            let verbs = r["verbs"].as_array().unwrap();
            if verbs.contains(&"create".into()) {
                assert_eq!(verbs.len(), 1, "{dir}: create alone where no name is set");
                assert!(r["resourceNames"].is_null(), "{dir}");
            } else {
                assert_eq!(
                    r["resourceNames"],
                    serde_json::json!([lease_name]),
                    "{dir}: Lease rights limited to the one Lease"
                );
            }
        }
        if replicas > 1 {
            assert_eq!(dep["spec"]["strategy"]["type"], "RollingUpdate");
            assert_eq!(
                dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
                0
            );
            let pdb = find("PodDisruptionBudget", "jenkins-autopilot");
            assert_eq!(pdb["spec"]["minAvailable"], 1);
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"],
                dep["spec"]["selector"]["matchLabels"]
            );
            // One shared store and signing key; no volume only one pod could mount.
            for key in ["AUTOPILOT_DATABASE__URL", "AUTOPILOT_AUTH__JWT_SECRET"] {
                assert!(
                    env(key).unwrap()["valueFrom"]["secretKeyRef"].is_object(),
                    "{key}"
                );
            }
            assert!(
                !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
                "{dir}: no PVC"
            );
            assert!(
                pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|v| v.get("persistentVolumeClaim").is_none())
            );
        }
    }
}
