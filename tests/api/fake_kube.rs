//! A fake Kubernetes API server: Deployments with their `scale` subresource and Pods, with
//! real semantics (resourceVersion, 404/409 Status objects, merge patches) and a
//! ReplicaSet-like pod removal that honours `controller.kubernetes.io/pod-deletion-cost`,
//! and Leases (coordination.k8s.io/v1) with resourceVersion preconditions and server-side
//! apply's field ownership. It records every request; the app's real `kube::Client`
//! reaches it via a kubeconfig. Each replica of the service may get a door of its own (a
//! listener on the same state) so a test can cut one replica's access alone.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

#[derive(Debug, Clone)]
pub struct FakeDeployment {
    pub replicas: i64,
    pub resource_version: u64,
    pub app_label: String,
}

#[derive(Debug, Clone)]
pub struct FakePod {
    pub namespace: String,
    pub app_label: String,
    pub annotations: BTreeMap<String, String>,
    pub ready: bool,
    pub resource_version: u64,
}

/// Every fake pod was created at this instant and became ready this long after.
pub const POD_CREATED: &str = "2026-01-05T10:00:00Z";
pub const POD_READY: &str = "2026-01-05T10:00:45Z";

/// A Lease: its spec fields, its resourceVersion, and which field manager owns each field.
#[derive(Debug, Clone, Default)]
pub struct FakeLease {
    pub spec: serde_json::Map<String, Value>,
    pub resource_version: u64,
    pub owners: BTreeMap<String, String>,
}

impl FakeLease {
    /// Sets the patch's fields (a null removes one); `manager` owns what it set.
    fn merge(&mut self, patch: serde_json::Map<String, Value>, manager: &str) {
        for (k, v) in patch {
            if v.is_null() {
                self.spec.remove(&k);
                self.owners.remove(&k);
            } else {
                self.spec.insert(k.clone(), v);
                self.owners.insert(k, manager.to_string());
            }
        }
    }
}

/// What a cut door does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers with this status.
    Status(u16),
    /// Never answers (within any test's patience).
    Hang,
    /// Takes the request (it is recorded now) and carries it out this much later, as a
    /// slow network delivers a request its client has given up on.
    Delay(std::time::Duration),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    /// The door the request came through (0: the main URL).
    pub door: usize,
    pub at: Instant,
    /// The same instant on the wall clock, for comparing with another process's times.
    pub wall: std::time::SystemTime,
    pub method: String,
    pub path: String,
    /// The query string (`watch=true&...` for a watch).
    pub query: String,
    pub body: Value,
}

impl Recorded {
    /// A watch (a long-lived stream of changes), not a read or a write.
    pub fn is_watch(&self) -> bool {
        url::form_urlencoded::parse(self.query.as_bytes())
            .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    }
}

#[derive(Debug, Default)]
pub struct KubeState {
    pub deployments: BTreeMap<(String, String), FakeDeployment>,
    pub pods: BTreeMap<String, FakePod>,
    pub next_rv: u64,
    pub fail_status: Option<u16>,
    /// Answer the next N scale patches with 409 (as if someone else changed the scale).
    pub conflicts: u32,
    /// Pods removed by scale-downs, in order.
    pub deleted: Vec<String>,
    pub requests: Vec<Recorded>,
    /// metrics.k8s.io: `None` answers 404 (no metrics-server); else each pod's
    /// (cpu, memory) use by name, e.g. ("700m", "512Mi").
    pub pod_metrics: Option<BTreeMap<String, (String, String)>>,
    pub leases: BTreeMap<(String, String), FakeLease>,
    /// Doors cut by a test.
    /// Doors cut by a test: per door, faults for requests whose `METHOD path` contains a
    /// text (`None`: every request), the first that matches applies.
    pub faults: BTreeMap<usize, Vec<(Option<String>, Fault)>>,
    next_pod: u64,
    next_door: usize,
}

impl KubeState {
    fn rv(&mut self) -> u64 {
        self.next_rv += 1;
        self.next_rv
    }
}

#[derive(Clone)]
pub struct FakeKube {
    pub url: String,
    pub state: Arc<Mutex<KubeState>>,
}

/// Which door a request came through.
#[derive(Clone, Copy)]
struct DoorId(usize);

fn listen(state: Arc<Mutex<KubeState>>, door: usize) -> String {
    let data = web::Data::new(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(DoorId(door)))
            .default_service(web::to(handle))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// Another way into the same server, for one client: it can be cut alone.
#[derive(Clone)]
pub struct Door {
    pub id: usize,
    pub url: String,
    state: Arc<Mutex<KubeState>>,
}

impl Door {
    /// Cuts (`Some`) or restores (`None`) this door.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.set_faults(fault.map(|f| (None, f)).into_iter().collect());
    }

    /// Faults for requests whose `METHOD path` contains a text (`None`: any), first
    /// match wins.
    pub fn set_faults(&self, faults: Vec<(Option<&str>, Fault)>) {
        let faults = faults
            .into_iter()
            .map(|(p, f)| (p.map(str::to_string), f))
            .collect();
        self.state.lock().unwrap().faults.insert(self.id, faults);
    }

    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        kubeconfig(&self.url, &dir.join(format!("kubeconfig-{}", self.id)))
    }
}

fn kubeconfig(url: &str, path: &std::path::Path) -> std::path::PathBuf {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: ci-agents\ncurrent-context: fake\n"
    );
    std::fs::write(path, yaml).unwrap();
    path.to_path_buf()
}

impl FakeKube {
    pub async fn start() -> Self {
        let state: Arc<Mutex<KubeState>> = Arc::new(Mutex::new(KubeState {
            next_rv: 1000,
            ..Default::default()
        }));
        let url = listen(state.clone(), 0);
        Self { url, state }
    }

    /// A new door into this server.
    pub fn door(&self) -> Door {
        let id = {
            let mut s = self.state.lock().unwrap();
            s.next_door += 1;
            s.next_door
        };
        Door {
            id,
            url: listen(self.state.clone(), id),
            state: self.state.clone(),
        }
    }

    /// The Lease, as stored.
    pub fn lease(&self, ns: &str, name: &str) -> Option<FakeLease> {
        self.state
            .lock()
            .unwrap()
            .leases
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// A kubeconfig pointing at this server.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        kubeconfig(&self.url, &dir.join("kubeconfig"))
    }

    /// A Deployment with `pods` ready pods named `<name>-<n>`.
    pub fn add_deployment(&self, ns: &str, name: &str, pods: &[&str]) {
        let mut s = self.state.lock().unwrap();
        let rv = s.rv();
        s.deployments.insert(
            (ns.to_string(), name.to_string()),
            FakeDeployment {
                replicas: pods.len() as i64,
                resource_version: rv,
                app_label: name.to_string(),
            },
        );
        for p in pods {
            let rv = s.rv();
            s.pods.insert(
                p.to_string(),
                FakePod {
                    namespace: ns.to_string(),
                    app_label: name.to_string(),
                    annotations: BTreeMap::new(),
                    ready: true,
                    resource_version: rv,
                },
            );
        }
    }

    pub fn replicas(&self, ns: &str, name: &str) -> i64 {
        self.state.lock().unwrap().deployments[&(ns.to_string(), name.to_string())].replicas
    }

    pub fn cost(&self, pod: &str) -> Option<i32> {
        self.state
            .lock()
            .unwrap()
            .pods
            .get(pod)
            .and_then(|p| p.annotations.get(COST))
            .and_then(|v| v.parse().ok())
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.state.lock().unwrap().pods.keys().cloned().collect()
    }

    pub fn scale_patches(&self) -> Vec<Recorded> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/scale"))
            .cloned()
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

fn status(code: u16, reason: &str, message: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    }))
}

fn scale_json(ns: &str, name: &str, d: &FakeDeployment) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": d.resource_version.to_string()},
        "spec": {"replicas": d.replicas},
        "status": {"replicas": d.replicas, "selector": format!("app={}", d.app_label)}})
}

fn deployment_json(ns: &str, name: &str, d: &FakeDeployment) -> Value {
    json!({"kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": d.resource_version.to_string(),
            "creationTimestamp": POD_CREATED},
        "spec": {"replicas": d.replicas,
            "selector": {"matchLabels": {"app": d.app_label}},
            "template": {"metadata": {"labels": {"app": d.app_label}},
                "spec": {"containers": [{"name": "agent", "image": "jenkins/inbound-agent"}]}}},
        "status": {"replicas": d.replicas}})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployments,
    Pods,
}

/// The namespace's objects of a kind by name, each with its resourceVersion; pods only
/// those an `app=` selector picks when there is one.
fn objects(
    s: &KubeState,
    ns: &str,
    kind: Kind,
    selector: Option<&str>,
) -> BTreeMap<String, (u64, Value)> {
    match kind {
        Kind::Deployments => s
            .deployments
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|((_, name), d)| {
                (
                    name.clone(),
                    (d.resource_version, deployment_json(ns, name, d)),
                )
            })
            .collect(),
        Kind::Pods => {
            let app = selector
                .and_then(|s| s.strip_prefix("app="))
                .unwrap_or("")
                .to_string();
            s.pods
                .iter()
                .filter(|(_, p)| p.namespace == ns && (app.is_empty() || p.app_label == app))
                .map(|(n, p)| (n.clone(), (p.resource_version, pod_json(n, p))))
                .collect()
        }
    }
}

/// A watch: every change to the objects after `known` (added, modified, deleted), one
/// JSON event per line, found by comparing the state every few milliseconds (so changes
/// a test makes to the state directly are seen too). It ends at its timeout, and when the
/// door or the server is cut with a status (the client then starts over and gets that
/// status); a door that hangs sends nothing more.
fn watch(
    state: Arc<Mutex<KubeState>>,
    door: usize,
    ns: String,
    kind: Kind,
    selector: Option<String>,
    known: BTreeMap<String, (u64, Value)>,
    timeout: std::time::Duration,
) -> HttpResponse {
    struct Watching {
        state: Arc<Mutex<KubeState>>,
        known: BTreeMap<String, (u64, Value)>,
        pending: std::collections::VecDeque<web::Bytes>,
        until: Instant,
    }
    let start = Watching {
        state,
        known,
        pending: Default::default(),
        until: Instant::now() + timeout,
    };
    let line = |kind: &str, object: &Value| {
        let mut b = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        b.push(b'\n');
        web::Bytes::from(b)
    };
    let stream = futures_util::stream::unfold(start, move |mut w| {
        let (ns, selector) = (ns.clone(), selector.clone());
        async move {
            loop {
                if let Some(b) = w.pending.pop_front() {
                    return Some((Ok::<_, actix_web::Error>(b), w));
                }
                if Instant::now() >= w.until {
                    return None;
                }
                {
                    let s = w.state.lock().unwrap();
                    let fault = s
                        .faults
                        .get(&door)
                        .and_then(|rules| rules.iter().find(|(only, _)| only.is_none()))
                        .map(|(_, f)| *f);
                    if s.fail_status.is_some() || matches!(fault, Some(Fault::Status(_))) {
                        return None;
                    }
                    if fault != Some(Fault::Hang) {
                        let now = objects(&s, &ns, kind, selector.as_deref());
                        for (name, (_, o)) in &now {
                            match w.known.get(name) {
                                None => w.pending.push_back(line("ADDED", o)),
                                Some((_, was)) if was != o => {
                                    w.pending.push_back(line("MODIFIED", o))
                                }
                                _ => {}
                            }
                        }
                        for (name, (_, o)) in &w.known {
                            if !now.contains_key(name) {
                                w.pending.push_back(line("DELETED", o));
                            }
                        }
                        w.known = now;
                    }
                }
                if w.pending.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream)
}

fn pod_json(name: &str, p: &FakePod) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": p.namespace, "resourceVersion": p.resource_version.to_string(),
            "labels": {"app": p.app_label}, "annotations": p.annotations,
            "creationTimestamp": POD_CREATED},
        "spec": {"containers": [{"name": "agent", "image": "jenkins/inbound-agent",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
        "status": {"phase": if p.ready { "Running" } else { "Pending" },
            "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" },
                "lastTransitionTime": if p.ready { POD_READY } else { POD_CREATED }}]}})
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<KubeState>>>,
) -> HttpResponse {
    let path = req.path().to_string();
    let method = req.method().to_string();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let door = req.app_data::<web::Data<DoorId>>().map_or(0, |d| d.0);
    let fault = state.lock().unwrap().faults.get(&door).and_then(|rules| {
        rules
            .iter()
            .find(|(only, _)| {
                only.as_deref()
                    .is_none_or(|p| format!("{method} {path}").contains(p))
            })
            .map(|(_, f)| *f)
    });
    if fault == Some(Fault::Hang) {
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        return status(504, "Timeout", "the door was cut".into());
    }
    state.lock().unwrap().requests.push(Recorded {
        door,
        at: Instant::now(),
        wall: std::time::SystemTime::now(),
        method: method.clone(),
        path: path.clone(),
        query: req.query_string().to_string(),
        body: body_json.clone(),
    });
    if let Some(Fault::Delay(by)) = fault {
        tokio::time::sleep(by).await;
    }
    let mut s = state.lock().unwrap();
    if let Some(Fault::Status(code)) = fault {
        return status(code, "InternalError", format!("injected failure {code}"));
    }
    if let Some(code) = s.fail_status {
        return status(
            code,
            if code == 403 {
                "Forbidden"
            } else {
                "InternalError"
            },
            format!("injected failure {code}"),
        );
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let kind = match seg.as_slice() {
        ["apis", "apps", "v1", "namespaces", ns, "deployments"] => Some((*ns, Kind::Deployments)),
        ["api", "v1", "namespaces", ns, "pods"] => Some((*ns, Kind::Pods)),
        _ => None,
    };
    if let (Some((ns, kind)), "GET") = (kind, method.as_str()) {
        let items = objects(&s, ns, kind, param("labelSelector").as_deref());
        if param("watch").is_some_and(|w| w == "true" || w == "1") {
            let since: u64 = param("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let timeout = param("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(290);
            let known = items
                .into_iter()
                .filter(|(_, (rv, _))| *rv <= since)
                .collect();
            drop(s);
            return watch(
                state.get_ref().clone(),
                door,
                ns.to_string(),
                kind,
                param("labelSelector"),
                known,
                std::time::Duration::from_secs(timeout),
            );
        }
        let list_kind = match kind {
            Kind::Deployments => ("DeploymentList", "apps/v1"),
            Kind::Pods => ("PodList", "v1"),
        };
        return HttpResponse::Ok().json(json!({"kind": list_kind.0, "apiVersion": list_kind.1,
            "metadata": {"resourceVersion": s.next_rv.to_string()},
            "items": items.into_values().map(|(_, o)| o).collect::<Vec<_>>()}));
    }
    match (method.as_str(), seg.as_slice()) {
        (
            "GET",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                ns,
                "deployments",
                name,
                "scale",
            ],
        ) => match s.deployments.get(&(ns.to_string(), name.to_string())) {
            Some(d) => HttpResponse::Ok().json(scale_json(ns, name, d)),
            None => status(
                404,
                "NotFound",
                format!("deployments.apps \"{name}\" not found"),
            ),
        },
        (
            "PATCH",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                ns,
                "deployments",
                name,
                "scale",
            ],
        ) => {
            let key = (ns.to_string(), name.to_string());
            let Some(current_rv) = s.deployments.get(&key).map(|d| d.resource_version) else {
                return status(
                    404,
                    "NotFound",
                    format!("deployments.apps \"{name}\" not found"),
                );
            };
            if s.conflicts > 0 {
                s.conflicts -= 1;
                let rv = s.rv();
                s.deployments.get_mut(&key).unwrap().resource_version = rv;
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                );
            }
            if let Some(rv) = body_json
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && rv != current_rv.to_string()
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified"
                    ),
                );
            }
            let Some(replicas) = body_json.pointer("/spec/replicas").and_then(Value::as_i64) else {
                return status(422, "Invalid", "spec.replicas: Required value".into());
            };
            let rv = s.rv();
            let app = {
                let d = s.deployments.get_mut(&key).unwrap();
                d.replicas = replicas;
                d.resource_version = rv;
                d.app_label.clone()
            };
            reconcile_pods(&mut s, ns, &app, replicas);
            let d = s.deployments[&key].clone();
            HttpResponse::Ok().json(scale_json(ns, name, &d))
        }
        (
            "GET",
            [
                "apis",
                "metrics.k8s.io",
                "v1beta1",
                "namespaces",
                ns,
                "pods",
            ],
        ) => {
            let Some(usage) = &s.pod_metrics else {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".into(),
                );
            };
            let items: Vec<Value> = s
                .pods
                .iter()
                .filter(|(_, p)| p.namespace == *ns)
                .filter_map(|(n, _)| {
                    let (cpu, mem) = usage.get(n)?;
                    Some(json!({"metadata": {"name": n, "namespace": ns},
                        "timestamp": "2026-11-27T10:00:00Z", "window": "15s",
                        "containers": [{"name": "agent", "usage": {"cpu": cpu, "memory": mem}}]}))
                })
                .collect();
            HttpResponse::Ok().json(json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}))
        }
        ("PATCH", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let rv = s.rv();
            let Some(pod) = s.pods.get_mut(*name).filter(|p| p.namespace == *ns) else {
                return status(404, "NotFound", format!("pods \"{name}\" not found"));
            };
            if let Some(ann) = body_json
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                for (k, v) in ann {
                    match v.as_str() {
                        Some(v) => pod.annotations.insert(k.clone(), v.to_string()),
                        None => pod.annotations.remove(k),
                    };
                }
            }
            pod.resource_version = rv;
            let json = pod_json(name, pod);
            HttpResponse::Ok().json(json)
        }
        (
            _,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                rest @ ..,
            ],
        ) => {
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let manager = url::form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "fieldManager")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| "unknown".into());
            lease_request(
                &mut s,
                &method,
                ns,
                rest,
                &content_type,
                &manager,
                body_json,
            )
        }
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({method} {path})"),
        ),
    }
}

fn lease_json(ns: &str, name: &str, l: &FakeLease) -> Value {
    let managers: std::collections::BTreeSet<&String> = l.owners.values().collect();
    json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": l.resource_version.to_string(),
            "managedFields": managers.iter().map(|m| json!({"manager": m})).collect::<Vec<_>>()},
        "spec": l.spec})
}

/// The Lease API: get, create, update (with a resourceVersion precondition), and patch:
/// strategic or merge patches (a null removes a field; the patcher owns what it sets) and
/// server-side apply (a field another manager owns, set to another value, is a conflict).
fn lease_request(
    s: &mut KubeState,
    method: &str,
    ns: &str,
    rest: &[&str],
    content_type: &str,
    manager: &str,
    body: Value,
) -> HttpResponse {
    let conflict = |name: &str, why: &str| {
        status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": {why}"
            ),
        )
    };
    let spec_of = |b: &Value| {
        b.get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    match (method, rest) {
        ("POST", []) => {
            let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str) else {
                return status(422, "Invalid", "metadata.name: Required value".into());
            };
            let key = (ns.to_string(), name.to_string());
            if s.leases.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            let mut spec = spec_of(&body);
            spec.retain(|_, v| !v.is_null());
            let lease = FakeLease {
                owners: spec
                    .keys()
                    .map(|k| (k.clone(), manager.to_string()))
                    .collect(),
                spec,
                resource_version: s.rv(),
            };
            let out = lease_json(ns, name, &lease);
            s.leases.insert(key, lease);
            HttpResponse::Created().json(out)
        }
        (_, [name]) => {
            let key = (ns.to_string(), name.to_string());
            let rv = s.next_rv + 1;
            let Some(lease) = s.leases.get_mut(&key) else {
                return status(
                    404,
                    "NotFound",
                    format!("leases.coordination.k8s.io \"{name}\" not found"),
                );
            };
            if method == "GET" {
                return HttpResponse::Ok().json(lease_json(ns, name, lease));
            }
            if let Some(want) = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && want != lease.resource_version.to_string()
            {
                return conflict(
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let patch = spec_of(&body);
            match method {
                "PUT" => {
                    if body.pointer("/metadata/resourceVersion").is_none() {
                        return status(
                            422,
                            "Invalid",
                            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update".into(),
                        );
                    }
                    lease.spec = patch.into_iter().filter(|(_, v)| !v.is_null()).collect();
                    lease.owners = lease
                        .spec
                        .keys()
                        .map(|k| (k.clone(), manager.to_string()))
                        .collect();
                }
                "PATCH" if content_type.starts_with("application/apply-patch") => {
                    for (k, v) in &patch {
                        if let (Some(owner), Some(have)) = (lease.owners.get(k), lease.spec.get(k))
                            && owner != manager
                            && have != v
                        {
                            return conflict(
                                name,
                                &format!(
                                    "Apply failed with 1 conflict: conflict with \"{owner}\": .spec.{k}"
                                ),
                            );
                        }
                    }
                    // Fields this manager applied before and leaves out now are removed.
                    let dropped: Vec<String> = lease
                        .owners
                        .iter()
                        .filter(|(k, m)| *m == manager && !patch.contains_key(*k))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in dropped {
                        lease.owners.remove(&k);
                        lease.spec.remove(&k);
                    }
                    lease.merge(patch, manager);
                }
                "PATCH" => {
                    lease.merge(patch, manager);
                }
                _ => return status(405, "MethodNotAllowed", format!("{method} on a Lease")),
            }
            lease.resource_version = rv;
            let out = lease_json(ns, name, lease);
            s.next_rv = rv;
            HttpResponse::Ok().json(out)
        }
        _ => status(404, "NotFound", format!("no such Lease request ({method})")),
    }
}

/// What the Deployment and ReplicaSet controllers would do: add ready pods, or remove
/// pods in the ReplicaSet's order (not ready first, then lowest deletion cost).
fn reconcile_pods(s: &mut KubeState, ns: &str, app: &str, replicas: i64) {
    let mut mine: Vec<(String, bool, i32)> = s
        .pods
        .iter()
        .filter(|(_, p)| p.namespace == ns && p.app_label == app)
        .map(|(n, p)| {
            (
                n.clone(),
                p.ready,
                p.annotations
                    .get(COST)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect();
    let have = mine.len() as i64;
    if replicas > have {
        for _ in 0..(replicas - have) {
            s.next_pod += 1;
            let name = format!("{app}-new-{}", s.next_pod);
            let rv = s.rv();
            s.pods.insert(
                name,
                FakePod {
                    namespace: ns.into(),
                    app_label: app.into(),
                    annotations: BTreeMap::new(),
                    ready: true,
                    resource_version: rv,
                },
            );
        }
    } else if replicas < have {
        mine.sort_by_key(|(name, ready, cost)| (*ready, *cost, name.clone()));
        for (name, _, _) in mine.into_iter().take((have - replicas) as usize) {
            s.pods.remove(&name);
            s.deleted.push(name);
        }
    }
}
