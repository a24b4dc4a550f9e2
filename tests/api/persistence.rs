//! What was answered 2xx survives a restart, and a SIGKILL.

use crate::helpers::{Db, TOKEN, free_port, payload, spawn_with, test_settings};
use jenkins_autopilot::store::Store;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

async fn restart_keeps_everything(db: Db) {
    let (settings, dir) = test_settings(db).await;
    let app = spawn_with(settings.clone()).await;
    for n in 1..=5 {
        let p = payload::notification(
            "job/app/",
            "app",
            n,
            "COMPLETED",
            1_700_000_000_000 + n as i64,
            1_000,
            Some("SUCCESS"),
        );
        assert_eq!(app.post_notification(&p).await.status().as_u16(), 200);
    }
    app.stop().await;
    let again = spawn_with(settings).await;
    assert_eq!(again.builds("").await.len(), 5);
    // Redelivery after the restart still stores nothing twice.
    let p = payload::notification(
        "job/app/",
        "app",
        1,
        "COMPLETED",
        1_700_000_000_001,
        1_000,
        Some("SUCCESS"),
    );
    let reply: serde_json::Value = again.post_notification(&p).await.json().await.unwrap();
    assert_eq!(reply["duplicates"], 1);
    assert_eq!(again.row_counts().await.events, 5);
    drop(dir);
}

#[tokio::test]
async fn restart_keeps_everything_sqlite() {
    restart_keeps_everything(Db::Sqlite).await;
}

#[tokio::test]
async fn restart_keeps_everything_postgres() {
    restart_keeps_everything(Db::Postgres).await;
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service did not become ready");
}

async fn sigkill_loses_nothing_answered(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .args(["--config", dir.path().to_str().unwrap()])
    .env("AUTOPILOT_WEBHOOK__TOKEN", TOKEN)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let db_url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(crate::helpers::fresh_postgres_url().await),
    };
    if let Some(u) = &db_url {
        cmd.env("AUTOPILOT_DATABASE__URL", u);
    }
    let mut child = cmd.spawn().expect("start the service");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;

    // 32 senders post distinct builds until the process dies under them.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..32u64 {
        let client = client.clone();
        let base = base.clone();
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 5_000 {
                n += 1;
                let number = sender * 100_000 + n;
                let p = payload::notification(
                    "job/flood/",
                    "flood",
                    number,
                    "STARTED",
                    1_700_000_000_000,
                    0,
                    None,
                );
                let sent = client
                    .post(format!("{base}/webhooks/notification?token={TOKEN}"))
                    .header("Content-Type", "application/json")
                    .body(p.to_string())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.push(number),
                    Ok(_) => {}
                    Err(_) => break, // the process is gone
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(
        acked.len() > 50,
        "the flood got going ({} answered)",
        acked.len()
    );

    let store = Store::connect(&crate::helpers::database_settings(db_url), dir.path())
        .await
        .unwrap();
    let counts = store.row_counts().await.unwrap();
    assert!(
        counts.builds as usize >= acked.len(),
        "{} stored < {} answered",
        counts.builds,
        acked.len()
    );
    let job = jenkins_autopilot::domain::JobName::parse("flood").unwrap();
    let controller = jenkins_autopilot::domain::ControllerName::parse("ci.example.com").unwrap();
    for n in &acked {
        assert!(
            store
                .get_build(&controller, &job, *n)
                .await
                .unwrap()
                .is_some(),
            "build {n} was answered 2xx but is lost"
        );
    }
    println!(
        "SIGKILL during flood ({db:?}): {} answered 2xx, {} stored, none lost",
        acked.len(),
        counts.builds
    );
    store.close().await;
}

#[tokio::test]
async fn sigkill_during_a_flood_loses_nothing_answered_sqlite() {
    sigkill_loses_nothing_answered(Db::Sqlite).await;
}

#[tokio::test]
async fn sigkill_during_a_flood_loses_nothing_answered_postgres() {
    sigkill_loses_nothing_answered(Db::Postgres).await;
}

/// A build's big fields (parameters, SCM, URL) are stored once, in its record: the event
/// log keeps each event's identity and small facts, so every phase's webhook does not add
/// another copy of the parameters.
async fn big_fields_are_stored_once(db: Db) {
    let (settings, _dir) = test_settings(db).await;
    let app = spawn_with(settings).await;
    let big: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| (format!("P{i:03}"), serde_json::json!("v".repeat(2_000))))
        .collect();
    let mut phases = 0;
    for (phase, status) in [
        ("QUEUED", None),
        ("STARTED", None),
        ("COMPLETED", Some("SUCCESS")),
        ("FINALIZED", Some("SUCCESS")),
    ] {
        let mut body = payload::notification(
            "job/app/",
            "app",
            7,
            phase,
            1_700_000_000_000,
            60_000,
            status,
        );
        body["build"]["parameters"] = serde_json::Value::Object(big.clone());
        let resp = app.post_notification(&body).await;
        assert_eq!(resp.status().as_u16(), 200);
        phases += 1;
    }
    let build = app.build("ci.example.com", "app", 7).await;
    assert_eq!(
        build["parameters"].as_object().unwrap().len(),
        100,
        "{build}"
    );
    assert_eq!(build["parameters"]["P042"], "v".repeat(2_000));
    assert_eq!(build["scm_commit"], "4f5e6d7c");
    let counts = app.row_counts().await;
    assert_eq!(counts.events, phases);
    // 200 kB of parameters per webhook: the four events' payloads together hold none.
    assert!(
        counts.event_payload_bytes < 4 * 2_000,
        "{} payload bytes",
        counts.event_payload_bytes
    );
}

#[tokio::test]
async fn big_fields_are_stored_once_sqlite() {
    big_fields_are_stored_once(Db::Sqlite).await;
}

#[tokio::test]
async fn big_fields_are_stored_once_postgres() {
    big_fields_are_stored_once(Db::Postgres).await;
}
