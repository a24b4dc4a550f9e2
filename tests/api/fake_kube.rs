//! A fake Kubernetes API server: Deployments with their `scale` subresource and Pods, with
//! real semantics (resourceVersion, 404/409 Status objects, merge patches) and a
//! ReplicaSet-like pod removal that honours `controller.kubernetes.io/pod-deletion-cost`.
//! It records every request; the app's real `kube::Client` reaches it via a kubeconfig.

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

#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    /// The same instant on the wall clock, for comparing with another process's times.
    pub wall: std::time::SystemTime,
    pub method: String,
    pub path: String,
    pub body: Value,
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
    next_pod: u64,
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

impl FakeKube {
    pub async fn start() -> Self {
        let state: Arc<Mutex<KubeState>> = Arc::new(Mutex::new(KubeState {
            next_rv: 1000,
            ..Default::default()
        }));
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// A kubeconfig pointing at this server.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: ci-agents\ncurrent-context: fake\n",
            self.url
        );
        std::fs::write(&path, yaml).unwrap();
        path
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
    let mut s = state.lock().unwrap();
    s.requests.push(Recorded {
        at: Instant::now(),
        wall: std::time::SystemTime::now(),
        method: method.clone(),
        path: path.clone(),
        body: body_json.clone(),
    });
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
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = url::form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "labelSelector")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let app = selector.strip_prefix("app=").unwrap_or("").to_string();
            let items: Vec<Value> = s
                .pods
                .iter()
                .filter(|(_, p)| p.namespace == *ns && (app.is_empty() || p.app_label == app))
                .map(|(n, p)| pod_json(n, p))
                .collect();
            HttpResponse::Ok().json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": s.next_rv.to_string()}, "items": items}))
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
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({method} {path})"),
        ),
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
