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
    use secrecy::{ExposeSecret, SecretString};
    let (mut settings, _dir) = test_settings(Db::Postgres).await;
    let url = settings
        .database
        .url
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
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
