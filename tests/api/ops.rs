use crate::helpers::{metric_value, payload, spawn_app};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        app.get_json("/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        app.get_json("/readyz").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    app.post_notification(&payload::notification(
        "job/app/",
        "app",
        1,
        "STARTED",
        1_700_000_000_000,
        0,
        None,
    ))
    .await;
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for name in [
        r#"autopilot_webhook_events_total{outcome="stored",source="notification",type="build.started"} 1"#,
        "autopilot_store_commit_seconds_bucket",
        "autopilot_write_queue_length",
        "autopilot_store_batch_requests_count",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let (status, body) = app.get_json("/no/such/page").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/webhooks/notification", "post"),
        ("/webhooks/cloudevents", "post"),
        ("/webhooks/statistics", "post"),
        ("/api/v1/builds", "get"),
        ("/api/v1/builds/{controller}/{job}/{number}", "get"),
        ("/api/v1/queue", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/api/v1/pools", "get"),
        ("/api/v1/pools/{name}/forecast", "get"),
        ("/api/v1/profiles/select", "get"),
        (
            "/api/v1/builds/{controller}/{job}/{number}/performance",
            "post",
        ),
        ("/api/v1/builds/{controller}/{job}/{number}/analysis", "get"),
        ("/api/v1/jobs/{controller}/{job}/recommendation", "get"),
        ("/api/v1/costs", "get"),
        ("/api/v1/reports/performance", "get"),
        ("/api/v1/export", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["BuildRecord"].is_object());
}

#[tokio::test]
async fn a_lost_database_is_unready_and_reads_fail_rather_than_look_empty() {
    use crate::helpers::{Db, spawn_with, test_settings};
    let (settings, dir) = test_settings(Db::Postgres).await;
    let url = crate::helpers::postgres_url(&settings);
    let app = spawn_with(settings).await;
    app.post_notification(&payload::notification(
        "job/app/",
        "app",
        1,
        "STARTED",
        1_700_000_000_000,
        0,
        None,
    ))
    .await;
    assert_eq!(app.builds("").await.len(), 1);

    // Drop the database under the running service.
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    let (status, body) = app.get_json("/api/v1/builds").await;
    assert_eq!(
        status, 500,
        "a failed read is an error, never an empty list: {body}"
    );
    // The database's own words (tables, SQL, values) stay in the service's log.
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(
        detail,
        jenkins_autopilot::http::errors::INTERNAL_DETAIL,
        "{body}"
    );
    let resp = app
        .post_notification(&payload::notification(
            "job/app/",
            "app",
            2,
            "STARTED",
            1_700_000_000_000,
            0,
            None,
        ))
        .await;
    assert!(
        resp.status().is_server_error(),
        "an event that cannot be stored is not acknowledged"
    );
    assert_eq!(
        app.get_json("/healthz").await.0,
        200,
        "the process itself keeps running"
    );
    drop(dir);
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_service_exposes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ci-cd-integration/grafana/jenkins-autopilot.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let known = jenkins_autopilot::metrics::Metrics::new().names();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let mut used = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("autopilot_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_string();
                assert!(
                    known.contains(&base),
                    "{} queries unknown {name}",
                    p["title"]
                );
                used.insert(base);
            }
        }
    }
    // Every metric is on the dashboard.
    for name in &known {
        assert!(used.contains(name), "{name} is not charted");
    }
}

/// The leader's rollup passes are counted, with the hours still behind and when the last
/// good pass ended: a fresh store is rolled up at start and nothing is behind.
#[tokio::test]
async fn the_rollup_passes_show_in_the_metrics() {
    let app = spawn_app().await;
    let ok = r#"autopilot_rollup_passes_total{outcome="ok"}"#;
    crate::scaling::eventually(
        "a rollup pass",
        std::time::Duration::from_secs(10),
        async || app.metric(ok).await.is_some(),
    )
    .await;
    let text = app.metrics().await;
    assert!(metric_value(&text, ok) >= Some(1), "{text}");
    assert_eq!(
        metric_value(&text, "autopilot_rollup_behind_hours"),
        Some(0),
        "{text}"
    );
    let last = metric_value(&text, "autopilot_rollup_last_pass_timestamp_seconds").unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now - 120..=now).contains(&last), "{last} against {now}");
    assert_eq!(
        metric_value(&text, r#"autopilot_rollup_passes_total{outcome="error"}"#),
        None,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_give_the_processs_memory_and_the_wal_in_use() {
    let app = crate::helpers::spawn_app().await;
    app.post_notification(&payload::notification(
        "job/app/",
        "app",
        1,
        "COMPLETED",
        1_700_000_000_000,
        1000,
        Some("SUCCESS"),
    ))
    .await;
    let rss = app
        .metric("autopilot_process_resident_memory_bytes")
        .await
        .expect("the process's resident memory is exported");
    assert!(rss > 1 << 20, "{rss}");
    assert!(app.metric("autopilot_process_open_fds").await.unwrap() > 0);
    assert!(app.metric("autopilot_store_wal_bytes").await.is_some());
}

/// `server.keep_alive`: an idle connection is closed by the service after it, and kept
/// open before it (a client reusing it then is answered).
#[tokio::test]
async fn an_idle_connection_is_kept_for_server_keep_alive_then_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::{Duration, sleep, timeout};
    let (mut settings, dir) = crate::helpers::test_settings(crate::helpers::Db::Sqlite).await;
    settings.server.keep_alive = Duration::from_secs(2);
    let app = crate::helpers::spawn_with(settings).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 4096];
    for idle in [0, 500] {
        sleep(Duration::from_millis(idle)).await;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let n = timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "answered on the same connection after {idle} ms idle"
        );
    }
    sleep(Duration::from_millis(3500)).await;
    let n = timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("the read ends")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed by the service after 2 s idle");
    drop(dir);
}
