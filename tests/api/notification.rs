use crate::helpers::{Db, payload, spawn_app, spawn_app_on};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

async fn all_four_phases_fold_into_one_record(db: Db) {
    let app = spawn_app_on(db).await;
    let job = "job/team/job/app/";
    // What the plugin sends for one build: QUEUED and STARTED at start (QUEUED carries
    // start minus time in queue), COMPLETED with start + duration, FINALIZED later.
    let phases = [
        payload::notification(job, "app", 12, "QUEUED", T0 - 30_000, 0, None),
        payload::notification(job, "app", 12, "STARTED", T0, 0, None),
        payload::notification(
            job,
            "app",
            12,
            "COMPLETED",
            T0 + 90_000,
            90_000,
            Some("SUCCESS"),
        ),
        payload::notification(
            job,
            "app",
            12,
            "FINALIZED",
            T0 + 95_000,
            90_000,
            Some("SUCCESS"),
        ),
    ];
    for p in &phases {
        let resp = app.post_notification(p).await;
        assert_eq!(resp.status().as_u16(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["stored"], 1);
    }
    let b = app.build("ci.example.com", "team/app", 12).await;
    assert_eq!(b["phase"], "finalized");
    assert_eq!(b["result"], "SUCCESS");
    assert_eq!(b["queue_wait_ms"], 30_000);
    assert_eq!(b["duration_ms"], 90_000);
    assert_eq!(b["queued_at"], T0 - 30_000);
    assert_eq!(b["started_at"], T0);
    assert_eq!(b["finished_at"], T0 + 90_000);
    assert_eq!(b["queue_id"], 1012);
    assert_eq!(b["scm_commit"], "4f5e6d7c");
    assert_eq!(b["parameters"]["DEPLOY"], "false");
    assert_eq!(app.builds("").await.len(), 1);
}

#[tokio::test]
async fn all_four_phases_fold_into_one_record_sqlite() {
    all_four_phases_fold_into_one_record(Db::Sqlite).await;
}

#[tokio::test]
async fn all_four_phases_fold_into_one_record_postgres() {
    all_four_phases_fold_into_one_record(Db::Postgres).await;
}

#[tokio::test]
async fn iso_timestamps_of_older_plugin_versions_are_read() {
    let app = spawn_app().await;
    let mut started = payload::notification("job/app/", "app", 3, "STARTED", 0, 0, None);
    started["build"]["timestamp"] = json!("2023-11-14T22:13:20.5+00:00");
    let mut completed = payload::notification(
        "job/app/",
        "app",
        3,
        "COMPLETED",
        0,
        10_000,
        Some("FAILURE"),
    );
    completed["build"]["timestamp"] = json!("2023-11-14T22:13:30.5+00:00");
    assert_eq!(app.post_notification(&started).await.status().as_u16(), 200);
    assert_eq!(
        app.post_notification(&completed).await.status().as_u16(),
        200
    );
    let b = app.build("ci.example.com", "app", 3).await;
    // SimpleDateFormat's unpadded `S`: ".5" is 5 ms.
    assert_eq!(b["started_at"], T0 + 5);
    assert_eq!(b["duration_ms"], 10_000);
    assert_eq!(b["result"], "FAILURE");
}

#[tokio::test]
async fn controller_comes_from_the_query_or_the_payload_url_or_the_default() {
    let app = spawn_app().await;
    let p = payload::notification("job/app/", "app", 1, "STARTED", T0, 0, None);
    app.post_webhook("/webhooks/notification?controller=prod", &p)
        .await;
    app.post_notification(&p).await;
    let mut no_url = p.clone();
    no_url["build"].as_object_mut().unwrap().remove("full_url");
    app.post_notification(&no_url).await;
    let mut controllers: Vec<String> = app
        .builds("")
        .await
        .iter()
        .map(|b| b["controller"].as_str().unwrap().to_string())
        .collect();
    controllers.sort();
    assert_eq!(controllers, ["ci.example.com", "default", "prod"]);
    assert_eq!(app.builds("?controller=prod").await.len(), 1);
}

#[tokio::test]
async fn folder_job_names_are_addressed_with_plain_or_encoded_slashes() {
    let app = spawn_app().await;
    let p = payload::notification(
        "job/team/job/my%20app/job/feature%252Fx/",
        "feature%2Fx",
        8,
        "STARTED",
        T0,
        0,
        None,
    );
    assert_eq!(app.post_notification(&p).await.status().as_u16(), 200);
    let full = "team/my app/feature%2Fx";
    let builds = app.builds("").await;
    assert_eq!(builds[0]["job"], full);
    // Each segment percent-encoded, folders joined by a plain slash...
    let plain = app
        .build("ci.example.com", "team/my%20app/feature%252Fx", 8)
        .await;
    assert_eq!(plain["job"], full);
    // ...or the whole name encoded, slashes as %2F.
    let encoded = urlencoding::encode(full).into_owned();
    let whole = app.build("ci.example.com", &encoded, 8).await;
    assert_eq!(whole["job"], full);
    let (status, _) = app
        .get_json("/api/v1/builds/ci.example.com/team/other/8")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn list_filters_and_orders_newest_first() {
    let app = spawn_app().await;
    for (n, status) in [(1, "SUCCESS"), (2, "FAILURE"), (3, "SUCCESS")] {
        let start = T0 + n as i64 * 60_000;
        app.post_notification(&payload::notification(
            "job/app/", "app", n, "STARTED", start, 0, None,
        ))
        .await;
        app.post_notification(&payload::notification(
            "job/app/",
            "app",
            n,
            "COMPLETED",
            start + 1_000,
            1_000,
            Some(status),
        ))
        .await;
    }
    app.post_notification(&payload::notification(
        "job/lib/", "lib", 1, "STARTED", T0, 0, None,
    ))
    .await;
    let numbers = |v: Vec<serde_json::Value>| {
        v.iter()
            .map(|b| b["number"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(app.builds("?job=app").await), [3, 2, 1]);
    assert_eq!(numbers(app.builds("?job=app&result=SUCCESS").await), [3, 1]);
    assert_eq!(numbers(app.builds("?job=app&limit=1").await), [3]);
    let since = T0 + 120_000;
    assert_eq!(
        numbers(app.builds(&format!("?job=app&since={since}")).await),
        [3, 2]
    );
    assert_eq!(
        numbers(app.builds("?job=app&since=2023-11-14T22:16:00Z").await),
        [3]
    );
    assert_eq!(app.builds("").await.len(), 4);
    for bad in [
        "?limit=0",
        "?limit=5000",
        "?result=GREAT",
        "?since=yesterday",
        "?controller=a%20b",
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/builds{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["field"].is_string(), "{bad}: {body}");
    }
}
