use crate::helpers::{TOKEN, payload, spawn_app};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

#[tokio::test]
async fn every_build_type_in_binary_mode() {
    let app = spawn_app().await;
    let job = "job/app/";
    for (t, phase, ts, dur, status) in [
        ("org.jenkinsci.job.started", "STARTED", T0, 0, None),
        (
            "org.jenkinsci.job.completed",
            "COMPLETED",
            T0 + 20_000,
            20_000,
            Some("FAILURE"),
        ),
        (
            "org.jenkinsci.job.finalized",
            "FINALIZED",
            T0 + 25_000,
            20_000,
            Some("FAILURE"),
        ),
        (
            "org.jenkinsci.job.failed",
            "FINALIZED",
            T0 + 25_000,
            20_000,
            Some("FAILURE"),
        ),
    ] {
        let resp = app
            .post_cloudevent(
                t,
                "id",
                &payload::ce_job(job, 2, 88, phase, ts, dur, status),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200, "{t}");
    }
    let b = app.build("ci.example.com", "app", 2).await;
    assert_eq!(b["phase"], "finalized");
    assert_eq!(b["result"], "FAILURE");
    assert_eq!(b["duration_ms"], 20_000);
    assert_eq!(app.row_counts().await.events, 4);
}

#[tokio::test]
async fn node_and_job_events_are_stored_and_counted() {
    let app = spawn_app().await;
    let node = json!({"numExecutors": 2, "offlineCause": null, "nodeName": "linux-agent-1",
        "cachedHostName": "10.0.0.5", "terminatedBy": null, "connectTime": T0});
    assert_eq!(
        app.post_cloudevent("org.jenkinsci.node.online", "n1", &node)
            .await
            .status()
            .as_u16(),
        200
    );
    let offline = json!({"numExecutors": 2, "nodeName": "linux-agent-1", "connectTime": T0,
        "offlineCause": {"description": "Disconnected by admin"}, "terminatedBy": []});
    assert_eq!(
        app.post_cloudevent("org.jenkinsci.node.offline", "n2", &offline)
            .await
            .status()
            .as_u16(),
        200
    );
    let created = json!({"userId": "admin", "userName": "Admin", "status": "CREATED", "name": "new-job",
        "displayName": "new-job", "url": "job/new-job/", "createdDate": T0, "configFile": "<project/>"});
    assert_eq!(
        app.post_cloudevent("org.jenkinsci.job.created", "j1", &created)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.post_cloudevent("org.jenkinsci.job.updated", "j2", &created)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.row_counts().await.events, 4);
    // The same CloudEvent id again is a redelivery.
    let again = app
        .post_cloudevent("org.jenkinsci.node.online", "n1", &node)
        .await;
    let reply: serde_json::Value = again.json().await.unwrap();
    assert_eq!(reply["duplicates"], 1);
    let (_, metrics) = (0, app.metrics().await);
    assert!(metrics.contains(r#"autopilot_webhook_events_total{outcome="stored",source="cloudevents",type="node.online"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"autopilot_webhook_events_total{outcome="duplicate",source="cloudevents",type="node.online"} 1"#));
}

#[tokio::test]
async fn structured_mode_is_accepted() {
    let app = spawn_app().await;
    let envelope = json!({
        "specversion": "1.0", "id": "9f1c", "source": "job/app", "type": "org.jenkinsci.queue.entered_waiting",
        "datacontenttype": "application/json",
        "data": payload::ce_queue(33, "app", "ENTERED_WAITING", T0, None, Some("Waiting for next available executor on ‘arm64’"))
    });
    let resp = app
        .client
        .post(app.url(&format!("/webhooks/cloudevents?token={TOKEN}")))
        .header(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let items = app.queue().await;
    assert_eq!(items[0]["label"], "arm64");
}

#[tokio::test]
async fn unknown_type_is_acknowledged_counted_and_not_stored() {
    let app = spawn_app().await;
    let resp = app
        .post_cloudevent("org.jenkinsci.item.deleted", "x1", &json!({"name": "old"}))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(reply["ignored"], "org.jenkinsci.item.deleted");
    assert_eq!(app.row_counts().await.events, 0);
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"autopilot_webhook_events_total{outcome="ignored",source="cloudevents",type="untracked"} 1"#), "{metrics}");
}

#[tokio::test]
async fn the_plugins_documented_spellings_are_taken() {
    let app = spawn_app().await;
    // The documented `job.failed` event says FAILED; the README's `finalzed` type.
    let failed = payload::ce_job("job/app/", 3, 90, "FINALIZED", T0, 20_000, Some("FAILED"));
    let resp = app
        .post_cloudevent("org.jenkinsci.job.failed", "f1", &failed)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        app.build("ci.example.com", "app", 3).await["result"],
        "FAILURE"
    );
    let done = payload::ce_job("job/app/", 4, 91, "FINALIZED", T0, 20_000, Some("SUCCESS"));
    let resp = app
        .post_cloudevent("org.jenkinsci.job.finalzed", "f2", &done)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let b = app.build("ci.example.com", "app", 4).await;
    assert_eq!(
        (&b["phase"], &b["result"]),
        (&json!("finalized"), &json!("SUCCESS"))
    );
    // A spelling nobody sends: the build is kept, its result unknown, and counted.
    let odd = payload::ce_job("job/app/", 5, 92, "FINALIZED", T0, 20_000, Some("EXPLODED"));
    let resp = app
        .post_cloudevent("org.jenkinsci.job.finalized", "f3", &odd)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let b = app.build("ci.example.com", "app", 5).await;
    assert_eq!(b["phase"], "finalized");
    assert_eq!(b["result"], serde_json::Value::Null);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("build.result_unrecognized") && l.ends_with(" 1")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn statistics_project_and_checkout_events_are_taken() {
    let app = spawn_app().await;
    // A job created: acknowledged, not stored.
    let project = json!({"name": "app", "fullName": "app", "ciUrl": payload::ROOT,
        "status": "ACTIVE", "createdDate": T0, "updatedDate": T0, "userId": "alice"});
    let resp = app
        .post_webhook("/webhooks/statistics?controller=prod", &project)
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    // An SCM checkout of build #7: a stage of the build, from its URL.
    let checkout = json!({"startTime": T0, "endTime": T0 + 4_000, "buildUrl": "job/app/7/"});
    let resp = app
        .post_webhook("/webhooks/statistics?controller=prod", &checkout)
        .await;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 1);
    app.stop().await;
}
