//! Store faults heal without a restart: a full disk (SQLite on a small tmpfs) and a
//! PostgreSQL that goes away and comes back. Nothing acknowledged is lost, nothing refused
//! is half-written, and `/readyz` tells the truth meanwhile.

use crate::helpers::{Db, TestApp, payload, spawn_with, test_settings};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A tmpfs of `mib` MiB mounted on a temporary directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs failed: the full-disk test needs root (CI runs as root)"
        );
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A build with about `kib` KiB of parameters (8 KiB values, as Jenkins may send them).
fn big_build(number: u64, kib: usize) -> Value {
    let mut b = payload::notification(
        "job/app/",
        "app",
        number,
        "COMPLETED",
        1_700_000_000_000 + number as i64 * 1000,
        60_000,
        Some("SUCCESS"),
    );
    let params: serde_json::Map<String, Value> = (0..kib / 8)
        .map(|i| {
            // Distinct values, so no page compresses them away.
            let v: String = (0..8000)
                .map(|j| char::from(b'a' + ((i * 7 + j * 13 + number as usize) % 26) as u8))
                .collect();
            (format!("P{i}"), json!(v))
        })
        .collect();
    b["build"]["parameters"] = Value::Object(params);
    b
}

async fn wait_until_ready(app: &TestApp, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = app.get_json("/readyz").await;
        if status == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "/readyz still {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_with_507_and_heals_when_space_returns() {
    let disk = SmallDisk::mount(24);
    let (mut settings, _unused) = test_settings(Db::Sqlite).await;
    settings.server.data_dir = disk.dir.path().join("data");
    settings.server.min_free_disk_mib = 0;
    let app = spawn_with(settings).await;
    // Space that is given back later.
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![7u8; 12 << 20]).unwrap();

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 1..=200u64 {
        let resp = app.post_notification(&big_build(n, 400)).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        match status {
            200 => acknowledged.push(n),
            507 => {
                assert_eq!(body["error"], "insufficient_storage", "{body}");
                refused = Some(n);
                break;
            }
            other => panic!("build {n}: {other} {body}"),
        }
    }
    let refused = refused.expect("the disk filled up within 200 builds");
    assert!(!acknowledged.is_empty());
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(
        status, 503,
        "not ready while the writer cannot commit: {body}"
    );
    assert!(
        !body["detail"].as_str().unwrap().contains("SQL"),
        "no database text: {body}"
    );
    // Still full: still refused, with the same clear answer.
    let again = app.post_notification(&big_build(refused, 400)).await;
    assert_eq!(again.status(), 507);

    std::fs::remove_file(&filler).unwrap();
    wait_until_ready(&app, Duration::from_secs(15)).await;
    let resp = app.post_notification(&big_build(refused, 400)).await;
    assert_eq!(resp.status(), 200, "ingest heals without a restart");

    // Every acknowledged build is there; the refused one only from its later delivery.
    for n in acknowledged.iter().chain([&refused]) {
        let b = app.build("ci.example.com", "app", *n).await;
        assert_eq!(b["result"], "SUCCESS", "build {n}: {b}");
        assert_eq!(
            b["parameters"].as_object().unwrap().len(),
            50,
            "build {n} whole"
        );
    }
    let (status, _) = app
        .get_json(&format!(
            "/api/v1/builds/ci.example.com/app/{}",
            refused + 1
        ))
        .await;
    assert_eq!(status, 404, "nothing refused was half-written");
    drop(app);
}

/// A TCP proxy to PostgreSQL that can be cut (every connection closed, new ones
/// refused) and restored: the database going away and coming back.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test]
async fn a_postgres_that_goes_away_and_comes_back_heals_without_a_restart() {
    use secrecy::SecretString;
    let (mut settings, _dir) = test_settings(Db::Postgres).await;
    let url = crate::helpers::postgres_url(&settings);
    let authority = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let proxy = Proxy::start(authority.to_string()).await;
    settings.database.url = Some(SecretString::from(
        url.replace(authority, &format!("127.0.0.1:{}", proxy.port)),
    ));
    settings.database.read_timeout = Duration::from_secs(3);
    let app = spawn_with(settings).await;
    let post = |n: u64| {
        payload::notification(
            "job/app/",
            "app",
            n,
            "COMPLETED",
            1_700_000_000_000 + n as i64,
            1000,
            Some("SUCCESS"),
        )
    };
    assert_eq!(app.post_notification(&post(1)).await.status(), 200);

    proxy.set_up(false);
    let resp = app.post_notification(&post(2)).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(
        status == 500 || status == 503,
        "an event that cannot be stored is not acknowledged: {status} {body}"
    );
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no connection details reach the client: {body}"
    );
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "not ready while the database is away");

    proxy.set_up(true);
    wait_until_ready(&app, Duration::from_secs(20)).await;
    assert_eq!(app.post_notification(&post(3)).await.status(), 200);
    assert_eq!(app.post_notification(&post(2)).await.status(), 200);
    for n in 1..=3 {
        let b = app.build("ci.example.com", "app", n).await;
        assert_eq!(b["result"], "SUCCESS", "build {n}: {b}");
    }
}

/// An export request from a client that never reads its answer, with a receive buffer so
/// small that the service's writes stall after a few kilobytes.
async fn stalled_export(port: u16) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /api/v1/export?range=7d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn stalled_exports_and_a_crowd_of_heavy_reads_leave_webhooks_and_readiness_alone() {
    let app = crate::helpers::spawn_app().await;
    let now = chrono::Utc::now().timestamp_millis();
    // Enough builds that an export is far larger than the socket buffers.
    for chunk in (1..=3000u64).collect::<Vec<_>>().chunks(100) {
        let bodies: Vec<Value> = chunk
            .iter()
            .map(|n| {
                payload::notification(
                    "job/app/",
                    "app",
                    *n,
                    "COMPLETED",
                    now - 3_600_000 + *n as i64,
                    60_000,
                    Some("SUCCESS"),
                )
            })
            .collect();
        let posts = bodies.iter().map(|b| app.post_notification(b));
        for resp in futures_util::future::join_all(posts).await {
            assert_eq!(resp.status(), 200);
        }
    }
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_export(port).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A hundred heavy reads at once, beside webhooks and readiness checks.
    let heavy: Vec<_> = (0..100)
        .map(|i| {
            let path = match i % 3 {
                0 => "/api/v1/costs?range=7d",
                1 => "/api/v1/reports/performance?range=7d",
                _ => "/api/v1/export?range=7d",
            };
            let client = app.client.clone();
            let url = app.url(path);
            tokio::spawn(async move {
                let resp = client.get(url).send().await.unwrap();
                let status = resp.status().as_u16();
                let retry = resp.headers().contains_key("retry-after");
                let _ = resp.bytes().await;
                (status, retry)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for n in 0..200u64 {
        let started = Instant::now();
        let resp = app
            .post_notification(&payload::notification(
                "job/other/",
                "other",
                n + 1,
                "STARTED",
                now,
                0,
                None,
            ))
            .await;
        latencies.push(started.elapsed());
        assert_eq!(
            resp.status(),
            200,
            "webhook {n} while reads crowd the store"
        );
        if n % 40 == 0 {
            let (status, body) = app.get_json("/readyz").await;
            assert_eq!(status, 200, "ready while reads crowd the store: {body}");
        }
    }
    for h in heavy {
        let (status, retry) = h.await.unwrap();
        assert!(
            status == 200 || (status == 503 && retry),
            "a heavy read answers or is told to come back, never fails: {status}"
        );
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!("webhook p99 beside 8 stalled exports and 100 heavy reads: {p99:?}");
    // A debug build on a shared machine: the bound is loose; the release figures are in
    // the soak benchmark. Before, each webhook here waited 10 s and failed.
    assert!(p99 < Duration::from_secs(1), "webhook p99 {p99:?}");
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    drop(stalled);
}

/// Heavy reads are bounded in range before they start, and a cost answer over many jobs
/// keeps its costliest rows and sums the rest in one.
#[tokio::test]
async fn heavy_reads_are_bounded_in_range_and_answer_size() {
    let (settings, _dir) = crate::helpers::pool_settings(Db::Sqlite).await;
    let app = spawn_with(settings).await;
    // Two builds 98 years apart were enough to run a frontier for minutes.
    for (n, at) in [(1u64, 946_684_900_000i64), (2, 4_039_000_000_000)] {
        let resp = app
            .post_notification(&payload::notification(
                "job/app/",
                "app",
                n,
                "COMPLETED",
                at,
                60_000,
                Some("SUCCESS"),
            ))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let century = "946684800000..4102444700000";
    for path in [
        format!("/api/v1/pools/linux/frontier?range={century}"),
        format!("/api/v1/costs?range={century}"),
        format!("/api/v1/reports/performance?range={century}"),
        format!("/api/v1/export?range={century}"),
        "/api/v1/pools/linux/frontier?range=200d".to_string(),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], "range", "{path}: {body}");
    }

    let now = chrono::Utc::now().timestamp_millis();
    let bodies: Vec<Value> = (1..=30u64)
        .map(|n| {
            let job = format!("app-{n}");
            payload::notification(
                &format!("job/{job}/"),
                &job,
                1,
                "COMPLETED",
                now - 3_600_000,
                n as i64 * 60_000,
                Some("SUCCESS"),
            )
        })
        .collect();
    for resp in
        futures_util::future::join_all(bodies.iter().map(|b| app.post_notification(b))).await
    {
        assert_eq!(resp.status(), 200);
    }
    let (status, whole) = app.get_json("/api/v1/costs?range=24h&limit=1000").await;
    assert_eq!(status, 200, "{whole}");
    let (status, top) = app.get_json("/api/v1/costs?range=24h&limit=5").await;
    assert_eq!(status, 200, "{top}");
    let rows = top["breakdown"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{top}");
    assert_eq!(rows[0]["key"], "ci.example.com/app-30", "costliest first");
    assert_eq!(
        rows[5]["key"],
        format!(
            "({} others)",
            whole["breakdown"].as_array().unwrap().len() - 5
        )
    );
    let sum: f64 = rows
        .iter()
        .map(|r| r["cost"]["total"].as_f64().unwrap())
        .sum();
    let total = top["total"]["total"].as_f64().unwrap();
    assert!(
        (sum - total).abs() < 0.01,
        "rows add up to the total: {sum} vs {total}"
    );
    let (status, body) = app.get_json("/api/v1/costs?limit=0").await;
    assert_eq!((status, body["field"].clone()), (400, json!("limit")));
}

/// A pool with 3,000 builds over the last two weeks: its frontier replays them under
/// every setting, which takes a while in a test build.
async fn long_replay_app(settings: jenkins_autopilot::config::Settings) -> TestApp {
    let app = spawn_with(settings).await;
    let now = chrono::Utc::now().timestamp_millis();
    let builds: Vec<u64> = (1..=3_000).collect();
    for chunk in builds.chunks(100) {
        futures_util::future::join_all(chunk.iter().map(|&n| {
            crate::helpers::statistics_build(
                &app,
                "app",
                n,
                "linux",
                now - 14 * 86_400_000 + n as i64 * 400_000,
                (n as i64 % 5) * 30_000,
                600_000 + (n as i64 % 7) * 60_000,
                "SUCCESS",
            )
        }))
        .await;
    }
    app
}

async fn metric(app: &TestApp, name: &str) -> Option<i64> {
    crate::helpers::metric_at(&app.client, &app.address, name).await
}

/// A frontier whose client leaves stops at its next replay, and its slot comes back only
/// then. Before, the replay ran on to the end on a core of its own, for nobody, and the
/// slot was free again at once, so a client that kept retrying piled replays up.
#[tokio::test]
async fn a_replay_stops_when_its_client_leaves() {
    let (settings, _dir) = crate::helpers::pool_settings(Db::Sqlite).await;
    let app = long_replay_app(settings).await;
    let path = "/api/v1/pools/linux/frontier?range=15d";
    let at = Instant::now();
    let (status, whole) = app.get_json(path).await;
    let full = at.elapsed();
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["builds"], 3_000, "{whole}");
    assert_eq!(
        metric(&app, "autopilot_replays_stopped_total").await,
        Some(0)
    );
    // The same replay, left by its client once it runs.
    let asked = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(path));
        async move { client.get(url).send().await?.bytes().await }
    });
    let at = Instant::now();
    while metric(&app, "autopilot_replays_running").await != Some(1) {
        assert!(at.elapsed() < full * 2, "the second replay starts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    asked.abort();
    assert!(asked.await.is_err(), "the replay outlasts its client");
    let at = Instant::now();
    loop {
        let (stopped, running) = (
            metric(&app, "autopilot_replays_stopped_total").await,
            metric(&app, "autopilot_replays_running").await,
        );
        if stopped == Some(1) && running == Some(0) {
            break;
        }
        assert!(
            at.elapsed() < full * 2,
            "stopped {stopped:?}, running {running:?} after {:?}",
            at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "a replay of {full:?} stopped {:?} after its client left",
        at.elapsed()
    );
}

/// SIGTERM while a replay runs: the replay stops at once and the process ends, instead of
/// the drain waiting for it (10 s) and the runtime then waiting for its thread.
#[tokio::test]
async fn sigterm_stops_a_running_replay_at_once() {
    let (settings, dir) = crate::helpers::pool_settings(Db::Sqlite).await;
    long_replay_app(settings).await.stop().await;
    let (mut child, base) = serve_process(
        dir.path(),
        "scaling:\n  reconcile_interval: 1h\n  decision_retention: 36500d\n  pools:\n    linux: \
         {controller: prod, label: linux, namespace: ci, deployment: agents, \
         agent: {cpu: '1', memory: 2Gi}}\n",
        std::process::Stdio::null(),
    );
    let client = reqwest::Client::new();
    let metric = async |name: &str| crate::helpers::metric_at(&client, &base, name).await;
    let started = Instant::now();
    while metric("autopilot_replays_running").await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service starts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let frontier = format!("{base}/api/v1/pools/linux/frontier?range=15d");
    let at = Instant::now();
    let whole: Value = client
        .get(&frontier)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let full = at.elapsed();
    assert_eq!(whole["builds"], 3_000, "{whole}");
    // The same replay again; once it runs, SIGTERM.
    let asked = tokio::spawn({
        let (client, frontier) = (client.clone(), frontier.clone());
        async move {
            match client.get(&frontier).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await;
                    (status, body.ok().map(|b| b.to_vec()))
                }
                Err(_) => (0, None),
            }
        }
    });
    while metric("autopilot_replays_running").await != Some(1) {
        assert!(at.elapsed() < full * 3, "the second replay starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, ended) = terminate(&mut child, full * 3 + Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    // The client was told to come back (503), or its answer was cut: never a whole one.
    let (code, body) = asked.await.unwrap();
    let whole_answer = code == 200
        && body
            .as_deref()
            .is_some_and(|b| serde_json::from_slice::<Value>(b).is_ok());
    assert!(!whole_answer, "{code} {body:?}");
    println!("SIGTERM during a replay of {full:?}: the service ended {ended:?} later");
    assert!(
        ended < full / 2,
        "ended {ended:?} after SIGTERM; the replay takes {full:?}"
    );
}

/// SIGTERM during a webhook flood, as a rolling update sends: every webhook answered 200
/// is in the store afterwards, the process exits 0 within the grace period (Kubernetes'
/// default is 30 s), and the pools' loops and the leader's jobs were stopped before the
/// store closed (the log says nothing of a closed pool).
#[tokio::test]
async fn sigterm_during_a_webhook_flood_loses_no_acknowledged_event() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("service.log");
    let (mut child, base) = serve_process(
        dir.path(),
        "logging: {filter: info}\nscaling:\n  reconcile_interval: 1s\n  pools:\n    linux: \
         {controller: prod, label: linux, namespace: ci, deployment: agents}\n",
        std::fs::File::create(&log).unwrap().into(),
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service starts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sixteen senders, each its own job, one finished build after another, until the
    // service stops answering.
    let senders: Vec<_> = (0..16)
        .map(|s| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for number in 1.. {
                    let job = format!("flood-{s}");
                    let body = payload::notification(
                        &format!("job/{job}/"),
                        &job,
                        number,
                        "FINALIZED",
                        1_700_000_000_000 + number as i64 * 1000,
                        500,
                        Some("SUCCESS"),
                    );
                    let sent = client
                        .post(format!(
                            "{base}/webhooks/notification?token={}",
                            crate::helpers::TOKEN
                        ))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => acknowledged.push((job, number)),
                        // Refused while stopping (503) or cut: the sender would retry.
                        Ok(_) => {}
                        Err(e) if e.is_connect() => break,
                        Err(_) => {}
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, ended) = terminate(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(
        acknowledged.len() > 100,
        "the flood ran: {} acknowledged",
        acknowledged.len()
    );
    let mut db = crate::helpers::sqlite_in(dir.path()).await;
    let stored: std::collections::BTreeSet<(String, i64)> =
        sqlx::query_as::<_, (String, i64)>("SELECT job, number FROM builds")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(job, n)| !stored.contains(&(job.clone(), *n as i64)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged builds are not in the store: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("writer stopped: every queued event committed"),
        "the write queue was drained: {text}"
    );
    assert!(
        !text.contains("pool timed out") && !text.contains("closed pool"),
        "nothing ran on the store after it closed: {text}"
    );
    println!(
        "SIGTERM during a flood: {} builds acknowledged, all stored; exit 0 {ended:?} after the signal",
        acknowledged.len()
    );
}

/// Sends SIGTERM and waits for the process to end, at most `limit`: its exit status and
/// how long it took.
async fn terminate(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, Duration) {
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let term = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, term.elapsed());
        }
        assert!(
            term.elapsed() < limit,
            "the service ends within {limit:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `jenkins-autopilot serve` as a process on a free port with its data under `dir`:
/// the known webhook token, dry-run scaling, a controller `prod` that answers nothing, and
/// `extra` (YAML sections). Its stderr (the log) goes to `stderr`. The process and its
/// base URL.
fn serve_process(
    dir: &std::path::Path,
    extra: &str,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("service.yaml"),
        format!(
            "webhook: {{token: \"{}\"}}\n\
             kubernetes: {{mode: dry-run}}\n\
             jenkins:\n  controllers:\n    prod: {{url: \"http://127.0.0.1:9/\", timeout: 200ms, retries: 0}}\n{extra}",
            crate::helpers::TOKEN
        ),
    )
    .unwrap();
    let port = crate::helpers::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir)
        .env("AUTOPILOT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the service");
    (child, format!("http://127.0.0.1:{port}"))
}
