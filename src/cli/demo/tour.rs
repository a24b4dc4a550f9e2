//! `jenkins-autopilot demo`: the service with a temporary store, fed a real CI trace
//! (ci-cd-integration/demo/) through its own webhooks, scaling an in-memory pool. The
//! trace's first weeks are sent at once as recorded history (so costs, reports and the
//! forecast have data); the rest is replayed live on the trace's clock, a speed-up
//! factor faster than real time. The pool's controller is the service's own, running
//! against the in-memory Jenkins and Kubernetes of `sim::world` on that clock: builds
//! queue (a CloudEvents queue webhook wakes the pool), wait for an agent, start and
//! finish (Statistics webhooks), and the pool grows and, after idle time, shrinks as it
//! would in a cluster.

use crate::config::{KubernetesMode, Settings};
use crate::controller::Adapters;
use crate::domain::Timestamp;
use crate::scaling::ports::{Clock, ClusterApi, JenkinsApi};
use crate::sim::engine::{SimBuild, SimConfig};
use crate::sim::trace::{self, TraceBuild};
use crate::sim::world::{Happened, SharedWorld, Start, World};
use crate::startup::Application;
use anyhow::Context;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The bundled trace (see ci-cd-integration/demo/README.md for its source).
const TRACE: &str =
    include_str!("../../../ci-cd-integration/demo/autoware-github-actions-runs.trace.csv");
const LABEL: &str = "linux";
const DEPLOYMENT: &str = "demo-agents";
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

/// The trace's clock: stands at `origin_ms` until started, then runs `speed` times
/// faster than real time.
struct TraceClock {
    origin_ms: i64,
    speed: f64,
    started: OnceLock<Instant>,
}

impl Clock for TraceClock {
    fn now(&self) -> Timestamp {
        let run = self
            .started
            .get()
            .map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0 * self.speed);
        Timestamp::from_millis(self.origin_ms + run as i64).unwrap_or(Timestamp::now())
    }

    /// Trace time in real time, but no reconcile more often than every 100 ms.
    fn real(&self, d: Duration) -> Duration {
        if d.is_zero() {
            return d;
        }
        Duration::from_secs_f64(d.as_secs_f64() / self.speed).max(Duration::from_millis(100))
    }
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
    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        b: &TraceBuild,
        n: u64,
        agent: &str,
        start: i64,
        wait: i64,
        finish: Option<i64>,
    ) -> anyhow::Result<()> {
        let mut body = json!({"ciUrl": "https://demo.example/", "jobName": b.job, "fullJobName": b.job,
            "number": n, "slaveInfo": {"slaveName": agent, "label": LABEL, "executor": "0"},
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
    Timestamp::now().millis()
}

/// Runs the demo until Ctrl-C.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the demo's temporary store")?;
    let trace_file = dir.path().join("trace.csv");
    std::fs::write(&trace_file, TRACE)?;
    let mut builds = trace::read(&trace_file)?;
    builds.sort_by_key(|b| b.queued_at_ms);
    anyhow::ensure!(!builds.is_empty(), "the bundled trace is empty");

    // History: the first days of the trace, ending now; the live part starts now.
    let first = builds[0].queued_at_ms;
    let split = first + opts.history_days * DAY_MS;
    let (history, live): (Vec<TraceBuild>, Vec<TraceBuild>) =
        builds.into_iter().partition(|b| b.queued_at_ms < split);
    let start = now_ms();
    let shift = start - split;

    // The service, on a temporary store, scaling one in-memory pool on the trace's clock.
    let mut settings = Settings::load(None, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.server.listen = opts.listen;
    settings.server.data_dir = dir.path().join("data");
    let token = hex::encode(rand::random::<[u8; 16]>());
    settings.webhook.token = Some(SecretString::from(token.clone()));
    settings.kubernetes.mode = KubernetesMode::DryRun;
    let pool: crate::config::PoolSettings = serde_yaml::from_str(&format!(
        "{{controller: demo, label: {LABEL}, namespace: demo, deployment: {DEPLOYMENT}, min: 0, max: 30}}"
    ))?;
    let cfg = SimConfig::new(&crate::config::PoolPolicy::from(&pool), &settings);
    settings.scaling.pools.insert(LABEL.into(), pool.clone());
    let clock = Arc::new(TraceClock {
        origin_ms: start,
        speed: opts.speed,
        started: OnceLock::new(),
    });
    let live_builds: Vec<SimBuild> = live
        .iter()
        .map(|b| SimBuild {
            queued_at: b.queued_at_ms + shift,
            duration: b.duration_ms.max(1000),
        })
        .collect();
    let world = World::new(
        &live_builds,
        pool.executors_per_agent,
        cfg.startup().sampler(42),
        pool.min,
        start,
    )
    .named(LABEL, DEPLOYMENT)
    .recording();
    let world = SharedWorld::following(world, clock.clone());
    let adapters = Adapters {
        jenkins: HashMap::from([(
            "demo".to_string(),
            Arc::new(world.clone()) as Arc<dyn JenkinsApi>,
        )]),
        cluster: Some(Arc::new(world.clone()) as Arc<dyn ClusterApi>),
        clock: clock.clone(),
    };
    let app = Application::build_with(settings, Some(adapters)).await?;
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
        "replaying {} Autoware CI runs (ci-cd-integration/demo/README.md) against an in-memory pool",
        history.len() + live.len()
    );
    for (n, b) in history.iter().enumerate() {
        let begin = b.queued_at_ms + shift;
        let end = begin + b.duration_ms.max(1000);
        let n = n as u64 + 1;
        sender.build(b, n, "demo-agent", begin, 0, None).await?;
        sender
            .build(b, n, "demo-agent", begin, 0, Some(end))
            .await?;
    }
    println!(
        "sent {} builds of {} days as history; replaying the rest {}x faster",
        history.len(),
        opts.history_days,
        opts.speed
    );

    let _ = clock.started.set(Instant::now());
    let replay = replay(&sender, &world, &live, history.len() as u64);
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

/// The live part: what happens in the in-memory pool (which the service's controller
/// scales) is told to the service as Jenkins' plugins would tell it, in order.
async fn replay(
    sender: &Sender,
    world: &SharedWorld,
    live: &[TraceBuild],
    numbered: u64,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut told = Told {
        sender,
        live,
        numbered,
        running: HashMap::new(),
        queued_at: HashMap::new(),
    };
    loop {
        tick.tick().await;
        let (done, happened, starts) = {
            let mut w = world.lock();
            let (happened, starts) = w.take_log();
            let starts: Vec<(Start, String)> = starts
                .into_iter()
                .map(|s| (s, w.agent_name(s.agent)))
                .collect();
            let done = w.arrived == live.len() && w.running == 0 && w.queue.is_empty();
            (done, happened, starts)
        };
        let mut starts = starts.into_iter().peekable();
        for (k, &(at, h)) in happened.iter().enumerate() {
            told.happened(at, h).await?;
            // Starts at an instant follow everything that happened at it.
            if happened.get(k + 1).is_some_and(|(next, _)| *next == at) {
                continue;
            }
            while let Some((s, agent)) = starts.next_if(|(s, _)| s.at <= at) {
                told.started(s, agent).await?;
            }
        }
        for (s, agent) in starts {
            told.started(s, agent).await?;
        }
        if done {
            return Ok(());
        }
    }
}

/// What the service has been told of the live part.
struct Told<'a> {
    sender: &'a Sender,
    live: &'a [TraceBuild],
    /// Builds numbered before the live part.
    numbered: u64,
    /// Each running build's start and agent.
    running: HashMap<usize, (i64, String)>,
    queued_at: HashMap<usize, i64>,
}

impl Told<'_> {
    async fn happened(&mut self, at: i64, h: Happened) -> anyhow::Result<()> {
        match h {
            Happened::Arrived(i) => {
                self.queued_at.insert(i, at);
                self.sender
                    .queue(i as u64 + 1, "entered_waiting", at, None)
                    .await
            }
            Happened::Finished(i) => match self.running.remove(&i) {
                Some((begin, agent)) => {
                    let n = self.numbered + i as u64 + 1;
                    self.sender
                        .build(&self.live[i], n, &agent, begin, 0, Some(at))
                        .await
                }
                None => Ok(()),
            },
            Happened::Ready(_) => Ok(()),
        }
    }

    /// A build left the queue and started on `agent`.
    async fn started(&mut self, s: Start, agent: String) -> anyhow::Result<()> {
        let queued = self.queued_at.get(&s.build).copied().unwrap_or(s.at);
        self.sender
            .queue(s.build as u64 + 1, "left", queued, Some(s.at))
            .await?;
        let n = self.numbered + s.build as u64 + 1;
        self.sender
            .build(&self.live[s.build], n, &agent, s.at, s.at - queued, None)
            .await?;
        self.running.insert(s.build, (s.at, agent));
        Ok(())
    }
}
