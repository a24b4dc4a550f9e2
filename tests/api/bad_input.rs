//! Bad input gets a clear error, nothing of it is stored, and the service keeps running.

use crate::helpers::{Db, TOKEN, payload, spawn_app, spawn_with, test_settings};
use serde_json::{Value, json};

async fn post_raw(
    app: &crate::helpers::TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("{path}?token={TOKEN}")))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_nothing_is_stored() {
    let app = spawn_app().await;
    let json = Some("application/json");
    let good = payload::notification("job/app/", "app", 1, "STARTED", 1_700_000_000_000, 0, None);

    // Over the 1 MiB default limit.
    let mut big = good.clone();
    big["build"]["log"] = json!("x".repeat(1024 * 1024 + 10));
    let (status, body) = post_raw(
        &app,
        "/webhooks/notification",
        json,
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large");

    // Malformed JSON: 400 with the parser's position.
    let (status, body) = post_raw(
        &app,
        "/webhooks/notification",
        json,
        b"{\"name\": \"app\",\n \"build\": {".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_json");
    assert!(
        body["detail"].as_str().unwrap().contains("line 2 column"),
        "{body}"
    );

    // Missing required fields are named.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/webhooks/notification",
            json!({"name": "app", "url": "job/app/"}),
            "build",
        ),
        (
            "/webhooks/notification",
            json!({"name": "app", "build": {"phase": "STARTED"}}),
            "build.number",
        ),
        (
            "/webhooks/notification",
            json!({"name": "app", "build": {"number": 1}}),
            "build.phase",
        ),
        (
            "/webhooks/notification",
            json!({"name": "app", "build": {"number": 1, "phase": "STARTED", "timestamp": "soon"}}),
            "build.timestamp",
        ),
        (
            "/webhooks/notification",
            json!({"name": "app", "build": {"number": -4, "phase": "STARTED"}}),
            "build.number",
        ),
        ("/webhooks/notification", json!([1, 2]), "$"),
        (
            "/webhooks/statistics",
            json!({"jenkinsQueueId": 3, "entryTime": 1}),
            "jobName",
        ),
        (
            "/webhooks/statistics",
            json!({"jobName": "app", "result": "SUCCESS", "number": 2, "duration": -5}),
            "duration",
        ),
    ];
    for (path, body, field) in cases {
        let (status, reply) = post_raw(&app, path, json, body.to_string().into_bytes()).await;
        assert_eq!(status, 400, "{path} {body}: {reply}");
        assert_eq!(reply["error"], "invalid_field", "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let resp = app
        .post_cloudevent(
            "org.jenkinsci.queue.left",
            "q",
            &json!({"displayName": "app"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["field"], "jenkinsQueueId");
    let resp = app
        .client
        .post(app.url(&format!("/webhooks/cloudevents?token={TOKEN}")))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "binary mode without ce-type");

    // Wrong or missing content type: 415.
    for ct in [Some("application/xml"), Some("text/plain"), None] {
        let (status, reply) = post_raw(
            &app,
            "/webhooks/notification",
            ct,
            good.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 415, "{ct:?}: {reply}");
        assert_eq!(reply["error"], "unsupported_media_type");
    }
    let (status, _) = post_raw(
        &app,
        "/webhooks/notification",
        Some("application/cloudevents+json"),
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        status, 415,
        "structured CloudEvents only on the CloudEvents endpoint"
    );

    // Nothing was stored, and the service still works.
    let counts = app.row_counts().await;
    assert_eq!(
        (counts.events, counts.builds, counts.queue_items),
        (0, 0, 0)
    );
    assert_eq!(app.post_notification(&good).await.status().as_u16(), 200);
    assert_eq!(app.row_counts().await.builds, 1);
}

#[tokio::test]
async fn a_full_write_queue_answers_503_with_retry_after_and_loses_nothing_answered() {
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    settings.ingest.write_queue_capacity = 1;
    let app = spawn_with(settings).await;
    // Hold SQLite's write lock from another connection so the writer blocks in its commit.
    let mut lock = crate::helpers::sqlite_in(dir.path()).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();

    let send = |n: u64| {
        let client = app.client.clone();
        let url = app.url(&format!("/webhooks/notification?token={TOKEN}"));
        let body =
            payload::notification("job/app/", "app", n, "STARTED", 1_700_000_000_000, 0, None)
                .to_string();
        tokio::spawn(async move {
            client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        })
    };
    // While the writer is stuck, at most two requests fit (one in the writer, one in the
    // queue of one); of six sent one after another, at least four are refused at once.
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    for n in 1..=6u64 {
        let task = send(n);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        if task.is_finished() {
            let resp = task.await.unwrap();
            assert_eq!(
                resp.status().as_u16(),
                503,
                "build {n}: a finished request can only be refused"
            );
            assert_eq!(resp.headers()["retry-after"], "1");
            let reply: Value = resp.json().await.unwrap();
            assert_eq!(reply["error"], "overloaded");
            refused.push(n);
        } else {
            pending.push((n, task));
        }
    }
    assert!(
        pending.len() <= 2 && refused.len() >= 4,
        "{} waiting, refused {refused:?}",
        pending.len()
    );

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    let mut answered = Vec::new();
    for (n, task) in pending {
        let resp = task.await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "build {n}");
        answered.push(n);
    }
    let mut numbers: Vec<u64> = app
        .builds("")
        .await
        .iter()
        .map(|b| b["number"].as_u64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(
        numbers, answered,
        "exactly the answered builds are stored, none refused"
    );
    drop(dir);
}

/// A build whose duration Jenkins could never report is refused, naming the field; poison
/// already in the store (written before the bounds) never breaks costs or reports.
async fn a_poison_build_is_refused_and_stored_poison_is_harmless(db: Db) {
    use jenkins_autopilot::domain::Timestamp;
    use jenkins_autopilot::ingest::{IngestContext, Ingested, notification};
    let (settings, dir) = test_settings(db).await;
    let app = spawn_with(settings.clone()).await;
    let now = chrono::Utc::now().timestamp_millis();
    let poison = |n: u64| {
        payload::notification(
            "job/app/",
            "app",
            n,
            "COMPLETED",
            now - 60_000,
            5_000_000_000_000_000_000,
            Some("SUCCESS"),
        )
    };
    for n in [1, 2] {
        let resp = app.post_webhook("/webhooks/notification", &poison(n)).await;
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], "duration", "{body}");
    }
    // A build number Jenkins cannot count to, and an instant after 2100.
    let mut big = payload::notification("job/app/", "app", 3, "STARTED", now, 0, None);
    big["build"]["number"] = json!(u64::MAX);
    let resp = app.post_webhook("/webhooks/notification", &big).await;
    assert_eq!(resp.status().as_u16(), 400);
    let far = payload::notification("job/app/", "app", 3, "STARTED", 4_200_000_000_000, 0, None);
    let resp = app.post_webhook("/webhooks/notification", &far).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "started_at", "{body}");

    // Two such builds written straight to the store, as an older version would have.
    let store = jenkins_autopilot::store::Store::connect(&settings.database, dir.path())
        .await
        .unwrap();
    let ctx = IngestContext {
        controller_override: None,
        default_controller: jenkins_autopilot::domain::ControllerName::parse("default").unwrap(),
        received_at: Timestamp::now(),
    };
    let mut batches = Vec::new();
    for n in [1, 2] {
        match notification::parse(poison(n).to_string().as_bytes(), &ctx).unwrap() {
            Ingested::Events(e) => batches.push(e),
            other => panic!("{other:?}"),
        }
    }
    let refs: Vec<&[jenkins_autopilot::domain::IngestEvent]> =
        batches.iter().map(Vec::as_slice).collect();
    assert_eq!(
        store.write_batch(&refs, Timestamp::now()).await.unwrap(),
        [1, 1]
    );
    for path in [
        "/api/v1/costs?range=7d",
        "/api/v1/costs?range=7d&group_by=pool",
        "/api/v1/reports/performance?range=7d",
        "/api/v1/reports/performance?range=7d&format=csv",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{path}: {}",
            resp.text().await.unwrap()
        );
    }
    let (_, report) = app.get_json("/api/v1/reports/performance?range=7d").await;
    assert_eq!(report["builds"], 2, "{report}");
    app.stop().await;
}

#[tokio::test]
async fn a_poison_build_is_refused_and_stored_poison_is_harmless_sqlite() {
    a_poison_build_is_refused_and_stored_poison_is_harmless(Db::Sqlite).await;
}

#[tokio::test]
async fn a_poison_build_is_refused_and_stored_poison_is_harmless_postgres() {
    a_poison_build_is_refused_and_stored_poison_is_harmless(Db::Postgres).await;
}

#[tokio::test]
async fn secret_looking_parameters_never_reach_the_store_or_the_api() {
    let app = spawn_app().await;
    let start = chrono::Utc::now().timestamp_millis() - 60_000;
    let body = json!({"ciUrl": payload::ROOT, "jobName": "deploy", "fullJobName": "deploy", "number": 4,
        "slaveInfo": {"slaveName": "agent-1", "label": "linux", "executor": "0"}, "startTime": start,
        "result": "INPROGRESS", "duration": 0, "queueTime": 0, "buildUrl": "job/deploy/4/",
        "parameters": {"DB_PASSWORD": "hunter2-secret-value", "api_token": "tok-secret-value",
                       "AWS_SECRET_ACCESS_KEY": "aws-secret-value", "BRANCH": "main"}});
    let resp = app
        .post_webhook("/webhooks/statistics?controller=prod", &body)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let (_, list) = app.get_json("/api/v1/builds?controller=prod").await;
    let params = &list["builds"][0]["parameters"];
    assert_eq!(params["DB_PASSWORD"], "********", "{list}");
    assert_eq!(params["api_token"], "********");
    assert_eq!(params["AWS_SECRET_ACCESS_KEY"], "********");
    assert_eq!(params["BRANCH"], "main");
    let (_, one) = app.get_json("/api/v1/builds/prod/deploy/4").await;
    assert_eq!(one["parameters"]["DB_PASSWORD"], "********");
    // Not in the database files either (records, raw events, write-ahead log).
    let data_dir = app.data_dir.clone();
    let keep = app.stop().await;
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for secret in [
                "hunter2-secret-value",
                "tok-secret-value",
                "aws-secret-value",
            ] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} in {}",
                    path.display()
                );
            }
        }
    }
    drop(keep);
}

#[tokio::test]
async fn careless_and_cross_site_requests_get_clear_refusals() {
    let app = spawn_app().await;
    // A cross-site form cannot start a replay: the optimizer takes JSON only.
    let resp = app
        .client
        .post(app.url("/api/v1/costs/optimize"))
        .header("Content-Type", "text/plain")
        .body(r#"{"target_savings": 20}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    // Performance reports: JSON only, and build numbers Jenkins can have.
    let token = app.jwt(&[jenkins_autopilot::tokens::Scope::BuildsWrite]);
    for (path, ctype, want) in [
        ("/api/v1/builds/prod/app/3/performance", "text/plain", 415),
        (
            "/api/v1/builds/prod/app/0/performance",
            "application/json",
            400,
        ),
        (
            "/api/v1/builds/prod/app/18446744073709551615/performance",
            "application/json",
            400,
        ),
    ] {
        let resp = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("Content-Type", ctype)
            .body(r#"{"type": "build", "elapsed_ms": 1000}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path} {ctype}");
    }
    // A 60 KB event type is refused, not echoed back.
    let long = format!("org.jenkinsci.{}", "x".repeat(60_000));
    let resp = app.post_cloudevent(&long, "id", &json!({"x": 1})).await;
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.len() < 1_000, "{} bytes", text.len());
    app.stop().await;
}

#[tokio::test]
async fn the_markdown_report_shows_webhook_text_as_text() {
    let app = spawn_app().await;
    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let job = "<img src=x onerror=alert(1)>";
    crate::helpers::statistics_build(&app, job, 1, "linux", start, 0, 60_000, "SUCCESS").await;
    let resp = app
        .client
        .get(app.url(
            "/api/v1/reports/performance?range=24h&format=md&job=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        ))
        .send()
        .await
        .unwrap();
    let md = resp.text().await.unwrap();
    assert!(!md.contains("<img"), "{md}");
    assert!(
        md.contains("&lt;img src=x onerror=alert\\(1\\)&gt;"),
        "{md}"
    );
    let resp = app
        .client
        .get(app.url(
            "/api/v1/reports/performance?range=24h&format=md&job=%5Bx%5D(javascript%3Aalert(1))",
        ))
        .send()
        .await
        .unwrap();
    let md = resp.text().await.unwrap();
    assert!(!md.contains("[x](javascript"), "{md}");
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_database_is_private_to_the_service() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let resp = app
        .post_webhook(
            "/webhooks/notification",
            &payload::notification("job/app/", "app", 1, "STARTED", 1_700_000_000_000, 0, None),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    for name in ["autopilot.db", "autopilot.db-wal"] {
        let mode = std::fs::metadata(app.data_dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
    }
    app.stop().await;
}

#[tokio::test]
async fn below_the_free_disk_floor_writes_get_507_and_nothing_is_stored() {
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    // A floor no disk reaches.
    settings.server.min_free_disk_mib = 1 << 40;
    let app = spawn_with(settings).await;
    let resp = app
        .post_webhook(
            "/webhooks/notification",
            &payload::notification("job/app/", "app", 1, "STARTED", 1_700_000_000_000, 0, None),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 507);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_storage", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("min_free_disk_mib"),
        "{body}"
    );
    assert_eq!(app.row_counts().await.events, 0);
    // Reads and health go on.
    assert_eq!(app.get_json("/api/v1/builds").await.0, 200);
    assert_eq!(app.get_json("/healthz").await.0, 200);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn performance_reports_beyond_what_a_pod_can_use_are_refused() {
    let app = spawn_app().await;
    let token = app.jwt(&[jenkins_autopilot::tokens::Scope::BuildsWrite]);
    for (body, field) in [
        (
            json!({"type": "build", "elapsed_ms": 60_000,
                   "usage": {"cpu_usage_usec": 9_000_000_000_000u64, "memory_peak_bytes": 1_000_000}}),
            "usage.cpu_usage_usec",
        ),
        (
            json!({"type": "build", "elapsed_ms": 60_000,
                   "usage": {"cpu_usage_usec": 1_000, "memory_peak_bytes": u64::MAX}}),
            "usage.memory_peak_bytes",
        ),
        (
            json!({"type": "build", "elapsed_ms": 9_000_000_000_000u64,
                   "usage": {"cpu_usage_usec": 1_000, "memory_peak_bytes": 1_000}}),
            "elapsed_ms",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/builds/prod/app/3/performance"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let reply: Value = resp.json().await.unwrap();
        assert_eq!(reply["field"], field, "{reply}");
    }
    app.stop().await;
}

#[tokio::test]
async fn job_names_that_could_pass_for_others_are_refused() {
    let app = spawn_app().await;
    for (url, name) in [
        ("job/te%D0%B0m/", "te\u{0430}m"),
        ("job/app%E2%80%8B/", "app\u{200B}"),
        ("job/%E2%80%AEppa/", "\u{202E}ppa"),
    ] {
        let body = payload::notification(url, name, 1, "STARTED", 1_700_000_000_000, 0, None);
        let resp = app.post_webhook("/webhooks/notification", &body).await;
        assert_eq!(resp.status().as_u16(), 400, "{name:?}");
    }
    assert_eq!(app.row_counts().await.events, 0);
    let body = payload::notification(
        "job/%D1%81%D0%B1%D0%BE%D1%80%D0%BA%D0%B0/",
        "сборка",
        1,
        "STARTED",
        1_700_000_000_000,
        0,
        None,
    );
    let resp = app.post_webhook("/webhooks/notification", &body).await;
    assert_eq!(resp.status().as_u16(), 200, "a Cyrillic name is a name");
    app.stop().await;
}

/// The bounds on what enters an index or a key, on the store where an unbounded key broke
/// the index (PostgreSQL refuses index entries over 2,704 bytes).
#[tokio::test]
async fn keys_and_ids_are_bounded_before_they_reach_an_index() {
    let app = crate::helpers::spawn_app_on(Db::Postgres).await;
    let queue = payload::ce_queue(7, "app", "ENTERED_WAITING", 1_700_000_000_000, None, None);
    let resp = app
        .post_cloudevent(
            "org.jenkinsci.queue.entered_waiting",
            &"i".repeat(6000),
            &queue,
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "ce-id", "{body}");
    let resp = app
        .post_cloudevent(
            "org.jenkinsci.node.online",
            &"i".repeat(6000),
            &json!({"nodeName": "a"}),
        )
        .await;
    assert_eq!(
        resp.status(),
        400,
        "every CloudEvents type holds the id to its bound"
    );

    let stats = json!({"ciUrl": payload::ROOT, "jobName": "app", "entryTime": 1_700_000_000_000i64,
        "exitTime": null, "jenkinsQueueId": 61, "status": "ENTERED", "duration": 0,
        "queueCauses": [{"type": "t".repeat(5000), "entryTime": 1_700_000_000_000i64, "exitTime": null}]});
    let resp = app.post_statistics(&stats).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "queueCauses[0].type", "{body}");
    assert!(app.queue().await.is_empty(), "nothing refused is stored");

    // What Jenkins sends still goes in.
    let resp = app
        .post_cloudevent(
            "org.jenkinsci.queue.entered_waiting",
            "6f1c2b9e-0d7a-4c4b-9a53-2f7e1d3c5b80",
            &queue,
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_key_twice_in_one_object_is_refused_by_every_parser() {
    let app = spawn_app().await;
    let json = Some("application/json");
    // Notification, CloudEvents (binary and structured) and Statistics Gatherer alike.
    let notification = br#"{"name":"app","url":"job/app/","build":{"number":1,"number":2,"phase":"STARTED","full_url":"https://ci.example.com/job/app/1/","timestamp":1700000000000}}"#;
    let (status, body) =
        post_raw(&app, "/webhooks/notification", json, notification.to_vec()).await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("build.number")),
        "{body}"
    );

    let ce = app
        .client
        .post(app.url(&format!("/webhooks/cloudevents?token={TOKEN}")))
        .header("Content-Type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "org.jenkinsci.queue.entered_waiting")
        .body(r#"{"jenkinsQueueId":7,"jenkinsQueueId":8,"displayName":"app","entryTime":1700000000000,"status":"ENTERED_WAITING"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ce.status(), 400);
    let body: Value = ce.json().await.unwrap();
    assert_eq!(body["field"], "jenkinsQueueId", "{body}");

    let structured = br#"{"specversion":"1.0","id":"1","id":"2","type":"org.jenkinsci.node.online","source":"x","data":{"nodeName":"a"}}"#;
    let (status, body) = post_raw(
        &app,
        "/webhooks/cloudevents",
        Some("application/cloudevents+json"),
        structured.to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("id")),
        "{body}"
    );

    let stats = br#"{"jenkinsQueueId":61,"jobName":"app","jobName":"other","status":"ENTERED","entryTime":1700000000000}"#;
    let (status, body) = post_raw(&app, "/webhooks/statistics", json, stats.to_vec()).await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("jobName")),
        "{body}"
    );
    assert!(app.queue().await.is_empty());
    assert!(app.builds("").await.is_empty());
}

#[tokio::test]
async fn cloudevents_must_say_their_version() {
    let app = spawn_app().await;
    let send = |version: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url(&format!("/webhooks/cloudevents?token={TOKEN}")))
            .header("Content-Type", "application/json")
            .header("ce-id", "1")
            .header("ce-type", "org.jenkinsci.node.online")
            .body(r#"{"nodeName":"agent-1","numExecutors":1}"#);
        if let Some(v) = version {
            req = req.header("ce-specversion", v);
        }
        req.send()
    };
    for (version, expected) in [(None, 400), (Some("0.3"), 400), (Some("1.0"), 200)] {
        let resp = send(version).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{version:?}");
        if expected == 400 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["field"], "ce-specversion", "{body}");
        }
    }
}

#[tokio::test]
async fn a_name_typed_two_ways_is_one_job_and_look_alikes_are_refused() {
    let app = spawn_app().await;
    let nfc = "caf\u{00E9}";
    let nfd = "cafe\u{0301}";
    for (n, name) in [(1, nfc), (2, nfd)] {
        let url = format!("job/{}/", urlencoding::encode(name));
        let resp = app
            .post_notification(&payload::notification(
                &url,
                name,
                n,
                "STARTED",
                1_700_000_000_000,
                0,
                None,
            ))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let builds = app
        .builds(&format!("?job={}", urlencoding::encode(nfd)))
        .await;
    assert_eq!(builds.len(), 2, "{builds:?}");
    assert!(builds.iter().all(|b| b["job"] == nfc));

    let url = format!("job/{}/", urlencoding::encode("\u{FF41}pp"));
    let resp = app
        .post_notification(&payload::notification(
            &url,
            "\u{FF41}pp",
            1,
            "STARTED",
            1_700_000_000_000,
            0,
            None,
        ))
        .await;
    assert_eq!(resp.status(), 400, "full-width letters pass for plain ones");
}

#[tokio::test]
async fn a_query_parameter_given_twice_is_refused() {
    let app = spawn_app().await;
    let good = payload::notification("job/app/", "app", 1, "STARTED", 1_700_000_000_000, 0, None);
    let resp = app
        .post_webhook("/webhooks/notification?controller=a&controller=b", &good)
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "controller", "{body}");
    let (status, body) = app.get_json("/api/v1/builds?limit=1&limit=2").await;
    assert_eq!(status, 400, "{body}");
    assert!(app.builds("").await.is_empty());
}
