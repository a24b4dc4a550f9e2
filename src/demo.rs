//! `jenkins-autopilot demo`: the service with a temporary store, fed a real CI trace
//! (ci-cd-integration/demo/) through its own webhooks, against an in-process simulated
//! pool. The trace's first weeks are sent at once as recorded history (so costs, reports
//! and the forecast have data); the rest is replayed live at a speed-up factor: each build
//! queues (a CloudEvents queue webhook), waits for an agent of the simulated pool, starts
//! and finishes (Statistics webhooks). The simulated pool follows the service's own
//! dry-run decisions, read from its API, with agents taking the pod start-up to be ready;
//! a small Jenkins API on 127.0.0.1 shows the service the queue and the agents.

use crate::config::{JenkinsControllerSettings, KubernetesMode, Settings};
use crate::sim::trace::{self, TraceBuild};
use crate::startup::Application;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bundled trace (see ci-cd-integration/demo/README.md for its source).
const TRACE: &str =
    include_str!("../ci-cd-integration/demo/autoware-github-actions-runs.trace.csv");
const LABEL: &str = "linux";
const DAY_MS: i64 = 86_400_000;

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Trace seconds per real second in the live part.
    pub speed: f64,
    /// Days of the trace sent at once as history before the live replay.
    pub history_days: i64,
    /// Stop the live replay after this long (the service keeps running until Ctrl-C).
    pub live_for: Option<Duration>,
}

/// The simulated Jenkins: the queue and the agents of the pool.
#[derive(Default)]
struct Jenkins {
    /// Queue id -> when it entered (epoch ms).
    queue: BTreeMap<u64, i64>,
    /// Agent name -> (ready, busy).
    agents: BTreeMap<String, (bool, bool)>,
}

async fn jenkins_api(req: HttpRequest, state: web::Data<Arc<Mutex<Jenkins>>>) -> HttpResponse {
    let s = state.lock().expect("demo state");
    let path = req.path().trim_matches('/').to_string();
    let why = format!("Waiting for next available executor on \u{2018}{LABEL}\u{2019}");
    let body = if path == "queue/api/json" {
        let items: Vec<Value> = s
            .queue
            .iter()
            .map(|(id, since)| {
                json!({"_class": "hudson.model.Queue$BuildableItem", "id": id, "blocked": false,
                    "buildable": true, "stuck": false, "inQueueSince": since, "why": why,
                    "task": {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": "demo"}})
            })
            .collect();
        json!({"_class": "hudson.model.Queue", "items": items})
    } else if path.starts_with("label/") && path.ends_with("loadStatistics/api/json") {
        let q = s.queue.len() as f64;
        let series = |v: f64| json!({"history": [v], "latest": v});
        json!({"queueLength": {"hour": series(q), "min": series(q), "sec10": series(q)},
            "availableExecutors": series(0.0), "busyExecutors": series(0.0)})
    } else if path.starts_with("label/") {
        let ready = s.agents.values().filter(|(r, _)| *r);
        let busy = ready.clone().filter(|(_, b)| *b).count();
        let total = ready.count();
        json!({"busyExecutors": busy, "idleExecutors": total - busy, "totalExecutors": total,
            "nodes": s.agents.iter().filter(|(_, (r, _))| *r).map(|(n, _)| json!({"nodeName": n})).collect::<Vec<_>>()})
    } else if path == "computer/api/json" {
        let computers: Vec<Value> = s
            .agents
            .iter()
            .filter(|(_, (r, _))| *r)
            .map(|(n, (_, busy))| {
                json!({"displayName": n, "assignedLabels": [{"name": LABEL}, {"name": n}],
                    "idle": !busy, "offline": false, "temporarilyOffline": false, "numExecutors": 1})
            })
            .collect();
        json!({"computer": computers})
    } else {
        return HttpResponse::NotFound().body("not simulated");
    };
    HttpResponse::Ok().json(body)
}

struct Sender {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Sender {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> anyhow::Result<()> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.context("sending a webhook")?;
        anyhow::ensure!(
            resp.status().is_success(),
            "{path} answered {}",
            resp.status()
        );
        Ok(())
    }

    /// The Statistics plugin's build payload: started (with the agent) or finalized.
    async fn build(
        &self,
        b: &TraceBuild,
        n: u64,
        start: i64,
        wait: i64,
        finish: Option<i64>,
    ) -> anyhow::Result<()> {
        let mut body = json!({"ciUrl": "https://demo.example/", "jobName": b.job, "fullJobName": b.job,
            "number": n, "slaveInfo": {"slaveName": "demo-agent", "label": LABEL, "executor": "0"},
            "startTime": start, "endTime": 0, "startedUserId": "demo", "startedUserName": "demo",
            "result": "INPROGRESS", "duration": 0, "parameters": {}, "scmInfo": {}, "queueTime": wait,
            "buildUrl": format!("job/{}/{n}/", b.job), "contextId": n, "buildCause": "demo",
            "buildFailureCauses": []});
        if let Some(end) = finish {
            let result = match b.result.as_deref() {
                Some("failure") => "FAILURE",
                Some("cancelled") => "ABORTED",
                _ => "SUCCESS",
            };
            body["result"] = json!(result);
            body["duration"] = json!((end - start).max(1));
            body["slaveInfo"] = json!({});
        }
        self.post("/webhooks/statistics?controller=demo", &[], &body)
            .await
    }

    /// A CloudEvents queue event (entered_waiting or left).
    async fn queue(
        &self,
        id: u64,
        kind: &str,
        entered: i64,
        left: Option<i64>,
    ) -> anyhow::Result<()> {
        let why = format!("Waiting for next available executor on \u{2018}{LABEL}\u{2019}");
        let body = json!({"ciUrl": "https://demo.example/", "displayName": "demo", "entryTime": entered,
            "exitTime": left, "startedBy": "demo", "jenkinsQueueId": id,
            "status": if left.is_some() { "LEFT" } else { "ENTERED_WAITING" },
            "duration": left.map_or(0, |l| l - entered),
            "queueCauses": [{"reasonForWaiting": why, "type": "entered_waiting"}]});
        self.post(
            "/webhooks/cloudevents?controller=demo",
            &[
                ("ce-specversion", "1.0".into()),
                ("ce-id", format!("demo-q-{id}-{kind}")),
                ("ce-type", format!("org.jenkinsci.queue.{kind}")),
                ("ce-source", "job/demo".into()),
            ],
            &body,
        )
        .await
    }
}

fn now_ms() -> i64 {
    crate::domain::Timestamp::now().millis()
}

/// Runs the demo until Ctrl-C.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the demo's temporary store")?;
    let trace_file = dir.path().join("trace.csv");
    std::fs::write(&trace_file, TRACE)?;
    let mut builds = trace::read(&trace_file)?;
    builds.sort_by_key(|b| b.queued_at_ms);
    anyhow::ensure!(!builds.is_empty(), "the bundled trace is empty");

    // The simulated Jenkins.
    let jenkins: Arc<Mutex<Jenkins>> = Arc::default();
    let data = web::Data::new(jenkins.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let jenkins_url = format!("http://{}/", listener.local_addr()?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(jenkins_api))
    })
    .workers(1)
    .listen(listener)?
    .run();
    tokio::spawn(server);

    // The service, on a temporary store, deciding in dry-run for one pool.
    let mut settings = Settings::load(None, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.server.listen = opts.listen;
    settings.server.data_dir = dir.path().join("data");
    let token = hex::encode(rand::random::<[u8; 16]>());
    settings.webhook.token = Some(SecretString::from(token.clone()));
    settings.kubernetes.mode = KubernetesMode::DryRun;
    settings.scaling.reconcile_interval = Duration::from_secs(1);
    settings.jenkins.controllers.insert(
        "demo".into(),
        JenkinsControllerSettings {
            url: jenkins_url.parse()?,
            user: None,
            api_token: None,
            timeout: Duration::from_secs(2),
            retries: 0,
        },
    );
    let pool = serde_yaml::from_str(&format!(
        "{{controller: demo, label: {LABEL}, namespace: demo, deployment: demo-agents, min: 0, max: 30}}"
    ))?;
    settings.scaling.pools.insert(LABEL.into(), pool);
    let pod_startup_ms = settings.scaling.pod_startup.as_millis() as f64;
    let app = Application::build(settings).await?;
    let port = app.port();
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    let base = format!("http://127.0.0.1:{port}");
    let sender = Sender {
        client: reqwest::Client::new(),
        base: base.clone(),
        token,
    };
    println!("jenkins-autopilot demo: dashboard at {base}/  (Ctrl-C to stop)");
    println!(
        "replaying {} Autoware CI runs (ci-cd-integration/demo/README.md) against a simulated pool",
        builds.len()
    );

    // History: the first days of the trace, sent at once, ending now.
    let first = builds[0].queued_at_ms;
    let split = first + opts.history_days * DAY_MS;
    let (history, live): (Vec<TraceBuild>, Vec<TraceBuild>) =
        builds.into_iter().partition(|b| b.queued_at_ms < split);
    let shift = now_ms() - split;
    for (n, b) in history.iter().enumerate() {
        let start = b.queued_at_ms + shift;
        let end = start + b.duration_ms.max(1000);
        sender.build(b, n as u64 + 1, start, 0, None).await?;
        sender.build(b, n as u64 + 1, start, 0, Some(end)).await?;
    }
    println!(
        "sent {} builds of {} days as history; replaying the rest {}x faster",
        history.len(),
        opts.history_days,
        opts.speed
    );

    let replay = replay(
        &sender,
        &jenkins,
        &live,
        split,
        history.len() as u64,
        opts.speed,
        pod_startup_ms,
    );
    tokio::select! {
        r = replay => r?,
        _ = tokio::signal::ctrl_c() => {
            handle.stop(true).await;
            return Ok(());
        }
        _ = async {
            match opts.live_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    println!("live replay over; the service keeps running at {base}/ until Ctrl-C");
    if opts.live_for.is_none() {
        tokio::signal::ctrl_c().await?;
    }
    handle.stop(true).await;
    Ok(())
}

/// A build running on a simulated agent.
#[derive(Clone, Copy)]
struct Run {
    /// Index in the live part of the trace.
    index: usize,
    number: u64,
    started: i64,
    finishes: i64,
}

/// An agent of the simulated pool.
struct SimAgent {
    ready_at: i64,
    running: Option<Run>,
}

/// The live part: builds arrive at their (sped-up) times, wait FIFO for a ready idle agent
/// of the simulated pool, run their (sped-up) duration, and finish; the pool follows the
/// service's dry-run decisions with agents ready a (sped-up) pod start-up after creation.
async fn replay(
    sender: &Sender,
    jenkins: &Arc<Mutex<Jenkins>>,
    live: &[TraceBuild],
    split: i64,
    numbered: u64,
    speed: f64,
    pod_startup_ms: f64,
) -> anyhow::Result<()> {
    let start = now_ms();
    let at = |trace_ms: i64| start + ((trace_ms - split) as f64 / speed) as i64;
    let startup = (pod_startup_ms / speed).max(1.0) as i64;
    let mut next = 0usize;
    let mut waiting: VecDeque<(usize, u64, i64)> = VecDeque::new();
    let mut agents: BTreeMap<String, SimAgent> = BTreeMap::new();
    let mut agent_seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let pools_url = format!("{}/api/v1/pools", sender.base);
    while next < live.len() || !waiting.is_empty() || agents.values().any(|a| a.running.is_some()) {
        tick.tick().await;
        let now = now_ms();
        // Arrivals.
        while next < live.len() && at(live[next].queued_at_ms) <= now {
            let id = numbered + next as u64 + 1;
            waiting.push_back((next, id, now));
            jenkins.lock().expect("demo state").queue.insert(id, now);
            sender.queue(id, "entered_waiting", now, None).await?;
            next += 1;
        }
        // Finishes.
        for (name, agent) in agents.iter_mut() {
            if let Some(r) = agent.running
                && r.finishes <= now
            {
                sender
                    .build(&live[r.index], r.number, r.started, 0, Some(now))
                    .await?;
                agent.running = None;
                if let Some(a) = jenkins.lock().expect("demo state").agents.get_mut(name) {
                    a.1 = false;
                }
            }
        }
        // The pool follows the service's latest desired replicas.
        let desired = match sender.client.get(&pools_url).send().await {
            Ok(r) => r.json::<Value>().await.ok().and_then(|v| {
                v["pools"].as_array()?.iter().find(|p| p["name"] == LABEL)?["last"]["desired"]
                    .as_u64()
            }),
            Err(_) => None,
        };
        if let Some(desired) = desired {
            let desired = desired as usize;
            while agents.len() < desired {
                agent_seq += 1;
                agents.insert(
                    format!("demo-agent-{agent_seq}"),
                    SimAgent {
                        ready_at: now + startup,
                        running: None,
                    },
                );
            }
            if agents.len() > desired {
                let idle: Vec<String> = agents
                    .iter()
                    .filter(|(_, a)| a.running.is_none())
                    .map(|(n, _)| n.clone())
                    .take(agents.len() - desired)
                    .collect();
                for n in idle {
                    agents.remove(&n);
                    jenkins.lock().expect("demo state").agents.remove(&n);
                }
            }
        }
        // Ready agents take waiting builds, oldest first.
        for (name, agent) in agents.iter_mut() {
            if agent.ready_at > now {
                continue;
            }
            jenkins
                .lock()
                .expect("demo state")
                .agents
                .entry(name.clone())
                .or_insert((true, false));
            if agent.running.is_none()
                && let Some((i, n, queued)) = waiting.pop_front()
            {
                let duration = ((live[i].duration_ms as f64) / speed).max(100.0) as i64;
                agent.running = Some(Run {
                    index: i,
                    number: n,
                    started: now,
                    finishes: now + duration,
                });
                {
                    let mut j = jenkins.lock().expect("demo state");
                    j.queue.remove(&n);
                    if let Some(a) = j.agents.get_mut(name) {
                        a.1 = true;
                    }
                }
                sender.queue(n, "left", queued, Some(now)).await?;
                sender.build(&live[i], n, now, now - queued, None).await?;
            }
        }
    }
    Ok(())
}
