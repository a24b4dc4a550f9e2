use crate::helpers::{payload, spawn_app};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

#[tokio::test]
async fn build_queue_and_buildstep_payloads() {
    let app = spawn_app().await;
    // QueueStatsListener.onEnterWaiting, then onLeft.
    let entered = json!({"ciUrl": payload::ROOT, "jobName": "team/app", "entryTime": T0 - 8_000, "exitTime": null,
        "startedBy": "SCM", "jenkinsQueueId": 61, "status": "ENTERED", "contextId": 0, "duration": 0,
        "queueCauses": [{"type": "waiting", "entryTime": T0 - 8_000, "exitTime": null,
            "reasonForWaiting": "Waiting for next available executor on ‘linux’"}]});
    assert_eq!(app.post_statistics(&entered).await.status().as_u16(), 200);
    assert_eq!(app.queue().await[0]["job"], "team/app");
    let left = json!({"ciUrl": payload::ROOT, "jobName": "team/app", "entryTime": T0 - 8_000, "exitTime": T0,
        "startedBy": "", "jenkinsQueueId": 61, "status": "LEFT", "contextId": 55, "duration": 8_000, "queueCauses": []});
    assert_eq!(app.post_statistics(&left).await.status().as_u16(), 200);
    assert!(app.queue().await.is_empty());
    // RunStatsListener.onStarted and onFinalized.
    let started = json!({"ciUrl": payload::ROOT, "jobName": "app", "fullJobName": "team/app", "number": 21,
        "slaveInfo": {"slaveName": "agent-2", "label": "linux", "executor": "1"}, "startTime": T0, "endTime": T0 + 1,
        "startedUserId": "SCM", "startedUserName": "SYSTEM", "result": "INPROGRESS", "duration": 0,
        "parameters": {"X": "1"}, "scmInfo": {"url": "https://git/app.git", "branch": "main", "commit": "abc"},
        "queueTime": 8_000, "buildUrl": "job/team/job/app/21/", "contextId": 55, "buildCause": "SCM", "buildFailureCauses": []});
    let finalized = json!({"ciUrl": payload::ROOT, "jobName": "app", "fullJobName": "team/app", "number": 21,
        "slaveInfo": {}, "startTime": T0 + 70_000, "endTime": T0 + 61_000, "startedUserId": "", "startedUserName": "",
        "result": "SUCCESS", "duration": 60_000, "parameters": {}, "scmInfo": {"url": "https://git/app.git", "branch": "main", "commit": "abc"},
        "queueTime": 0, "buildUrl": "job/team/job/app/21/", "contextId": 0, "buildCause": "", "buildFailureCauses": []});
    assert_eq!(app.post_statistics(&started).await.status().as_u16(), 200);
    assert_eq!(app.post_statistics(&finalized).await.status().as_u16(), 200);
    // BuildStepStatsListener.started and finished.
    let step_start = json!({"startTime": T0 + 1_000, "endTime": 0, "buildUrl": "job/team/job/app/21/",
        "buildStepType": "hudson.tasks.Shell", "buildStepId": "hudson.tasks.Shell@5e1f"});
    let step_end = json!({"startTime": 0, "endTime": T0 + 50_000, "buildUrl": "job/team/job/app/21/",
        "buildStepType": "hudson.tasks.Shell", "buildStepId": "hudson.tasks.Shell@5e1f"});
    assert_eq!(
        app.post_webhook("/webhooks/statistics?type=buildstep", &step_start)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.post_statistics(&step_end).await.status().as_u16(), 200);

    let b = app.build("ci.example.com", "team/app", 21).await;
    assert_eq!(b["result"], "SUCCESS");
    assert_eq!(
        b["started_at"], T0,
        "the finalized payload's startTime is construction time, not read"
    );
    assert_eq!(b["queue_wait_ms"], 8_000);
    assert_eq!(b["duration_ms"], 60_000);
    assert_eq!(b["node"], "agent-2");
    assert_eq!(app.row_counts().await.events, 6);
}

#[tokio::test]
async fn unknown_type_query_is_refused() {
    let app = spawn_app().await;
    let resp = app
        .post_webhook("/webhooks/statistics?type=artifact", &json!({"x": 1}))
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "type");
}
