//! A fake Jenkins controller: the REST paths the service reads, with JSON shaped like
//! real captures, and switches for 5xx, slowness, bad JSON and auth failures.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const USER: &str = "autopilot";
pub const API_TOKEN: &str = "11aa22bb33cc44dd55ee66ff77aa88bb99";
pub const CRUMB: &str = "5c1a5e0d2f8b4a7e9c3d";

#[derive(Debug, Clone)]
pub struct Agent {
    pub labels: Vec<String>,
    pub executors: u32,
    pub busy: u32,
    pub offline: bool,
    pub temporarily_offline: bool,
    /// Simulates a build landing on the agent just as it is taken offline.
    pub turns_busy_when_taken_offline: bool,
}

#[derive(Debug, Default)]
pub struct JenkinsState {
    /// `/queue/api/json` items.
    pub queue: Vec<Value>,
    pub agents: BTreeMap<String, Agent>,
    /// Load statistics queue length per label.
    pub load: BTreeMap<String, f64>,
    pub fail_status: Option<u16>,
    /// Fail this many of the next requests with 502, then answer normally.
    pub fail_next: u32,
    pub delay: Option<Duration>,
    pub bad_json: bool,
    pub refuse_auth: bool,
    /// (method, path and query) of every request.
    pub requests: Vec<(String, String)>,
    /// Offline toggles received with the right crumb.
    pub toggles: Vec<String>,
    /// The user lacks Agent/Connect: bringing a node back online is refused with 403.
    pub refuse_connect: bool,
    /// Folders by full name (`""`: the top level): their items' names and `_class`.
    pub folders: BTreeMap<String, Vec<(String, String)>>,
    /// Jobs' builds by the job's full name, newest first, shaped like `/job/X/api/json`.
    pub history: BTreeMap<String, Vec<Value>>,
    /// After this many more requests every request fails with 502, until cleared.
    pub fail_after: Option<usize>,
    /// The next N requests are answered only after `slow` (past the client's timeout).
    pub slow_next: u32,
    pub slow: Duration,
    /// When each request arrived.
    pub request_times: Vec<std::time::Instant>,
}

#[derive(Clone)]
pub struct FakeJenkins {
    pub url: String,
    pub state: Arc<Mutex<JenkinsState>>,
}

impl FakeJenkins {
    pub async fn start() -> Self {
        let state: Arc<Mutex<JenkinsState>> = Arc::default();
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
            url: format!("http://127.0.0.1:{port}/"),
            state,
        }
    }

    /// The service's settings for this controller: its user and API token, `timeout`, no
    /// retries.
    pub fn controller(
        &self,
        timeout: Duration,
    ) -> jenkins_autopilot::config::JenkinsControllerSettings {
        jenkins_autopilot::config::JenkinsControllerSettings {
            url: self.url.parse().unwrap(),
            user: Some(USER.into()),
            api_token: Some(secrecy::SecretString::from(API_TOKEN)),
            timeout,
            retries: 0,
        }
    }

    pub fn add_agent(&self, name: &str, label: &str, executors: u32, busy: u32) {
        self.state.lock().unwrap().agents.insert(
            name.to_string(),
            Agent {
                labels: vec![label.to_string()],
                executors,
                busy,
                offline: false,
                temporarily_offline: false,
                turns_busy_when_taken_offline: false,
            },
        );
    }

    /// Queue items waiting for `label` with Jenkins' own wording.
    pub fn set_queue(&self, label: &str, ids: std::ops::RangeInclusive<u64>) {
        let items = ids
            .map(|id| {
                json!({"_class": "hudson.model.Queue$BuildableItem", "id": id, "blocked": false, "buildable": true,
                    "stuck": false, "inQueueSince": 1_700_000_000_000i64,
                    "why": format!("Waiting for next available executor on ‘{label}’"),
                    "task": {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": "app", "url": "https://ci.example.com/job/app/"}})
            })
            .collect();
        self.state.lock().unwrap().queue = items;
    }
}

fn status_json(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

async fn handle(req: HttpRequest, state: web::Data<Arc<Mutex<JenkinsState>>>) -> HttpResponse {
    let path = req.path().to_string();
    let (delay, fail, bad_json, refuse) = {
        let mut s = state.lock().unwrap();
        s.requests.push((
            req.method().to_string(),
            format!("{}?{}", path, req.query_string()),
        ));
        s.request_times.push(std::time::Instant::now());
        let failing_now = match s.fail_after.as_mut() {
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        };
        let slow = if s.slow_next > 0 {
            s.slow_next -= 1;
            Some(s.slow)
        } else {
            None
        };
        let fail = if failing_now {
            Some(502)
        } else if s.fail_next > 0 {
            s.fail_next -= 1;
            Some(502)
        } else {
            s.fail_status
        };
        (slow.or(s.delay), fail, s.bad_json, s.refuse_auth)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|d| d == format!("{USER}:{API_TOKEN}").as_bytes());
    if refuse || !authorized {
        return HttpResponse::Unauthorized().body("<html>Unauthorized</html>");
    }
    if let Some(status) = fail {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .body("<html><body>Jenkins is restarting</body></html>");
    }
    if bad_json {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"items\": [");
    }
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| urlencoding::decode(s).unwrap().into_owned())
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut s = state.lock().unwrap();
    match (req.method().as_str(), seg.as_slice()) {
        ("GET", ["queue", "api", "json"]) => status_json(
            200,
            json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": s.queue}),
        ),
        ("GET", ["label", label, "api", "json"]) => {
            let nodes: Vec<(&String, &Agent)> = s
                .agents
                .iter()
                .filter(|(_, a)| a.labels.iter().any(|l| l == label))
                .collect();
            let online = nodes.iter().filter(|(_, a)| !a.offline);
            let busy: u32 = online.clone().map(|(_, a)| a.busy).sum();
            let total: u32 = online.map(|(_, a)| a.executors).sum();
            status_json(
                200,
                json!({"_class": "hudson.model.labels.LabelAtom", "busyExecutors": busy,
                "idleExecutors": total - busy, "totalExecutors": total,
                "nodes": nodes.iter().map(|(n, _)| json!({"_class": "hudson.slaves.DumbSlave", "nodeName": n})).collect::<Vec<_>>()}),
            )
        }
        ("GET", ["label", label, "loadStatistics", "api", "json"]) => {
            let q = s.load.get(*label).copied().unwrap_or(0.0);
            let series = |v: f64| json!({"history": [v, v], "latest": v});
            status_json(
                200,
                json!({"_class": "hudson.model.Label$1", "availableExecutors": series(0.0),
                "busyExecutors": series(0.0), "queueLength": {"hour": series(q), "min": series(q), "sec10": series(q)}}),
            )
        }
        ("GET", ["computer", "api", "json"]) => {
            let computers: Vec<Value> = s.agents.iter().map(|(n, a)| computer_json(n, a)).collect();
            status_json(
                200,
                json!({"_class": "hudson.model.ComputerSet", "busyExecutors": 0, "totalExecutors": 0, "computer": computers}),
            )
        }
        ("GET", ["computer", name, "api", "json"]) => match s.agents.get(*name) {
            Some(a) => status_json(200, computer_json(name, a)),
            None => HttpResponse::NotFound().body("<html>Not found</html>"),
        },
        ("GET", ["crumbIssuer", "api", "json"]) => status_json(
            200,
            json!({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": CRUMB, "crumbRequestField": "Jenkins-Crumb"}),
        ),
        ("POST", ["computer", name, "toggleOffline"]) => {
            if req
                .headers()
                .get("Jenkins-Crumb")
                .and_then(|v| v.to_str().ok())
                != Some(CRUMB)
            {
                return HttpResponse::Forbidden()
                    .body("No valid crumb was included in the request");
            }
            let name = name.to_string();
            let refuse_connect = s.refuse_connect;
            let Some(a) = s.agents.get_mut(&name) else {
                return HttpResponse::NotFound().finish();
            };
            if a.temporarily_offline && refuse_connect {
                return HttpResponse::Forbidden().body(format!(
                    "<html>Access Denied: {USER} is missing the Agent/Connect permission</html>"
                ));
            }
            a.temporarily_offline = !a.temporarily_offline;
            if a.temporarily_offline && a.turns_busy_when_taken_offline {
                a.busy = 1;
            }
            s.toggles.push(name);
            HttpResponse::Found()
                .insert_header(("Location", "../"))
                .finish()
        }
        ("GET", ["api", "json"]) => folder_json(&s, ""),
        ("GET", [.., "api", "json"]) if seg.len() >= 4 && seg[0] == "job" => {
            let parts = &seg[..seg.len() - 2];
            if parts.chunks(2).any(|c| c.len() != 2 || c[0] != "job") {
                return HttpResponse::NotFound().body("<html>Not found</html>");
            }
            let full: Vec<&str> = parts.chunks(2).map(|c| c[1]).collect();
            let full = full.join("/");
            if s.folders.contains_key(&full) {
                return folder_json(&s, &full);
            }
            match s.history.get(&full) {
                Some(builds) => {
                    let (from, to) = range(req.query_string()).unwrap_or((0, builds.len()));
                    let page: Vec<Value> = builds
                        .iter()
                        .skip(from)
                        .take(to.saturating_sub(from))
                        .cloned()
                        .collect();
                    status_json(
                        200,
                        json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "builds": page}),
                    )
                }
                None => HttpResponse::NotFound().body("<html>Not found</html>"),
            }
        }
        _ => HttpResponse::NotFound().body("<html>Not found</html>"),
    }
}

fn folder_json(s: &JenkinsState, folder: &str) -> HttpResponse {
    let items: Vec<Value> = s
        .folders
        .get(folder)
        .into_iter()
        .flatten()
        .map(|(name, class)| json!({"_class": class, "name": name}))
        .collect();
    status_json(
        200,
        json!({"_class": "com.cloudbees.hudson.plugins.folder.Folder", "jobs": items}),
    )
}

/// The `{m,n}` range of a `tree=` query.
fn range(query: &str) -> Option<(usize, usize)> {
    let q = urlencoding::decode(query).ok()?;
    let open = q.rfind('{')?;
    let close = q[open..].find('}')? + open;
    let (m, n) = q[open + 1..close].split_once(',')?;
    Some((m.parse().ok()?, n.parse().ok()?))
}

fn computer_json(name: &str, a: &Agent) -> Value {
    json!({"_class": "hudson.slaves.SlaveComputer", "displayName": name,
        "assignedLabels": a.labels.iter().map(|l| json!({"name": l})).chain([json!({"name": name})]).collect::<Vec<_>>(),
        "idle": a.busy == 0, "offline": a.offline || a.temporarily_offline, "temporarilyOffline": a.temporarily_offline,
        "numExecutors": a.executors,
        "executors": (0..a.executors).map(|e| json!({"_class": "hudson.model.Executor", "idle": e >= a.busy})).collect::<Vec<_>>()})
}
