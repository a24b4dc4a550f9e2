//! Two service processes on one PostgreSQL, the fake Jenkins and the fake Kubernetes API
//! server: one leads and scales, both take webhooks; when the leader is killed, or cut off
//! from what holds the lead (the Lease's API server, or PostgreSQL), it stops acting
//! within the renew deadline and the other takes over.

use crate::fake_jenkins::{self, FakeJenkins};
use crate::fake_kube::{FakeKube, Fault};
use crate::helpers::{TOKEN, free_port, fresh_postgres_url};
use crate::scaling::{NS, eventually};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Every replica signs and checks tokens with the same key.
const JWT_SECRET: &str = "a-secret-every-replica-shares-0123456789";

pub struct Replica {
    pub name: String,
    pub child: Child,
    pub base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` with the shared settings in `config` and this replica's `env`.
pub fn start(
    config: &std::path::Path,
    data: &std::path::Path,
    name: &str,
    env: &[(&str, String)],
) -> Replica {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data.join(name))
        .env("AUTOPILOT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "AUTOPILOT_JENKINS__CONTROLLERS__PROD__API_TOKEN",
            fake_jenkins::API_TOKEN,
        )
        .env("POD_NAME", name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the service");
    Replica {
        name: name.to_string(),
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The settings both replicas share: `election` is the leader_election section, `url` the
/// store (empty for the one in `database`).
fn write_settings(
    dir: &std::path::Path,
    db_url: &str,
    election: &str,
    kubeconfig: &std::path::Path,
    jenkins: &FakeJenkins,
) -> std::path::PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("service.yaml"),
        format!(
            "database:\n  url: \"{db_url}\"\nwebhook:\n  token: \"{TOKEN}\"\n\
             auth:\n  jwt_secret: \"{JWT_SECRET}\"\n\
             leader_election: {election}\n\
             kubernetes: {{mode: apply, kubeconfig: \"{}\", timeout: 2s}}\n\
             jenkins:\n  controllers:\n    prod: {{url: \"{}\", user: {}, timeout: 2s}}\n\
             scaling:\n  reconcile_interval: 1s\n  pools:\n    linux: {{controller: prod, label: linux, namespace: {NS}, \
             deployment: agent-linux, executors_per_agent: 1, min: 1, max: 10}}\n",
            kubeconfig.display(),
            jenkins.url,
            fake_jenkins::USER
        ),
    )
    .unwrap();
    config
}

pub async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

pub async fn role(client: &reqwest::Client, r: &Replica) -> Option<String> {
    get(client, format!("{}/api/v1/status", r.base))
        .await
        .and_then(|s| s["role"].as_str().map(str::to_string))
}

/// Waits (briefly) until a metric reads `want`: a counter is raised just after the change
/// the test saw.
async fn metric_becomes(client: &reqwest::Client, r: &Replica, line: &str, want: Option<i64>) {
    let mut last = None;
    for _ in 0..100 {
        last = metric(client, r, line).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{line}: {last:?}, not {want:?}");
}

async fn metric(client: &reqwest::Client, r: &Replica, line: &str) -> Option<i64> {
    crate::helpers::metric_at(client, &r.base, line).await
}

/// Waits until exactly one replica leads and every one names it; returns its index.
pub async fn one_leader(
    client: &reqwest::Client,
    replicas: &[&Replica],
    within: Duration,
) -> usize {
    let mut leader = 0;
    eventually("one leader, known to all", within, async || {
        let mut roles = Vec::new();
        for r in replicas {
            match get(client, format!("{}/api/v1/status", r.base)).await {
                Some(s) => roles.push(s),
                None => return false,
            }
        }
        let leaders: Vec<usize> = (0..roles.len())
            .filter(|&i| roles[i]["role"] == "leader")
            .collect();
        if leaders.len() == 1
            && roles
                .iter()
                .all(|s| s["leader"] == roles[leaders[0]]["identity"])
        {
            leader = leaders[0];
            true
        } else {
            false
        }
    })
    .await;
    leader
}

/// The leader was cut off just now: how long until it stopped leading, and until the
/// other led.
async fn hand_over(
    client: &reqwest::Client,
    cut: &Replica,
    other: &Replica,
) -> (Duration, Duration) {
    let at = Instant::now();
    eventually(
        "the cut-off leader stops leading",
        Duration::from_secs(10),
        async || role(client, cut).await.as_deref() == Some("follower"),
    )
    .await;
    let stopped = at.elapsed();
    eventually("the other leads", Duration::from_secs(15), async || {
        role(client, other).await.as_deref() == Some("leader")
    })
    .await;
    (stopped, at.elapsed())
}

/// Waits until the pool has `want` agents.
async fn until_agents(kube: &FakeKube, want: i64) {
    eventually(
        &format!("the pool scaled to {want}"),
        Duration::from_secs(15),
        async || kube.replicas(NS, "agent-linux") == want,
    )
    .await;
}

/// How long after `sent` the newest scale patch reached the API server.
fn since_last_patch(kube: &FakeKube, sent: std::time::SystemTime) -> Duration {
    kube.scale_patches()
        .last()
        .unwrap()
        .wall
        .duration_since(sent)
        .unwrap()
}

/// Jenkins lists one more build than there are agents; returns the size that asks for.
fn one_more(jenkins: &FakeJenkins, kube: &FakeKube) -> i64 {
    let want = kube.replicas(NS, "agent-linux") + 1;
    jenkins.set_queue("linux", 1..=(want as u64 - 1));
    want
}

pub async fn queue_webhook(client: &reqwest::Client, r: &Replica, id: u64) {
    let resp = client
        .post(format!(
            "{}/webhooks/cloudevents?controller=prod&token={TOKEN}",
            r.base
        ))
        .header("Content-Type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("q{id}"))
        .header("ce-type", "org.jenkinsci.queue.entered_waiting")
        .body(json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "entryTime": 1_700_000_000_000i64,
            "jenkinsQueueId": id, "status": "ENTERED_WAITING",
            "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on ‘linux’"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// A fake Jenkins with one agent, the fake API server with its Deployment, a fresh
/// database and the shared settings with `election`.
struct Rig {
    jenkins: FakeJenkins,
    kube: FakeKube,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db_url: String,
    client: reqwest::Client,
}

async fn rig(election: &str) -> Rig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (jenkins, kube) = (FakeJenkins::start().await, FakeKube::start().await);
    jenkins.add_agent("agent-linux-a", "linux", 1, 1);
    kube.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_postgres_url().await;
    let config = write_settings(
        dir.path(),
        &db_url,
        election,
        &kube.write_kubeconfig(dir.path()),
        &jenkins,
    );
    Rig {
        jenkins,
        kube,
        dir,
        config,
        db_url,
        client: reqwest::Client::new(),
    }
}

impl Rig {
    fn start(&self, name: &str, env: &[(&str, String)]) -> Replica {
        start(&self.config, self.dir.path(), name, env)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_replica_leads_and_the_other_takes_over_when_it_dies() {
    let r = rig("{mode: postgres, retry_every: 300ms, renew_deadline: 2s}").await;
    let (jenkins, kube, client) = (&r.jenkins, &r.kube, &r.client);
    let mut replicas = vec![r.start("replica-a", &[]), r.start("replica-b", &[])];
    let li = one_leader(
        client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    let fi = 1 - li;
    assert_eq!(
        metric(client, &replicas[li], "autopilot_leader").await,
        Some(1)
    );
    assert_eq!(
        metric(client, &replicas[fi], "autopilot_leader").await,
        Some(0)
    );

    // Builds queue; the follower takes the webhook, the leader scales.
    jenkins.set_queue("linux", 1..=2);
    queue_webhook(client, &replicas[fi], 1).await;
    until_agents(kube, 3).await;
    let ups = r#"autopilot_pool_scale_events_total{direction="up",pool="linux"}"#;
    metric_becomes(client, &replicas[li], ups, Some(1)).await;
    assert_eq!(
        metric(client, &replicas[fi], ups).await,
        None,
        "the follower never scales"
    );

    // The leader dies (kill -9): the other takes over within the lease and scales.
    replicas[li].child.kill().unwrap();
    replicas[li].child.wait().unwrap();
    let killed = Instant::now();
    let survivor = replicas.remove(fi);
    eventually("the survivor leads", Duration::from_secs(15), async || {
        role(client, &survivor).await.as_deref() == Some("leader")
    })
    .await;
    let took = killed.elapsed();
    jenkins.set_queue("linux", 1..=4);
    until_agents(kube, 5).await;
    assert!(took < Duration::from_secs(15), "took over in {took:?}");
    println!("postgres: the survivor led {took:?} after the leader was killed");
}

/// A TCP relay to PostgreSQL that a test can cut: while cut it stops moving bytes either
/// way (the connections stay open, as in a network partition).
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
}

async fn relay(to: std::net::SocketAddr) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pipe(ri, wo, c.clone()));
            tokio::spawn(pipe(ro, wi, c.clone()));
        }
    });
    Relay { port, cut }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while cut.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a cut are held back, not delivered.
        while cut.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_leader_cut_off_from_the_database_stops_and_the_other_takes_over() {
    let r =
        rig("{mode: postgres, retry_every: 300ms, renew_deadline: 1s, lease_duration: 3s}").await;
    let (jenkins, kube, client) = (&r.jenkins, &r.kube, &r.client);
    let parsed = url::Url::parse(&r.db_url).unwrap();
    let pg: std::net::SocketAddr = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    )
    .parse()
    .unwrap();
    let relays = [relay(pg).await, relay(pg).await];
    let through = |relay: &Relay| {
        let mut u = parsed.clone();
        u.set_port(Some(relay.port)).unwrap();
        u.to_string()
    };
    let replicas = [
        r.start(
            "replica-a",
            &[("AUTOPILOT_DATABASE__URL", through(&relays[0]))],
        ),
        r.start(
            "replica-b",
            &[("AUTOPILOT_DATABASE__URL", through(&relays[1]))],
        ),
    ];
    let li = one_leader(
        client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    let fi = 1 - li;

    // The leader's way to the database goes silent.
    relays[li].cut.store(true, Ordering::Relaxed);
    let (stopped, took) = hand_over(client, &replicas[li], &replicas[fi]).await;
    let patches_before = kube.scale_patches().len();
    jenkins.set_queue("linux", 1..=3);
    queue_webhook(client, &replicas[fi], 7).await;
    until_agents(kube, 4).await;
    println!(
        "postgres cut: the leader stopped {stopped:?} after the cut; the other led after {took:?}"
    );
    // Renewals every 300 ms, deadline 1 s: stopped within the deadline (plus the status
    // poll on a loaded machine), well before the server could free the lock (3 s).
    assert!(
        stopped < Duration::from_millis(2_000),
        "stopped after {stopped:?}"
    );
    // The server ends the silent session after lease_duration (3 s): not before.
    assert!(took >= Duration::from_secs(2), "took over after {took:?}");
    assert!(kube.scale_patches().len() > patches_before);
}

/// The server ends the leader's lock session (an administrator's pg_terminate_backend, a
/// connection killed by a proxy): the lock is free at once, while the old leader learns
/// it only at its next check. Both replicas are watched together every 20 ms across three
/// hand-overs: never do both say they lead. Before, the new leader acted at once and two
/// led for up to a check period (2 of 4 tries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_leader_whose_session_is_ended_stops_before_the_other_leads() {
    let r = rig("{mode: postgres, retry_every: 1s, renew_deadline: 2s}").await;
    let client = &r.client;
    let replicas = [r.start("replica-a", &[]), r.start("replica-b", &[])];
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&r.db_url)
        .await
        .unwrap();
    for round in 0..3 {
        let li = one_leader(
            client,
            &[&replicas[0], &replicas[1]],
            Duration::from_secs(30),
        )
        .await;
        let ended: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(format!("autopilot:{}", replicas[li].name))
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(ended, 1, "round {round}: the leader's lock session");
        let at = Instant::now();
        let mut handed = false;
        while at.elapsed() < Duration::from_secs(5) {
            let (a, b) = tokio::join!(role(client, &replicas[0]), role(client, &replicas[1]));
            assert!(
                !(a.as_deref() == Some("leader") && b.as_deref() == Some("leader")),
                "round {round}: both lead {:?} after the session ended",
                at.elapsed()
            );
            handed |= a.is_some() && b.is_some() && a != b;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(handed, "round {round}: someone leads again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_one_replica_leads_and_stops_within_the_renew_deadline_when_cut_off() {
    let r = rig("{mode: lease, lease_duration: 3s, retry_every: 1s, renew_deadline: 2s, lease_name: autopilot-leader}").await;
    let (jenkins, kube, client, dir) = (&r.jenkins, &r.kube, &r.client, r.dir.path());
    let doors = [kube.door(), kube.door()];
    let kubeconfig = |i: usize| {
        (
            "AUTOPILOT_KUBERNETES__KUBECONFIG",
            doors[i].write_kubeconfig(dir).display().to_string(),
        )
    };
    let mut replicas = vec![
        r.start("replica-a", &[kubeconfig(0)]),
        r.start("replica-b", &[kubeconfig(1)]),
    ];
    let li = one_leader(
        client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    let fi = 1 - li;
    let lease = kube
        .lease(NS, "autopilot-leader")
        .expect("the Lease was created");
    assert_eq!(lease.spec["holderIdentity"], replicas[li].name);
    let status = get(client, format!("{}/api/v1/status", replicas[fi].base))
        .await
        .unwrap();
    assert_eq!(status["mode"], "lease");
    assert_eq!(status["lease"]["namespace"], NS);
    assert_eq!(status["lease"]["duration_seconds"], 3);

    // Both take webhooks; exactly one patches scale subresources.
    jenkins.set_queue("linux", 1..=2);
    queue_webhook(client, &replicas[fi], 1).await;
    until_agents(kube, 3).await;
    let doors_used = |since: usize| -> std::collections::BTreeSet<usize> {
        kube.scale_patches()[since..]
            .iter()
            .map(|r| r.door)
            .collect()
    };
    assert_eq!(doors_used(0), [doors[li].id].into());

    // The leader's API server answers 500: it stops at its next renewal, the other takes
    // the Lease once it runs out and scales.
    let mut leader = li;
    for fault in [Fault::Status(500), Fault::Hang] {
        let other = 1 - leader;
        doors[leader].set_fault(Some(fault));
        let (stopped, took) = hand_over(client, &replicas[leader], &replicas[other]).await;
        let since = kube.scale_patches().len();
        let want = one_more(jenkins, kube);
        queue_webhook(client, &replicas[leader], 10 + want as u64).await;
        until_agents(kube, want).await;
        assert_eq!(doors_used(since), [doors[other].id].into(), "{fault:?}");
        println!(
            "lease {fault:?}: the leader stopped {stopped:?} after the cut; the other led after {took:?}"
        );
        // Renewals every 1 s, deadline 2 s: stopped within the deadline (plus the status
        // poll on a loaded machine), before the Lease (3 s) could run out.
        assert!(
            stopped < Duration::from_millis(2_900),
            "{fault:?}: stopped after {stopped:?}"
        );
        // The Lease (3 s) ran out before the other took it.
        assert!(
            took >= Duration::from_secs(1),
            "{fault:?}: took over after {took:?}"
        );
        // Its access comes back: it stays a follower, the Lease is the other's.
        doors[leader].set_fault(None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            role(client, &replicas[leader]).await.as_deref(),
            Some("follower")
        );
        assert_eq!(
            kube.lease(NS, "autopilot-leader").unwrap().spec["holderIdentity"],
            replicas[other].name
        );
        leader = other;
    }

    // kill -9 of the leader: the other leads within the lease duration and scales.
    replicas[leader].child.kill().unwrap();
    replicas[leader].child.wait().unwrap();
    let killed = Instant::now();
    let survivor = replicas.remove(1 - leader);
    eventually("the survivor leads", Duration::from_secs(15), async || {
        role(client, &survivor).await.as_deref() == Some("leader")
    })
    .await;
    let took = killed.elapsed();
    println!("lease: the survivor led {took:?} after the leader was killed");
    assert!(took < Duration::from_secs(15), "took over in {took:?}");
    until_agents(kube, one_more(jenkins, kube)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_a_leader_that_shuts_down_hands_over_at_once() {
    let r = rig("{mode: lease, lease_duration: 10s, retry_every: 1s, renew_deadline: 5s}").await;
    let client = &r.client;
    let replicas = [r.start("replica-a", &[]), r.start("replica-b", &[])];
    let li = one_leader(
        client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    // SIGTERM, as a rolling update sends: the leader gives the Lease up on its way out.
    let pid = replicas[li].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    eventually("the other leads", Duration::from_secs(20), async || {
        role(client, &replicas[1 - li]).await.as_deref() == Some("leader")
    })
    .await;
    let took = stopped.elapsed();
    println!("lease: handed over {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(8),
        "a Lease given up is taken before it would run out (10 s): {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_wakes_the_leaders_pool_at_once_through_the_store() {
    let r = rig("{mode: postgres, retry_every: 300ms, renew_deadline: 2s}").await;
    let (jenkins, kube, client) = (&r.jenkins, &r.kube, &r.client);
    let (replicas, li) = waking_only(&r).await;
    let follower = &replicas[1 - li];
    assert_eq!(kube.replicas(NS, "agent-linux"), 1);

    // A queue webhook at the follower.
    jenkins.set_queue("linux", 1..=2);
    let sent = std::time::SystemTime::now();
    queue_webhook(client, follower, 1).await;
    until_agents(kube, 3).await;
    let queue_ms = since_last_patch(kube, sent);

    // A pipeline's announcement at the follower: nothing in Jenkins' queue shows it yet.
    let mut auth = jenkins_autopilot::config::Settings::load(None, Vec::new())
        .unwrap()
        .auth;
    auth.jwt_secret = Some(JWT_SECRET.to_string().into());
    let token = jenkins_autopilot::tokens::TokenKeys::load(&auth, r.dir.path())
        .unwrap()
        .issue(
            "test",
            &[jenkins_autopilot::tokens::Scope::BuildsWrite],
            Duration::from_secs(600),
            chrono::Utc::now().timestamp(),
        )
        .unwrap();
    // Jenkins lists 2 waiting; 3 announced count as 3 (the larger, not the sum).
    let sent = std::time::SystemTime::now();
    for _ in 0..3 {
        let resp = client
            .post(format!("{}/api/v1/controllers/prod/waiting", follower.base))
            .bearer_auth(&token)
            .json(&json!({"label": "linux"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }
    until_agents(kube, 4).await;
    let announce_ms = since_last_patch(kube, sent);
    println!(
        "follower webhook -> leader's scale patch: {queue_ms:?}; follower announcement -> patch: {announce_ms:?}"
    );
    let ups = r#"autopilot_pool_scale_events_total{direction="up",pool="linux"}"#;
    metric_becomes(client, &replicas[li], ups, Some(2)).await;
    assert_eq!(metric(client, follower, ups).await, None);
    let sent_line = r#"autopilot_replica_wakeups_total{outcome="sent"}"#;
    metric_becomes(client, follower, sent_line, Some(4)).await;
    let received = r#"autopilot_replica_wakeups_total{outcome="received"}"#;
    metric_becomes(client, &replicas[li], received, Some(4)).await;
    // Sub-second, as a webhook at the leader itself.
    assert!(queue_ms < Duration::from_secs(1), "{queue_ms:?}");
    assert!(announce_ms < Duration::from_secs(1), "{announce_ms:?}");
}

/// Two replicas without a periodic reconcile within a test (only a wake-up scales), once
/// one leads and its first reconcile (on taking the lead) is stored; and which leads.
async fn waking_only(r: &Rig) -> ([Replica; 2], usize) {
    let hour = [("AUTOPILOT_SCALING__RECONCILE_INTERVAL", "1h".to_string())];
    let replicas = [r.start("replica-a", &hour), r.start("replica-b", &hour)];
    let li = one_leader(
        &r.client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    let (client, leader) = (&r.client, &replicas[li]);
    eventually(
        "the leader's first decision",
        Duration::from_secs(15),
        async || {
            get(
                client,
                format!(
                    "{}/api/v1/pools/linux/decisions?since=0&limit=1",
                    leader.base
                ),
            )
            .await
            .is_some_and(|p| p["decisions"][0]["outcome"].is_string())
        },
    )
    .await;
    (replicas, li)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_wake_up_listener_wakes_every_pool_at_once() {
    let r = rig("{mode: postgres, retry_every: 300ms, renew_deadline: 2s}").await;
    let (jenkins, kube, client) = (&r.jenkins, &r.kube, &r.client);
    let (replicas, li) = waking_only(&r).await;
    // Two builds wait; the webhooks that told of them reached a replica whose
    // notifications were lost with the listeners' connections.
    jenkins.set_queue("linux", 1..=2);
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&r.db_url)
        .await
        .unwrap();
    let cut = sqlx::query(
        "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(cut.len(), 2, "one listener per replica");
    until_agents(kube, 3).await;
    let lost = r#"autopilot_replica_wakeups_total{outcome="lost"}"#;
    metric_becomes(client, &replicas[li], lost, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_a_scale_patch_in_flight_when_the_lead_moves_does_not_undo_the_new_leaders() {
    let r = rig("{mode: lease, lease_duration: 3s, retry_every: 1s, renew_deadline: 2s}").await;
    let (jenkins, kube, client) = (&r.jenkins, &r.kube, &r.client);
    let doors = [kube.door(), kube.door()];
    // Only wake-ups and a new leader's first reconcile scale here.
    let env = |i: usize| {
        [
            ("AUTOPILOT_SCALING__RECONCILE_INTERVAL", "1h".to_string()),
            (
                "AUTOPILOT_KUBERNETES__KUBECONFIG",
                doors[i]
                    .write_kubeconfig(r.dir.path())
                    .display()
                    .to_string(),
            ),
        ]
    };
    let replicas = [r.start("replica-a", &env(0)), r.start("replica-b", &env(1))];
    let li = one_leader(
        client,
        &[&replicas[0], &replicas[1]],
        Duration::from_secs(30),
    )
    .await;
    let fi = 1 - li;
    let scale = format!("PATCH /apis/apps/v1/namespaces/{NS}/deployments/agent-linux/scale");
    let delay = Duration::from_secs(12);

    // The leader decides to grow; its scale patch reaches the API server, which carries it
    // out 12 s later (a slow network; the leader has long given up on it by then).
    doors[li].set_faults(vec![(Some(scale.as_str()), Fault::Delay(delay))]);
    jenkins.set_queue("linux", 1..=3);
    queue_webhook(client, &replicas[li], 1).await;
    eventually(
        "the leader's scale patch arrived",
        Duration::from_secs(10),
        async || kube.scale_patches().iter().any(|p| p.door == doors[li].id),
    )
    .await;
    let arrived = Instant::now();
    let stale = kube
        .scale_patches()
        .into_iter()
        .find(|p| p.door == doors[li].id)
        .unwrap();
    let stale_replicas = stale.body["spec"]["replicas"].as_i64().unwrap();
    assert!(stale_replicas > 2, "{}", stale.body);
    assert!(
        stale.body["metadata"]["resourceVersion"].is_string(),
        "the patch carries the resourceVersion its decision read: {}",
        stale.body
    );

    // Now it loses the lead (its Lease writes fail) while that patch is in flight, and
    // the demand drops: the new leader decides fewer and applies it.
    doors[li].set_faults(vec![
        (Some(scale.as_str()), Fault::Delay(delay)),
        (Some("/leases/"), Fault::Status(500)),
    ]);
    jenkins.set_queue("linux", 1..=1);
    eventually("the other leads", Duration::from_secs(10), async || {
        role(client, &replicas[fi]).await.as_deref() == Some("leader")
    })
    .await;
    eventually(
        "the new leader scaled",
        Duration::from_secs(5),
        async || kube.replicas(NS, "agent-linux") > 1,
    )
    .await;
    let new = kube.replicas(NS, "agent-linux");
    let decided = get(
        client,
        format!(
            "{}/api/v1/pools/linux/decisions?since=0&limit=3",
            replicas[fi].base
        ),
    )
    .await;
    assert!(
        new < stale_replicas,
        "{new} vs the old decision's {stale_replicas}: {decided:?} {:?}",
        kube.scale_patches()
    );
    assert!(
        arrived.elapsed() < delay,
        "the new leader acted before the old patch was carried out"
    );

    // The old patch is carried out at last: its resourceVersion is stale, so it is refused
    // and the new leader's size stands.
    tokio::time::sleep(delay.saturating_sub(arrived.elapsed()) + Duration::from_secs(1)).await;
    assert_eq!(kube.replicas(NS, "agent-linux"), new);
    let from_old: Vec<_> = kube
        .scale_patches()
        .into_iter()
        .filter(|p| p.door == doors[li].id)
        .collect();
    assert_eq!(from_old.len(), 1, "the old leader sent nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_makes_its_own_tokens_under_election_says_so() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    // No webhook token, no JWT key: this replica makes its own.
    std::fs::write(
        config.join("service.yaml"),
        format!(
            "database:\n  url: \"{}\"\nleader_election: {{mode: postgres}}\nlogging: {{format: json}}\n",
            fresh_postgres_url().await
        ),
    )
    .unwrap();
    let port = free_port();
    let mut replica = Replica {
        name: "replica".into(),
        child: Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("AUTOPILOT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    // The log, until the service listens (the replica is killed when dropped, which ends
    // the reader if it never does).
    let stderr = replica.child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("listening");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines).await;
    drop(replica);
    let lines = lines.expect("the service started").unwrap();
    let warning = lines
        .iter()
        .find(|l| l.contains("secrets are made in this replica"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    assert!(
        warning.contains("webhook.token") && warning.contains("auth.jwt_secret"),
        "{warning}"
    );
}
