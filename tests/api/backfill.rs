//! Backfill of Jenkins' build history through the API, against the fake Jenkins with
//! folders, multibranch projects and builds pages shaped like real captures.

use crate::fake_jenkins::FakeJenkins;
use crate::scaling::{NS, Rig, eventually, pool, rig};
use jenkins_autopilot::config::KubernetesMode;
use jenkins_autopilot::tokens::Scope;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const FOLDER: &str = "com.cloudbees.hudson.plugins.folder.Folder";
const MULTIBRANCH: &str = "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject";
const PIPELINE: &str = "org.jenkinsci.plugins.workflow.job.WorkflowJob";
const FREESTYLE: &str = "hudson.model.FreeStyleProject";
const MIN: i64 = 60_000;

/// The node each job's builds ran on, and whether Jenkins kept their queue time.
fn node_of(job: &str, n: u64) -> (String, bool) {
    if job.starts_with("team-a/") {
        (format!("agent-linux-7d9f8-x{n}"), true)
    } else if [
        "team-b/app-0",
        "team-b/app-1",
        "team-b/app-2",
        "team-b/app-3",
    ]
    .contains(&job)
    {
        ("static-docker-1".into(), false)
    } else if job.starts_with("team-b/") {
        ("gone-node".into(), false)
    } else {
        (String::new(), false)
    }
}

/// 3 folders, 20 jobs (7 pipelines, 7 freestyle, a multibranch project of 6 branches),
/// 100 builds each, the newest first, one build every 20 minutes back from `now`.
fn history(j: &FakeJenkins, now: i64) -> Vec<String> {
    let mut s = j.state.lock().unwrap();
    let top = ["team-a", "team-b", "team-c"]
        .map(|f| (f.to_string(), FOLDER.to_string()))
        .to_vec();
    s.folders.insert(String::new(), top);
    let a: Vec<(String, String)> = (0..7)
        .map(|i| (format!("app-{i}"), PIPELINE.into()))
        .collect();
    let b: Vec<(String, String)> = (0..7)
        .map(|i| (format!("app-{i}"), FREESTYLE.into()))
        .collect();
    s.folders.insert("team-a".into(), a.clone());
    s.folders.insert("team-b".into(), b.clone());
    s.folders
        .insert("team-c".into(), vec![("svc".into(), MULTIBRANCH.into())]);
    let branches: Vec<(String, String)> = [
        "main",
        "feature%2Fx",
        "feature%2Fy",
        "release-1",
        "release-2",
        "dev",
    ]
    .iter()
    .map(|b| (b.to_string(), PIPELINE.into()))
    .collect();
    s.folders.insert("team-c/svc".into(), branches.clone());
    let mut jobs = Vec::new();
    jobs.extend(a.iter().map(|(n, _)| format!("team-a/{n}")));
    jobs.extend(b.iter().map(|(n, _)| format!("team-b/{n}")));
    jobs.extend(branches.iter().map(|(n, _)| format!("team-c/svc/{n}")));
    for job in &jobs {
        let builds: Vec<Value> = (1..=100u64)
            .rev()
            .map(|n| {
                let (node, timed) = node_of(job, n);
                let mut actions = vec![json!({"_class": "hudson.model.CauseAction"}), json!({})];
                if timed {
                    actions.push(json!({"_class": "jenkins.metrics.impl.TimeInQueueAction",
                        "queuingDurationMillis": 4200, "blockedDurationMillis": 0}));
                }
                let running = job == "team-a/app-0" && n == 100;
                json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": n,
                    "timestamp": now - (101 - n as i64) * 20 * MIN, "duration": if running { 0 } else { 5 * MIN },
                    "result": if running { Value::Null } else { json!("SUCCESS") },
                    "builtOn": node, "queueId": 10_000 + n, "actions": actions})
            })
            .collect();
        s.history.insert(job.clone(), builds);
    }
    jobs
}

async fn backfill_rig() -> (Rig, Vec<String>, i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut jobs = Vec::new();
    let rig = rig(
        KubernetesMode::DryRun,
        |j, _| {
            jobs = history(j, now);
            j.add_agent("static-docker-1", "docker", 2, 0);
        },
        |s| {
            s.scaling
                .pools
                .insert("docker".into(), pool("docker", "agent-docker"));
        },
    )
    .await;
    (rig, jobs, now)
}

impl Rig {
    async fn start_backfill(&self, body: &Value) -> (u16, Value) {
        self.app
            .post_authed(
                "/api/v1/controllers/prod/backfill",
                &self.app.jwt(&[Scope::Admin]),
                body,
            )
            .await
    }

    /// Waits until the controller's backfill is no longer running; its progress.
    async fn backfill_ended(&self) -> Value {
        let mut last = Value::Null;
        eventually("the backfill ended", Duration::from_secs(60), async || {
            let (status, p) = self.app.get_json("/api/v1/controllers/prod/backfill").await;
            assert_eq!(status, 200, "{p}");
            last = p;
            last["state"] != "running"
        })
        .await;
        last
    }

    async fn build_of(&self, job: &str, n: u64) -> Value {
        self.app.build("prod", job, n).await
    }
}

#[tokio::test]
async fn a_backfill_lands_every_build_once_assigns_pools_and_survives_a_failing_jenkins() {
    let (rig, jobs, now) = backfill_rig().await;
    assert_eq!(jobs.len(), 20);
    // A webhook told of team-b/app-5 before: its past builds ran on the label it asked for.
    let resp = rig
        .app
        .post_webhook(
            "/webhooks/statistics?controller=prod",
            &json!({"ciUrl": "https://ci.example.com/", "jobName": "app-5", "fullJobName": "team-b/app-5",
                "number": 500, "slaveInfo": {"slaveName": "agent-linux-zz", "label": "linux", "executor": "0"},
                "startTime": now - MIN, "result": "INPROGRESS", "duration": 0, "queueTime": 1000,
                "buildUrl": "job/team-b/job/app-5/500/"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let known = rig.build_of("team-b/app-5", 500).await;
    assert_eq!(known["label"], "linux", "{known}");

    // Not for a token without admin, not for a controller the service does not know.
    let (status, _) = rig
        .app
        .post_authed(
            "/api/v1/controllers/prod/backfill",
            &rig.app.jwt(&[Scope::ReportsRead]),
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = rig
        .app
        .post_authed(
            "/api/v1/controllers/nope/backfill",
            &rig.app.jwt(&[Scope::Admin]),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    for (body, field) in [
        (json!({"since": "forever"}), "since"),
        (
            json!({"max_requests_per_second": 0}),
            "max_requests_per_second",
        ),
        // Above zero, yet one request in 10^292 years: it held the one backfill slot for
        // ever and panicked in the pacer.
        (
            json!({"max_requests_per_second": 1e-300}),
            "max_requests_per_second",
        ),
        (
            json!({"max_requests_per_second": 0.001}),
            "max_requests_per_second",
        ),
        (json!({"jobs": "[unclosed"}), "jobs"),
        (json!({"extra": true}), "extra"),
    ] {
        let (status, reply) = rig.start_backfill(&body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.to_string().contains(field), "{reply}");
    }

    // Jenkins fails mid-way: the run stops as failed, keeping what it read.
    rig.jenkins.state.lock().unwrap().fail_after = Some(25);
    let started = Instant::now();
    let (status, p) = rig
        .start_backfill(&json!({"since": "30d", "max_requests_per_second": 200}))
        .await;
    assert_eq!(status, 202, "{p}");
    // One at a time.
    let (status, _) = rig.start_backfill(&json!({"since": "30d"})).await;
    assert!(status == 503 || status == 202, "{status}");
    let failed = rig.backfill_ended().await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("502"),
        "{failed}"
    );
    let done_before = failed["jobs_done"].as_u64().unwrap();
    assert!(done_before > 0 && done_before < 20, "{failed}");

    // Jenkins answers again, slowly at first (timeouts, retried): the run resumes after
    // the jobs it finished and loses nothing.
    {
        let mut s = rig.jenkins.state.lock().unwrap();
        s.fail_after = None;
        s.slow_next = 2;
        s.slow = Duration::from_millis(800);
        s.request_times.clear();
    }
    let (status, p) = rig
        .start_backfill(&json!({"since": "30d", "max_requests_per_second": 200}))
        .await;
    assert_eq!(status, 202, "{p}");
    let done = rig.backfill_ended().await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["jobs_total"], 20);
    assert_eq!(done["jobs_done"], 20);
    assert_eq!(done["jobs_resumed"].as_u64(), Some(done_before), "{done}");
    let elapsed = started.elapsed();
    assert_eq!(rig.app.row_counts().await.builds, 2001);

    // The requests kept to the rate: n requests take at least (n - 1) / rate.
    let times = rig.jenkins.state.lock().unwrap().request_times.clone();
    let n = times.len();
    let span = times[n - 1].duration_since(times[0]);
    assert!(
        span >= Duration::from_secs_f64((n - 1) as f64 / 200.0 * 0.9),
        "{n} requests in {span:?}"
    );
    println!(
        "backfill of 2,000 builds in 20 jobs: {} requests in the resumed run, {elapsed:?} in all",
        done["requests"]
    );

    // Pools by the rules: the Deployment naming the pod, the node's labels, the job's
    // webhook-known label, else unknown.
    let b = rig.build_of("team-a/app-3", 50).await;
    assert_eq!(b["label"], "linux", "{b}");
    assert_eq!(b["node"], "agent-linux-7d9f8-x50");
    assert_eq!(
        b["queue_wait_ms"], 4200,
        "the Metrics plugin's time in queue"
    );
    assert_eq!(b["result"], "SUCCESS");
    assert_eq!(b["found_by"], "backfill");
    assert_eq!(b["duration_ms"], 5 * MIN);
    let b = rig.build_of("team-b/app-1", 50).await;
    assert_eq!(
        b["label"], "docker",
        "the node still exists, labelled docker: {b}"
    );
    assert!(
        b["queue_wait_ms"].is_null(),
        "no time in queue: unknown, not zero"
    );
    let b = rig.build_of("team-b/app-5", 50).await;
    assert_eq!(
        b["label"], "linux",
        "the label its webhook-known build asked for: {b}"
    );
    let b = rig.build_of("team-b/app-4", 50).await;
    assert!(b["label"].is_null(), "never guessed: {b}");
    assert_eq!(b["node"], "gone-node");
    let b = rig.build_of("team-c/svc/feature%252Fx", 10).await;
    assert_eq!(b["node"], "built-in", "{b}");
    assert!(b["label"].is_null());
    let running = rig.build_of("team-a/app-0", 100).await;
    assert_eq!(running["phase"], "started", "{running}");
    assert!(running["result"].is_null());

    // Again, and with webhooks for the same builds: every build once.
    let note = crate::helpers::payload::notification(
        "job/team-a/job/app-1/",
        "team-a/app-1",
        60,
        "COMPLETED",
        now,
        5 * MIN,
        Some("SUCCESS"),
    );
    assert_eq!(
        rig.app
            .post_webhook("/webhooks/notification?controller=prod", &note)
            .await
            .status()
            .as_u16(),
        200
    );
    let (status, _) = rig
        .start_backfill(&json!({"since": "30d", "max_requests_per_second": 200}))
        .await;
    assert_eq!(status, 202);
    let again = rig.backfill_ended().await;
    assert_eq!(again["state"], "done", "{again}");
    assert_eq!(again["builds_read"], 2000);
    assert_eq!(again["events_stored"], 0, "{again}");
    assert_eq!(rig.app.row_counts().await.builds, 2001);
    assert_eq!(
        rig.build_of("team-a/app-1", 60).await["found_by"],
        "webhook"
    );

    // What it unlocks, from the store: a report, a cost answer, the pool's frontier.
    let reader = rig.app.jwt(&[Scope::ReportsRead]);
    let (status, report) = rig
        .app
        .get_authed("/api/v1/reports/performance?range=30d", &reader)
        .await;
    assert_eq!(status, 200, "{report}");
    // Every backfilled build that finished (one still runs).
    assert!(report["builds"].as_u64().unwrap() >= 1999, "{report}");
    let (status, costs) = rig.app.get_authed("/api/v1/costs?range=30d", &reader).await;
    assert_eq!(status, 200, "{costs}");
    let (status, frontier) = rig
        .app
        .get_authed("/api/v1/pools/linux/frontier?range=30d", &reader)
        .await;
    assert_eq!(status, 200, "{frontier}");
    assert!(frontier["builds"].as_u64().unwrap() >= 700, "{frontier}");
    let (status, plan) = rig
        .app
        .post_authed(
            "/api/v1/costs/optimize",
            &reader,
            &json!({"target_savings": 20, "range": "30d"}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert!(
        plan["pools"].as_array().is_some_and(|p| !p.is_empty()),
        "{plan}"
    );
    let _ = NS;
}

/// None of the plugins retries a refused delivery: the repair re-reads recent history and
/// finds exactly the builds whose webhooks were lost.
#[tokio::test]
async fn the_repair_finds_exactly_the_builds_whose_webhooks_were_lost() {
    let (rig, _, now) = backfill_rig().await;
    // Webhooks delivered every build of team-a/app-2 in the last three hours but three.
    let recent: Vec<u64> = (92..=100).collect();
    let lost = [93u64, 96, 99];
    for &n in recent.iter().filter(|n| !lost.contains(n)) {
        let start = now - (101 - n as i64) * 20 * MIN;
        let body = json!({"ciUrl": "https://ci.example.com/", "jobName": "app-2", "fullJobName": "team-a/app-2",
            "number": n, "slaveInfo": {"slaveName": format!("agent-linux-7d9f8-x{n}"), "label": "linux", "executor": "0"},
            "startTime": start, "result": "INPROGRESS", "duration": 0, "queueTime": 4200,
            "buildUrl": format!("job/team-a/job/app-2/{n}/")});
        let resp = rig
            .app
            .post_webhook("/webhooks/statistics?controller=prod", &body)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (status, p) = rig
        .start_backfill(&json!({"since": "3h", "jobs": "team-a/app-2", "repair": true, "max_requests_per_second": 200}))
        .await;
    assert_eq!(status, 202, "{p}");
    let done = rig.backfill_ended().await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["source"], "repair");
    for n in recent {
        let b = rig.build_of("team-a/app-2", n).await;
        let expected = if lost.contains(&n) {
            "repair"
        } else {
            "webhook"
        };
        assert_eq!(b["found_by"], expected, "#{n}: {b}");
    }
    let metrics = rig.app.metrics().await;
    assert!(
        metrics.contains(r#"autopilot_repair_found_builds{controller="prod"} 3"#),
        "{metrics}"
    );
}

/// The CLI: the same backfill into a store of its own, with a dry run first.
#[tokio::test]
async fn the_backfill_command_reads_the_history_into_the_store() {
    let (rig, _, _) = backfill_rig().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jenkins.yaml"),
        format!(
            "jenkins:\n  controllers:\n    prod: {{url: \"{}\", user: {}, timeout: 2s}}\n\
             scaling:\n  pools:\n    linux: {{controller: prod, label: linux, namespace: ci-agents, deployment: agent-linux}}\n",
            rig.jenkins.url,
            crate::fake_jenkins::USER
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
        cmd.args([
            "backfill",
            "--controller",
            "prod",
            "--since",
            "30d",
            "--jobs",
            "team-c/*",
        ])
        .args(["--max-requests-per-second", "200", "--config"])
        .arg(dir.path())
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .env(
            "AUTOPILOT_JENKINS__CONTROLLERS__PROD__API_TOKEN",
            crate::fake_jenkins::API_TOKEN,
        );
        cmd
    };
    let mut dry = run(&["--dry-run"]);
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || dry.output())
        .await
        .unwrap()
        .unwrap();
    println!("dry run: {:?}", t.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("6 jobs (0 resumed), 600 builds read, 0 new") && stdout.contains("dry run"),
        "{stdout}"
    );
    let mut real = run(&[]);
    let out = tokio::task::spawn_blocking(move || real.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("600 builds read, 600 new"), "{stdout}");
    let mut settings =
        jenkins_autopilot::config::Settings::load(Some(dir.path()), Vec::new()).unwrap();
    settings.database = crate::helpers::database_settings(None);
    let store = jenkins_autopilot::store::Store::connect(&settings.database, &data)
        .await
        .unwrap();
    assert_eq!(store.row_counts().await.unwrap().builds, 600);
    store.close().await;

    // Every job, into another store, at 50 requests per second: the figure for the docs.
    let mut all = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    all.args([
        "backfill",
        "--controller",
        "prod",
        "--since",
        "30d",
        "--max-requests-per-second",
        "50",
    ])
    .arg("--config")
    .arg(dir.path())
    .arg("--data-dir")
    .arg(dir.path().join("all"))
    .env(
        "AUTOPILOT_JENKINS__CONTROLLERS__PROD__API_TOKEN",
        crate::fake_jenkins::API_TOKEN,
    );
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || all.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("20 jobs (0 resumed), 2000 builds read, 2000 new"),
        "{stdout}"
    );
    println!("{} in {:?}", stdout.trim(), t.elapsed());

    // The pool's frontier on the backfilled history, with no trace.
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    sim.args([
        "simulate",
        "--from-store",
        "--pool",
        "linux",
        "--frontier",
        "--range",
        "30d",
    ])
    .arg("--config")
    .arg(dir.path())
    .arg("--data-dir")
    .arg(dir.path().join("all"));
    let out = tokio::task::spawn_blocking(move || sim.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "699 recorded builds of pool linux (699 replayed); its current settings: queue"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\ncurrent ") && stdout.contains("\nwarm "),
        "{stdout}"
    );
    let mut none = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    none.args(["simulate", "--from-store", "--pool", "nope", "--frontier"])
        .arg("--config")
        .arg(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("all"));
    let out = tokio::task::spawn_blocking(move || none.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pool \"nope\""));
}

/// A running backfill is stopped by DELETE and ends as cancelled, in its progress and in
/// the store; a new request then starts afresh (a cancelled run is not resumed).
#[tokio::test]
async fn a_backfill_is_cancelled_on_request() {
    let (rig, _jobs, _now) = backfill_rig().await;
    let admin = rig.app.jwt(&[Scope::Admin]);
    let delete = async |app: &crate::helpers::TestApp| {
        let resp = app
            .client
            .delete(app.url("/api/v1/controllers/prod/backfill"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    };
    assert_eq!(delete(&rig.app).await, 404, "nothing runs yet");
    // Two requests a second: 20 jobs would take minutes.
    let (status, started) = rig
        .start_backfill(&json!({"since": "30d", "max_requests_per_second": 2}))
        .await;
    assert_eq!(status, 202, "{started}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let unauthorised = rig
        .app
        .client
        .delete(rig.app.url("/api/v1/controllers/prod/backfill"))
        .bearer_auth(rig.app.jwt(&[Scope::ReportsRead]))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 403);
    assert_eq!(delete(&rig.app).await, 202);
    let ended = rig.backfill_ended().await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    // The slot is free again: a new request is taken, as a new run.
    let (status, again) = rig
        .start_backfill(&json!({"since": "30d", "max_requests_per_second": 200}))
        .await;
    assert_eq!(status, 202, "{again}");
    let done = rig.backfill_ended().await;
    assert_eq!(done["state"], "done", "{done}");
    assert_ne!(
        done["run_id"], ended["run_id"],
        "a cancelled run is not resumed"
    );
}

/// A run the process left `running` (killed) reads `interrupted` after a restart; a
/// request reaching further back than an unfinished run replaces it, one reaching as far
/// or less resumes it from its own instant.
#[tokio::test]
async fn an_interrupted_run_is_marked_at_start_and_a_resume_honours_its_range() {
    use crate::helpers::{Db, spawn_with, test_settings};
    use jenkins_autopilot::domain::{ControllerName, Timestamp};
    let (settings, dir) = test_settings(Db::Sqlite).await;
    let store = jenkins_autopilot::store::Store::connect(&settings.database, dir.path())
        .await
        .unwrap();
    let prod = ControllerName::parse("prod").unwrap();
    let at = |ms: i64| Timestamp::from_millis(ms).unwrap();
    let t0 = 1_700_000_000_000;
    let (first, _) = store
        .backfill_resume_or_start(&prod, at(t0), "*", "me", at(t0 + 1))
        .await
        .unwrap();
    // As far back or less: the same run, from the new instant.
    let (resumed, _) = store
        .backfill_resume_or_start(&prod, at(t0 + 3_600_000), "*", "me", at(t0 + 2))
        .await
        .unwrap();
    assert_eq!(resumed.id, first.id);
    assert_eq!(resumed.since, t0 + 3_600_000);
    // Further back: a new run; the old one is superseded.
    let (wider, _) = store
        .backfill_resume_or_start(&prod, at(t0 - 86_400_000), "*", "me", at(t0 + 3))
        .await
        .unwrap();
    assert_ne!(wider.id, first.id);
    let runs = store.backfill_runs(&prod, 10).await.unwrap();
    let state_of = |id: i64| runs.iter().find(|r| r.id == id).unwrap().state.clone();
    assert_eq!(state_of(first.id), "superseded");
    assert_eq!(state_of(wider.id), "running");
    store.close().await;

    // The process that ran it is gone: the next start says so.
    let app = spawn_with(settings).await;
    let store = jenkins_autopilot::store::Store::connect(&app.settings.database, dir.path())
        .await
        .unwrap();
    let runs = store.backfill_runs(&prod, 10).await.unwrap();
    let run = runs.iter().find(|r| r.id == wider.id).unwrap();
    assert_eq!(run.state, "interrupted", "{runs:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("stopped while it ran"),
        "{run:?}"
    );
}
