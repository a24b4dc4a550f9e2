//! Events of one build arriving out of order, twice, or not at all.

use crate::helpers::{Db, payload, spawn_app, spawn_app_on};

const T0: i64 = 1_700_000_000_000;

async fn out_of_order_and_duplicate_events_fold_to_the_same_record(db: Db) {
    let app = spawn_app_on(db).await;
    let job = "job/app/";
    let queue_id = 501;
    let waiting = payload::ce_queue(
        queue_id,
        "app",
        "ENTERED_WAITING",
        T0 - 45_000,
        None,
        Some("Waiting for next available executor on ‘linux’"),
    );
    let left = payload::ce_queue(queue_id, "app", "LEFT", T0 - 45_000, Some(T0), None);
    let started = payload::ce_job(job, 7, queue_id, "STARTED", T0, 0, None);
    let completed = payload::ce_job(
        job,
        7,
        queue_id,
        "COMPLETED",
        T0 + 60_000,
        60_000,
        Some("UNSTABLE"),
    );
    // Completed first, then started twice, then the queue events in reverse, all duplicated.
    let sends = [
        ("org.jenkinsci.job.completed", "c1", &completed),
        ("org.jenkinsci.job.started", "s1", &started),
        ("org.jenkinsci.job.started", "s2", &started),
        ("org.jenkinsci.queue.left", "l1", &left),
        ("org.jenkinsci.queue.entered_waiting", "w1", &waiting),
        ("org.jenkinsci.job.completed", "c2", &completed),
        ("org.jenkinsci.queue.left", "l2", &left),
    ];
    let mut stored = 0;
    for (t, id, body) in sends {
        let resp = app.post_cloudevent(t, id, body).await;
        assert_eq!(resp.status().as_u16(), 200, "{t}");
        let reply: serde_json::Value = resp.json().await.unwrap();
        stored += reply["stored"].as_u64().unwrap();
    }
    assert_eq!(stored, 4, "each real event is stored once");
    let b = app.build("ci.example.com", "app", 7).await;
    assert_eq!(b["phase"], "completed");
    assert_eq!(b["result"], "UNSTABLE");
    assert_eq!(b["queue_wait_ms"], 45_000);
    assert_eq!(b["duration_ms"], 60_000);
    assert_eq!(b["label"], "linux");
    assert_eq!(b["started_at"], T0);
    let counts = app.row_counts().await;
    assert_eq!(
        (counts.events, counts.builds, counts.queue_items),
        (4, 1, 1)
    );
    assert!(app.queue().await.is_empty(), "the item has left");
}

#[tokio::test]
async fn out_of_order_and_duplicate_events_fold_sqlite() {
    out_of_order_and_duplicate_events_fold_to_the_same_record(Db::Sqlite).await;
}

#[tokio::test]
async fn out_of_order_and_duplicate_events_fold_postgres() {
    out_of_order_and_duplicate_events_fold_to_the_same_record(Db::Postgres).await;
}

#[tokio::test]
async fn only_the_final_event_still_gives_a_record() {
    let app = spawn_app().await;
    let finalized = payload::notification(
        "job/app/",
        "app",
        9,
        "FINALIZED",
        T0 + 99_000,
        42_000,
        Some("ABORTED"),
    );
    assert_eq!(
        app.post_notification(&finalized).await.status().as_u16(),
        200
    );
    let b = app.build("ci.example.com", "app", 9).await;
    assert_eq!(b["result"], "ABORTED");
    assert_eq!(b["duration_ms"], 42_000);
    assert!(
        b["queue_wait_ms"].is_null(),
        "unknown stays unknown, never zero"
    );
    assert!(b["started_at"].is_null());
}

#[tokio::test]
async fn sources_combine_for_one_build() {
    let app = spawn_app().await;
    // Statistics Gatherer knows the node and label; Notification knows the result.
    let stats = serde_json::json!({"ciUrl": payload::ROOT, "jobName": "app", "fullJobName": "app", "number": 4,
        "slaveInfo": {"slaveName": "linux-agent-5f7c9", "label": "linux", "executor": "0"},
        "startTime": T0, "endTime": T0, "startedUserId": "SCM", "startedUserName": "SYSTEM",
        "result": "INPROGRESS", "duration": 0, "parameters": {}, "scmInfo": {"url": null, "branch": null, "commit": null},
        "queueTime": 12_000, "buildUrl": "job/app/4/", "contextId": 77, "buildCause": "Started by an SCM change",
        "buildFailureCauses": []});
    assert_eq!(app.post_statistics(&stats).await.status().as_u16(), 200);
    app.post_notification(&payload::notification(
        "job/app/",
        "app",
        4,
        "COMPLETED",
        T0 + 5_000,
        5_000,
        Some("SUCCESS"),
    ))
    .await;
    let b = app.build("ci.example.com", "app", 4).await;
    assert_eq!(b["node"], "linux-agent-5f7c9");
    assert_eq!(b["label"], "linux");
    assert_eq!(b["queue_wait_ms"], 12_000);
    assert_eq!(b["result"], "SUCCESS");
    assert_eq!(b["duration_ms"], 5_000);
}

#[tokio::test]
async fn queue_lists_items_waiting_until_they_leave() {
    let app = spawn_app().await;
    for id in [1, 2] {
        let w = payload::ce_queue(
            id,
            &format!("job-{id}"),
            "ENTERED_WAITING",
            T0 + id as i64,
            None,
            Some("There are no nodes with the label ‘gpu’"),
        );
        app.post_cloudevent("org.jenkinsci.queue.entered_waiting", &format!("w{id}"), &w)
            .await;
    }
    let items = app.queue().await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["queue_id"], 1);
    assert_eq!(items[0]["label"], "gpu");
    assert_eq!(items[0]["state"], "waiting");
    let left = payload::ce_queue(1, "job-1", "LEFT", T0 + 1, Some(T0 + 10_000), None);
    app.post_cloudevent("org.jenkinsci.queue.left", "l1", &left)
        .await;
    let items = app.queue().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["queue_id"], 2);
}

#[tokio::test]
async fn the_queue_is_answered_a_page_at_a_time() {
    let app = spawn_app().await;
    for id in 1..=5u64 {
        let w = payload::ce_queue(
            id,
            &format!("job-{id}"),
            "ENTERED_WAITING",
            T0 + id as i64,
            None,
            None,
        );
        app.post_cloudevent("org.jenkinsci.queue.entered_waiting", &format!("w{id}"), &w)
            .await;
    }
    let (_, page) = app.get_json("/api/v1/queue?limit=2").await;
    assert_eq!(page["total"], 5);
    let ids: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["queue_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    let (_, last) = app.get_json("/api/v1/queue?limit=2&offset=4").await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["items"][0]["queue_id"], 5);
    for bad in ["limit=0", "limit=5000", "offset=-1"] {
        let (status, body) = app.get_json(&format!("/api/v1/queue?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    app.stop().await;
}
