//! The Kubernetes guarantees on a real control plane: etcd, kube-apiserver with RBAC and
//! kube-controller-manager built from Go modules and started by
//! `scripts/k8s-control-plane up` (the directory in `K8S_CONTROL_PLANE`; `./scripts/test`
//! starts one). The shipped manifests are applied for real, each test in namespaces of its
//! own, and the service acts as the shipped ServiceAccount: a request its Role forbids
//! fails the test. No kubelet runs: the tests play the node (bind pods to it, mark them
//! Running and Ready after a start-up delay, finish the deletion of pods told to stop).

use crate::fake_jenkins::{self, FakeJenkins};
use crate::helpers::{Db, TestApp, spawn_with, test_settings};
use crate::scaling::eventually;
use jenkins_autopilot::config::{KubernetesMode, PoolSettings, Settings};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The agents' Deployment in the shipped manifests (ci-cd-integration/k8s).
pub const AGENTS: &str = "jenkins-agent-linux";
/// The one node the tests play.
const NODE: &str = "autopilot-test-node";

/// Tests share the control plane; the one that restarts its API server has it alone.
static API_SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A share of the control plane for one test's length.
pub async fn share() -> tokio::sync::RwLockReadGuard<'static, ()> {
    API_SERVER.read().await
}

/// The running control plane: its directory, from `K8S_CONTROL_PLANE`.
pub fn control_plane() -> PathBuf {
    let dir = std::env::var("K8S_CONTROL_PLANE").expect(
        "K8S_CONTROL_PLANE is not set: run the tests with ./scripts/test, which starts a \
         control plane, or `scripts/k8s-control-plane up DIR` and export K8S_CONTROL_PLANE=DIR",
    );
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("admin.kubeconfig").is_file(),
        "{} holds no running control plane (scripts/k8s-control-plane up {0:?})",
        dir.display()
    );
    dir
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane's kubectl, acting as the cluster admin.
fn admin_kubectl() -> Command {
    let dir = control_plane();
    let mut cmd = Command::new(dir.join("bin/kubectl"));
    cmd.arg("--kubeconfig").arg(dir.join("admin.kubeconfig"));
    cmd
}

/// Runs the control plane's kubectl as the cluster admin; its stdout, or a panic with its
/// stderr.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = admin_kubectl()
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The admin's client.
pub async fn admin() -> kube::Client {
    client_from(&control_plane().join("admin.kubeconfig")).await
}

pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The shipped manifests of one test: `kubectl kustomize` of a kustomization, with its
/// namespaces `autopilot` and `ci-agents` renamed to this test's.
pub struct Manifests {
    pub service_ns: String,
    pub agents_ns: String,
    pub yaml: String,
}

impl Manifests {
    /// `test` names the namespaces, with a random suffix: a control plane outlives a run.
    pub fn shipped(kustomization: &str, test: &str) -> Self {
        let run: u32 = rand::random();
        let service_ns = format!("autopilot-{test}-{run:08x}");
        let agents_ns = format!("ci-agents-{test}-{run:08x}");
        let yaml = kubectl(&["kustomize", kustomization], None)
            .lines()
            .map(|line| {
                let (indent, rest) = line.split_at(line.len() - line.trim_start().len());
                match rest {
                    "namespace: autopilot" => format!("{indent}namespace: {service_ns}"),
                    "name: autopilot" => format!("{indent}name: {service_ns}"),
                    "namespace: ci-agents" => format!("{indent}namespace: {agents_ns}"),
                    "name: ci-agents" => format!("{indent}name: {agents_ns}"),
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            service_ns,
            agents_ns,
            yaml,
        }
    }

    /// Applies them and writes a kubeconfig that acts as the shipped ServiceAccount.
    pub fn apply(&self, dir: &Path) -> PathBuf {
        kubectl(&["apply", "-f", "-"], Some(&self.yaml));
        let out = dir.join("service-account.kubeconfig");
        let status = Command::new(repo().join("scripts/k8s-control-plane"))
            .arg("kubeconfig")
            .arg(control_plane())
            .args([self.service_ns.as_str(), "jenkins-autopilot"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "a kubeconfig for the ServiceAccount");
        out
    }
}

/// What the node the tests play saw: each pod it finished deleting, in order, with its
/// deletion cost and whether it was Ready then.
#[derive(Default)]
pub struct NodeLog {
    pub deleted: Vec<(String, Option<String>, bool)>,
}

/// Plays the kubelet of one node for a namespace's pods: binds unscheduled pods to it,
/// marks bound pods Running and Ready once `start_up` has passed since their creation
/// (except pods named in `held`, which stay starting), and finishes the deletion of pods
/// the ReplicaSet told to stop. Stops when dropped.
pub struct FakeNode {
    pub log: Arc<Mutex<NodeLog>>,
    /// Pods that stay starting (bound, not Ready) until taken out.
    pub held: Arc<Mutex<BTreeSet<String>>>,
    /// This many of the next pods bound are held.
    pub hold_next: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeNode {
    pub async fn start(client: kube::Client, ns: &str, start_up: Duration) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                       "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"}}
        }))
        .unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(e) => panic!("create node: {e}"),
        }
        let log: Arc<Mutex<NodeLog>> = Arc::default();
        let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let hold_next: Arc<Mutex<usize>> = Arc::default();
        let pods: Api<Pod> = Api::namespaced(client, ns);
        let task = tokio::spawn(play(
            pods,
            start_up,
            log.clone(),
            held.clone(),
            hold_next.clone(),
        ));
        Self {
            log,
            held,
            hold_next,
            task,
        }
    }
}

async fn play(
    pods: Api<Pod>,
    start_up: Duration,
    log: Arc<Mutex<NodeLog>>,
    held: Arc<Mutex<BTreeSet<String>>>,
    hold_next: Arc<Mutex<usize>>,
) {
    loop {
        let Ok(list) = pods.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for pod in list.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let spec = pod.spec.as_ref();
            if pod.metadata.deletion_timestamp.is_some() {
                let gone = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                if gone.is_ok() {
                    let cost =
                        pod.metadata.annotations.as_ref().and_then(|a| {
                            a.get("controller.kubernetes.io/pod-deletion-cost").cloned()
                        });
                    let ready = is_ready(&pod);
                    log.lock().unwrap().deleted.push((name, cost, ready));
                }
                continue;
            }
            if spec.and_then(|s| s.node_name.as_ref()).is_none() {
                let binding = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
                let bound = pods
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await;
                let mut hold = hold_next.lock().unwrap();
                if bound.is_ok() && *hold > 0 {
                    *hold -= 1;
                    held.lock().unwrap().insert(name);
                }
                continue;
            }
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Running");
            let created_ms = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_millisecond());
            let age_ms = chrono::Utc::now().timestamp_millis() - created_ms;
            let due = age_ms >= start_up.as_millis() as i64;
            if !running && due && !held.lock().unwrap().contains(&name) {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let status = json!({"status": {"phase": "Running", "startTime": now, "podIP": "10.1.0.10",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}],
                    "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 0, "started": true,
                        "image": "eclipse-temurin:21-jre", "imageID": "", "state": {"running": {"startedAt": now}}}]}});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pods not being deleted, by name, with whether they are Ready.
fn live_and_ready(pods: &[Pod]) -> BTreeMap<String, bool> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), is_ready(p)))
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One test's world: the shipped manifests applied in its own namespaces, the node played,
/// the fake Jenkins the agents register with, and the service acting as the shipped
/// ServiceAccount.
pub struct World {
    pub manifests: Manifests,
    pub admin: kube::Client,
    pub node: FakeNode,
    pub jenkins: FakeJenkins,
    pub app: TestApp,
    _dir: tempfile::TempDir,
    _share: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
}

/// The shipped pool (`ci-cd-integration/k8s/settings/jenkins-scaling.yaml`), in this
/// test's agents' namespace.
pub fn shipped_pool(agents_ns: &str) -> PoolSettings {
    let text =
        std::fs::read_to_string(repo().join("ci-cd-integration/k8s/settings/jenkins-scaling.yaml"))
            .unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut pool: PoolSettings =
        serde_yaml::from_value(doc["scaling"]["pools"]["linux"].clone()).unwrap();
    pool.namespace = agents_ns.into();
    pool
}

impl Drop for Manifests {
    /// Removes the test's namespaces; their pods are finished at once (the node that
    /// would finish them is gone with the test).
    fn drop(&mut self) {
        for ns in [&self.agents_ns, &self.service_ns] {
            for args in [
                &[
                    "delete",
                    "namespace",
                    ns,
                    "--wait=false",
                    "--ignore-not-found",
                ][..],
                &[
                    "delete",
                    "pods",
                    "--all",
                    "-n",
                    ns,
                    "--force",
                    "--grace-period=0",
                    "--wait=false",
                ],
            ] {
                let _ = admin_kubectl()
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl World {
    pub async fn start(
        test: &str,
        edit: impl FnOnce(&mut Manifests),
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let share = share().await;
        let mut world = Self::start_alone(test, edit, tweak).await;
        world._share = Some(share);
        world
    }

    /// As [`World::start`], for a test that holds the control plane alone.
    pub async fn start_alone(
        test: &str,
        edit: impl FnOnce(&mut Manifests),
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut manifests = Manifests::shipped("ci-cd-integration/k8s", test);
        edit(&mut manifests);
        let admin = admin().await;
        // A namespace left by an earlier run of this test on the same control plane.
        for ns in [&manifests.service_ns, &manifests.agents_ns] {
            let _ = kubectl(
                &[
                    "delete",
                    "namespace",
                    ns,
                    "--ignore-not-found",
                    "--wait=true",
                ],
                None,
            );
        }
        let (mut settings, dir) = test_settings(Db::Sqlite).await;
        let sa_kubeconfig = manifests.apply(dir.path());
        let node = FakeNode::start(
            admin.clone(),
            &manifests.agents_ns,
            Duration::from_millis(300),
        )
        .await;
        let jenkins = FakeJenkins::start().await;
        settings.jenkins.controllers.insert(
            "prod".into(),
            jenkins.controller(Duration::from_millis(500)),
        );
        settings.kubernetes.mode = KubernetesMode::Apply;
        settings.kubernetes.kubeconfig = Some(sa_kubeconfig.clone());
        settings.scaling.debounce = Duration::from_millis(10);
        settings
            .scaling
            .pools
            .insert("linux".into(), shipped_pool(&manifests.agents_ns));
        tweak(&mut settings);
        let app = spawn_with(settings).await;
        World {
            manifests,
            admin,
            node,
            jenkins,
            app,
            _dir: dir,
            _share: None,
        }
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.admin.clone(), &self.manifests.agents_ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.manifests.agents_ns)
    }

    /// The agents' Deployment's `spec.replicas`.
    pub async fn replicas(&self) -> i32 {
        let d = self.deployments().get(AGENTS).await.unwrap();
        d.spec.replicas.unwrap_or(0)
    }

    /// The agents' pods not being deleted, by name, with whether they are Ready.
    pub async fn agent_pods(&self) -> BTreeMap<String, bool> {
        live_and_ready(
            &self
                .pods()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        )
    }

    /// Waits until the Deployment asks for `n` agents and `n` pods are Ready.
    pub async fn ready_agents(&self, n: usize) -> Vec<String> {
        eventually(
            &format!("{n} agents ready"),
            Duration::from_secs(30),
            async || {
                let pods = self.agent_pods().await;
                self.replicas().await == n as i32 && pods.len() == n && pods.values().all(|r| *r)
            },
        )
        .await;
        self.agent_pods().await.into_keys().collect()
    }

    /// Waits until the pool is still: the replicas asked for are the pods there, none
    /// terminating, every pod not held starting is Ready, and no decision came for 2 s (a
    /// reconcile may be draining agents, or marking pods and letting the marks settle, for
    /// a second before it records one).
    pub async fn settled(&self) {
        loop {
            eventually("the pool settled", Duration::from_secs(30), async || {
                let all = self
                    .pods()
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items;
                let held = self.node.held.lock().unwrap().clone();
                let ready = live_and_ready(&all);
                all.iter().all(|p| p.metadata.deletion_timestamp.is_none())
                    && all.len() as i32 == self.replicas().await
                    && ready.iter().all(|(name, r)| *r || held.contains(name))
            })
            .await;
            let decided = self.decisions().await.len();
            tokio::time::sleep(Duration::from_secs(2)).await;
            if self.decisions().await.len() == decided {
                return;
            }
        }
    }

    /// Sets the agents' Deployment's replicas as the admin would (`kubectl scale`).
    pub async fn scale_by_hand(&self, n: i32) {
        self.deployments()
            .patch_scale(
                AGENTS,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
    }

    /// The pool's recorded decisions, newest first.
    pub async fn decisions(&self) -> Vec<serde_json::Value> {
        let (status, body) = self
            .app
            .get_json("/api/v1/pools/linux/decisions?since=0&limit=1000")
            .await;
        assert_eq!(status, 200, "{body}");
        body["decisions"].as_array().cloned().unwrap()
    }

    /// Every request the service made was allowed: no decision failed on a 403, and its
    /// watches of the agents' namespace are up.
    pub async fn assert_nothing_forbidden(&self) {
        for d in self.decisions().await {
            assert!(
                !d.to_string().to_lowercase().contains("forbidden"),
                "the Role refused a request: {d}"
            );
        }
        let metrics = self.app.metrics().await;
        for resource in ["deployments", "pods"] {
            let up = format!(
                "autopilot_kube_watch_up{{namespace=\"{}\",resource=\"{resource}\"}} 1",
                self.manifests.agents_ns
            );
            assert!(metrics.contains(&up), "{up} not in {metrics}");
        }
    }

    /// Events about objects in the agents' namespace: (reason, message).
    pub async fn events(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.admin.clone(), &self.manifests.agents_ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    pub async fn replica_sets(&self) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.admin.clone(), &self.manifests.agents_ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }
}

#[tokio::test]
async fn a_webhooks_scale_up_reaches_the_real_deployment_and_the_replica_set_makes_the_pods() {
    let world = World::start("scale-up", |_| {}, |_| {}).await;
    let first = world.ready_agents(1).await;
    for name in &first {
        world.jenkins.add_agent(name, "linux", 2, 2);
    }
    // Seven builds wait for `linux`; two executors an agent: four more agents.
    world.jenkins.set_queue("linux", 1..=7);
    let started = Instant::now();
    let resp = crate::scaling::queue_event(&world.app, 1, "linux").await;
    assert_eq!(resp.status().as_u16(), 200);
    let agents = world.ready_agents(5).await;
    eprintln!(
        "scale-up: webhook to 5 Ready pods in {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        first.iter().all(|p| agents.contains(p)),
        "the busy agent stays"
    );
}

/// Pool rules that let every decision act at once: no windows, no rate limits.
fn act_at_once(settings: &mut Settings) {
    use jenkins_autopilot::scaling::{PolicyKind, RatePolicy};
    settings.scaling.reconcile_interval = Duration::from_secs(3600);
    let pool = settings.scaling.pools.get_mut("linux").unwrap();
    let unlimited = vec![RatePolicy {
        kind: PolicyKind::Pods,
        value: 100,
        period: Duration::from_secs(1),
    }];
    pool.behavior.scale_up.policies = unlimited.clone();
    pool.behavior.scale_down.policies = unlimited;
    pool.behavior.scale_down.stabilization_window = Duration::ZERO;
    pool.behavior.scale_down_delay_after_scale_up = Duration::ZERO;
}

#[tokio::test]
async fn over_fifty_scale_downs_the_replica_set_removes_no_busy_agent() {
    use rand::{Rng, SeedableRng};
    let world = World::start("scale-down", |_| {}, act_at_once).await;
    world.ready_agents(1).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let (mut scale_downs, mut removed, mut busy_seen) = (0, 0, 0);
    let mut rounds = 0;
    while scale_downs < 50 {
        rounds += 1;
        assert!(
            rounds <= 100,
            "only {scale_downs} scale-downs in 100 rounds"
        );
        // Jenkins' view changes only while the pool is settled: the agents there now turn
        // busy (one or two builds) or idle.
        let mut busy = BTreeSet::new();
        {
            let mut state = world.jenkins.state.lock().unwrap();
            state.agents.clear();
            state.queue.clear();
        }
        let mark = |name: &str, busy: &mut BTreeSet<String>, rng: &mut rand::rngs::StdRng| {
            let builds = if rng.random_bool(0.4) {
                rng.random_range(1..=2)
            } else {
                0
            };
            if builds > 0 {
                busy.insert(name.to_string());
            }
            world.jenkins.add_agent(name, "linux", 2, builds);
        };
        let before = world.agent_pods().await;
        for name in before.keys() {
            mark(name, &mut busy, &mut rng);
        }
        // The pool grows by hand to 4-8 agents. The new pods register with Jenkins before
        // they turn Ready; one or two of them stay starting.
        let target = (rng.random_range(4..=8) as usize).max(before.len() + 2);
        let new = target - before.len();
        *world.node.hold_next.lock().unwrap() = new;
        world.scale_by_hand(target as i32).await;
        eventually(
            &format!("{target} agent pods"),
            Duration::from_secs(30),
            async || {
                world.agent_pods().await.len() == target
                    && world.node.held.lock().unwrap().len() == new
            },
        )
        .await;
        let starting: usize = rng.random_range(1..=2);
        let held: Vec<String> = world.node.held.lock().unwrap().iter().cloned().collect();
        for name in &held[starting.min(held.len())..] {
            mark(name, &mut busy, &mut rng);
            world.node.held.lock().unwrap().remove(name);
        }
        busy_seen += busy.len();
        let deleted_before = world.node.log.lock().unwrap().deleted.len();
        let decided = world.decisions().await.len();
        let resp = crate::scaling::queue_event(&world.app, rounds as u64, "linux").await;
        assert_eq!(resp.status().as_u16(), 200);
        eventually("the pool decided", Duration::from_secs(10), async || {
            world.decisions().await.len() > decided
        })
        .await;
        // What still starts turns Ready (and may wake the pool) before the round ends.
        world.node.held.lock().unwrap().clear();
        world.settled().await;
        let seen = world.node.log.lock().unwrap().deleted[deleted_before..].to_vec();
        let gone: Vec<String> = seen.iter().map(|(name, _, _)| name.clone()).collect();
        let left = world.agent_pods().await;
        for name in &busy {
            assert!(
                !gone.contains(name) && left.contains_key(name),
                "round {rounds}: busy agent {name} was removed (removed {:?}, busy {busy:?}); \
                 decisions {:#}",
                seen,
                serde_json::Value::Array(
                    world
                        .decisions()
                        .await
                        .iter()
                        .map(|d| json!([
                            d["seq"],
                            d["trigger"],
                            d["current"],
                            d["desired"],
                            d["outcome"],
                            d["reason"],
                            d["inputs"]["ready_agents"],
                            d["inputs"]["pending_agents"],
                            d["decided_at"]
                        ]))
                        .collect()
                )
            );
        }
        if !gone.is_empty() {
            scale_downs += 1;
            removed += gone.len();
        }
    }
    world.assert_nothing_forbidden().await;
    eprintln!(
        "scale-down: {scale_downs} scale-downs in {rounds} rounds removed {removed} pods, \
         0 of {busy_seen} busy agents"
    );
}

#[tokio::test]
async fn a_quota_that_leaves_room_for_fewer_agents_than_demand_is_what_the_service_sees() {
    let world = World::start(
        "quota",
        |m| {
            m.yaml.push_str(&format!(
                "\n---\napiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: agents\n  \
                 namespace: {}\nspec:\n  hard:\n    pods: \"3\"\n",
                m.agents_ns
            ))
        },
        act_at_once,
    )
    .await;
    let first = world.ready_agents(1).await;
    world.jenkins.add_agent(&first[0], "linux", 2, 2);
    // 2 busy executors and 9 builds waiting: ceil(11 / 2) + 1 headroom = 7 agents.
    world.jenkins.set_queue("linux", 1..=9);
    let resp = crate::scaling::queue_event(&world.app, 1, "linux").await;
    assert_eq!(resp.status().as_u16(), 200);
    eventually(
        "7 replicas asked for",
        Duration::from_secs(10),
        async || world.replicas().await == 7,
    )
    .await;
    // The ReplicaSet makes the 3 pods the quota allows and says why not the rest.
    eventually("FailedCreate", Duration::from_secs(30), async || {
        world
            .events()
            .await
            .iter()
            .any(|(reason, message)| reason == "FailedCreate" && message.contains("exceeded quota"))
    })
    .await;
    // Beside the other control-plane tests the controller manager's quota and ReplicaSet
    // work queues back off after each refused pod (seen: the third pod late by over 30 s).
    eventually("3 agents ready", Duration::from_secs(90), async || {
        let pods = world.agent_pods().await;
        pods.len() == 3 && pods.values().all(|r| *r)
    })
    .await;
    let sets = world.replica_sets().await;
    let failure = sets[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
        })
        .cloned()
        .expect("the ReplicaSet's ReplicaFailure condition");
    assert_eq!(failure.status.as_deref(), Some("True"));
    assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
    assert_eq!(world.replicas().await, 7, "the Deployment still asks for 7");

    // What the service sees on its next look: 7 replicas, 3 pods, 4 it can never get.
    crate::scaling::queue_event(&world.app, 2, "linux").await;
    // The pool's last decision (a decision that changes nothing is not stored).
    let d = crate::scaling::last_decision_when(
        &world.app,
        "linux",
        "a decision that saw the 3 pods",
        Duration::from_secs(20),
        |d| d["inputs"]["ready_agents"] == 3,
    )
    .await;
    eprintln!(
        "quota: replicas 7, pods 3; the service's decision: current {} desired {} outcome {} \
         ready_agents {} pending_agents {}; ReplicaFailure: {:?}",
        d["current"],
        d["desired"],
        d["outcome"],
        d["inputs"]["ready_agents"],
        d["inputs"]["pending_agents"],
        failure.message
    );
    assert_eq!(d["current"], 7);
    assert_eq!(d["inputs"]["ready_agents"], 3);
    world.assert_nothing_forbidden().await;
}

/// The replicated install's settings for `serve`: PostgreSQL, the Lease in the service's
/// namespace, the shipped pool in the agents'.
fn replicated_settings(
    dir: &Path,
    db_url: &str,
    manifests: &Manifests,
    kubeconfig: &Path,
    jenkins: &FakeJenkins,
) -> PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("service.yaml"),
        format!(
            "database:\n  url: \"{db_url}\"\nwebhook:\n  token: \"{}\"\n\
             auth:\n  jwt_secret: \"a-secret-every-replica-shares-0123456789\"\n\
             leader_election: {{mode: lease, lease_duration: 3s, retry_every: 1s, renew_deadline: 2s, \
             lease_namespace: {}}}\n\
             kubernetes: {{mode: apply, kubeconfig: \"{}\", timeout: 2s}}\n\
             jenkins:\n  controllers:\n    prod: {{url: \"{}\", user: {}, timeout: 2s}}\n\
             scaling:\n  reconcile_interval: 1s\n  pools:\n    linux: {{controller: prod, label: linux, \
             namespace: {}, deployment: {AGENTS}, executors_per_agent: 2, min: 1, max: 20, idle_headroom: 1}}\n",
            crate::helpers::TOKEN,
            manifests.service_ns,
            kubeconfig.display(),
            jenkins.url,
            fake_jenkins::USER,
            manifests.agents_ns,
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_a_leader_in_the_real_lease_and_recover_from_its_loss() {
    use crate::leader::{one_leader, queue_webhook, role, start};
    let _share = share().await;
    let manifests = Manifests::shipped("ci-cd-integration/k8s-replicated", "lease");
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = manifests.apply(dir.path());
    let admin = admin().await;
    let _node = FakeNode::start(
        admin.clone(),
        &manifests.agents_ns,
        Duration::from_millis(300),
    )
    .await;
    let jenkins = FakeJenkins::start().await;
    let db_url = crate::helpers::fresh_postgres_url().await;
    let config = replicated_settings(dir.path(), &db_url, &manifests, &sa_kubeconfig, &jenkins);
    let client = reqwest::Client::new();
    let mut replicas = vec![
        start(&config, dir.path(), "replica-a", &[]),
        start(&config, dir.path(), "replica-b", &[]),
    ];
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &manifests.service_ns);
    let holder = async || {
        leases
            .get_opt("jenkins-autopilot-leader")
            .await
            .unwrap()
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
    };
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &manifests.agents_ns);
    let replicas_of = async || {
        deployments
            .get(AGENTS)
            .await
            .unwrap()
            .spec
            .replicas
            .unwrap_or(0)
    };
    let li = one_leader(
        &client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(holder().await.as_deref(), Some(replicas[li].name.as_str()));

    // A webhook to the follower: the leader scales the real Deployment.
    jenkins.set_queue("linux", 1..=4);
    queue_webhook(&client, &replicas[1 - li], 1).await;
    eventually(
        "the leader scaled to 3",
        Duration::from_secs(10),
        async || replicas_of().await == 3,
    )
    .await;

    // kill -9 of the leader: the survivor takes the Lease once it runs out (3 s).
    replicas[li].child.kill().unwrap();
    replicas[li].child.wait().unwrap();
    let killed = Instant::now();
    let survivor = replicas.remove(1 - li);
    eventually("the survivor leads", Duration::from_secs(20), async || {
        role(&client, &survivor).await.as_deref() == Some("leader")
    })
    .await;
    let failover = killed.elapsed();
    assert_eq!(holder().await.as_deref(), Some(survivor.name.as_str()));
    jenkins.set_queue("linux", 1..=6);
    queue_webhook(&client, &survivor, 2).await;
    eventually(
        "the survivor scaled to 4",
        Duration::from_secs(10),
        async || replicas_of().await == 4,
    )
    .await;

    // The Lease deleted by hand: the leader makes it again and goes on leading.
    leases
        .delete("jenkins-autopilot-leader", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    eventually(
        "the Lease is back, held",
        Duration::from_secs(20),
        async || holder().await.as_deref() == Some(survivor.name.as_str()),
    )
    .await;
    let recovered = deleted.elapsed();
    eventually("the survivor leads", Duration::from_secs(20), async || {
        role(&client, &survivor).await.as_deref() == Some("leader")
    })
    .await;
    jenkins.set_queue("linux", 1..=8);
    queue_webhook(&client, &survivor, 3).await;
    eventually(
        "the survivor scaled to 5",
        Duration::from_secs(10),
        async || replicas_of().await == 5,
    )
    .await;
    eprintln!(
        "lease: failover {} ms after kill -9 (lease 3 s); Lease deleted by hand back and held in {} ms",
        failover.as_millis(),
        recovered.as_millis()
    );
}

#[tokio::test]
async fn the_pools_watches_outlive_an_api_server_restart_and_read_fresh_state() {
    let _alone = API_SERVER.write().await;
    let world = World::start_alone("restart", |_| {}, act_at_once).await;
    world.ready_agents(1).await;
    world.jenkins.set_queue("linux", 1..=4);
    crate::scaling::queue_event(&world.app, 1, "linux").await;
    world.ready_agents(3).await;
    world.settled().await;
    let watches_up = async || {
        let m = world.app.metrics().await;
        ["deployments", "pods"].iter().all(|r| {
            m.contains(&format!(
                "autopilot_kube_watch_up{{namespace=\"{}\",resource=\"{r}\"}} 1",
                world.manifests.agents_ns
            ))
        })
    };
    assert!(watches_up().await);

    let dir = control_plane();
    let restarted = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = Command::new(repo().join("scripts/k8s-control-plane"))
            .arg("restart-apiserver")
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "restart the API server");
        started.elapsed()
    })
    .await
    .unwrap();

    // Changed by hand once it is back: the service sees it (its pods turning Ready wake
    // the pool) and, with no build queued or running, scales back to one.
    world.jenkins.state.lock().unwrap().queue.clear();
    let back = chrono::Utc::now().timestamp_millis();
    world.scale_by_hand(5).await;
    eventually("the watches up again", Duration::from_secs(60), watches_up).await;
    let watch_back = Instant::now();
    eventually(
        "a decision that saw the 5 replicas",
        Duration::from_secs(30),
        async || {
            world
                .decisions()
                .await
                .iter()
                .any(|d| d["decided_at"].as_i64() > Some(back) && d["current"] == 5)
        },
    )
    .await;
    let saw = watch_back.elapsed();
    world.ready_agents(1).await;
    world.assert_nothing_forbidden().await;
    eprintln!(
        "restart: API server back in {} ms; the service saw the change by hand {} ms after \
         its watches were up",
        restarted.as_millis(),
        saw.as_millis()
    );
}
