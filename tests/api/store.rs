//! The store's group commit, on SQLite and PostgreSQL: many requests' events in one
//! transaction, folded in memory in arrival order, redeliveries skipped.

use crate::helpers::{Db, TestApp, fresh_postgres_url, spawn_with, test_settings};
use jenkins_autopilot::domain::{ControllerName, IngestEvent, JobName, Timestamp};
use jenkins_autopilot::ingest::{IngestContext, Ingested, cloudevents, notification};
use jenkins_autopilot::store::Store;
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

fn ctx() -> IngestContext {
    IngestContext {
        controller_override: None,
        default_controller: ControllerName::parse("default").unwrap(),
        received_at: Timestamp::from_millis(T0).unwrap(),
    }
}

fn events(i: Ingested) -> Vec<IngestEvent> {
    match i {
        Ingested::Events(e) => e,
        Ingested::Ignored { kind } => panic!("ignored {kind}"),
    }
}

fn ce(t: &str, data: serde_json::Value) -> Vec<IngestEvent> {
    let attrs = cloudevents::CeAttributes {
        specversion: Some("1.0".into()),
        id: Some("x".into()),
        ce_type: Some(t.into()),
        source: None,
    };
    events(cloudevents::parse(&attrs, data, &ctx()).unwrap())
}

fn note(phase: &str, ts: i64, duration: i64, status: Option<&str>) -> Vec<IngestEvent> {
    let mut build = json!({"full_url": "https://ci.example.com/job/app/3/", "number": 3, "queue_id": 77,
        "timestamp": ts, "duration": duration, "phase": phase, "url": "job/app/3/"});
    if let Some(s) = status {
        build["status"] = json!(s);
    }
    let body = json!({"name": "app", "url": "job/app/", "build": build});
    events(notification::parse(body.to_string().as_bytes(), &ctx()).unwrap())
}

async fn one_batch_folds_like_one_by_one(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres_url().await),
    };
    let store = Store::connect(&crate::helpers::database_settings(url), dir.path())
        .await
        .unwrap();
    let waiting = ce(
        "org.jenkinsci.queue.entered_waiting",
        json!({"ciUrl": "https://ci.example.com/",
        "displayName": "app", "entryTime": T0 - 20_000, "jenkinsQueueId": 77,
        "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on ‘linux’"}]}),
    );
    let left = ce(
        "org.jenkinsci.queue.left",
        json!({"ciUrl": "https://ci.example.com/", "displayName": "app",
        "entryTime": T0 - 20_000, "exitTime": T0, "jenkinsQueueId": 77}),
    );
    let started = note("STARTED", T0, 0, None);
    let completed = note("COMPLETED", T0 + 30_000, 30_000, Some("SUCCESS"));
    let requests: Vec<&[IngestEvent]> =
        vec![&completed, &left, &started, &completed, &waiting, &started];
    let stored = store
        .write_batch(&requests, Timestamp::from_millis(T0 + 40_000).unwrap())
        .await
        .unwrap();
    assert_eq!(stored, [1, 1, 1, 0, 1, 0]);
    // A second batch with only redeliveries stores nothing.
    let again = store
        .write_batch(&requests, Timestamp::from_millis(T0 + 50_000).unwrap())
        .await
        .unwrap();
    assert_eq!(again, [0, 0, 0, 0, 0, 0]);

    let controller = ControllerName::parse("ci.example.com").unwrap();
    let b = store
        .get_build(&controller, &JobName::parse("app").unwrap(), 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.queue_wait_ms, Some(20_000));
    assert_eq!(b.duration_ms, Some(30_000));
    assert_eq!(b.label.as_deref(), Some("linux"));
    assert!(store.waiting_queue(None).await.unwrap().is_empty());
    let counts = store.row_counts().await.unwrap();
    assert_eq!(
        (counts.events, counts.builds, counts.queue_items),
        (4, 1, 1)
    );

    // Many builds in one batch: more rows than one statement chunk holds.
    let many: Vec<Vec<IngestEvent>> = (1..=250u64)
        .map(|n| {
            let body = json!({"name": "bulk", "url": "job/bulk/", "build": {"number": n, "phase": "STARTED", "timestamp": T0}});
            events(notification::parse(body.to_string().as_bytes(), &ctx()).unwrap())
        })
        .collect();
    let refs: Vec<&[IngestEvent]> = many.iter().map(Vec::as_slice).collect();
    let stored = store
        .write_batch(&refs, Timestamp::from_millis(T0).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.iter().sum::<usize>(), 250);
    assert_eq!(store.row_counts().await.unwrap().builds, 251);
    store.close().await;
}

#[tokio::test]
async fn one_batch_folds_like_one_by_one_sqlite() {
    one_batch_folds_like_one_by_one(Db::Sqlite).await;
}

#[tokio::test]
async fn one_batch_folds_like_one_by_one_postgres() {
    one_batch_folds_like_one_by_one(Db::Postgres).await;
}

async fn decisions_are_kept_to_their_retention(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres_url().await),
    };
    let store = Store::connect(&crate::helpers::database_settings(url), dir.path())
        .await
        .unwrap();
    for (seq, at) in [(1, T0 - 40 * 86_400_000), (2, T0 - 86_400_000), (3, T0)] {
        let d = jenkins_autopilot::store::DecisionRecord {
            pool: "linux".into(),
            decided_at: Timestamp::from_millis(at).unwrap(),
            seq,
            trigger: jenkins_autopilot::scaling::plan::Trigger::Periodic,
            current: Some(2),
            recommended: Some(1),
            desired: Some(2),
            rule: jenkins_autopilot::scaling::Rule::Stabilized,
            reason: "kept by the window".into(),
            outcome: jenkins_autopilot::domain::Outcome::Unchanged,
            error: None,
            inputs: serde_json::from_value(json!({"queued": 0})).unwrap(),
        };
        store.insert_decision(&d).await.unwrap();
    }
    let cutoff = Timestamp::from_millis(T0 - 30 * 86_400_000).unwrap();
    assert_eq!(store.delete_decisions_before(cutoff).await.unwrap(), 1);
    let left = store
        .decisions("linux", Timestamp::from_millis(0).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [3, 2],
        "newest first"
    );
    assert_eq!(left[0].inputs.queued, Some(0));
    store.close().await;
}

#[tokio::test]
async fn decisions_are_kept_to_their_retention_sqlite() {
    decisions_are_kept_to_their_retention(Db::Sqlite).await;
}

#[tokio::test]
async fn decisions_are_kept_to_their_retention_postgres() {
    decisions_are_kept_to_their_retention(Db::Postgres).await;
}

async fn events_are_kept_to_their_retention_and_records_stay(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres_url().await),
    };
    let store = Store::connect(&crate::helpers::database_settings(url), dir.path())
        .await
        .unwrap();
    const DAY: i64 = 86_400_000;
    // 5,200 events received 100 days back (more than one deletion batch), 10 just now.
    for (first, count, received) in [(1u64, 5_200u64, T0 - 100 * DAY), (10_001, 10, T0)] {
        let all: Vec<Vec<IngestEvent>> = (first..first + count)
            .map(|n| {
                let body = json!({"name": "old", "url": "job/old/", "build": {"number": n, "phase": "STARTED", "timestamp": T0}});
                events(notification::parse(body.to_string().as_bytes(), &ctx()).unwrap())
            })
            .collect();
        for chunk in all.chunks(500) {
            let refs: Vec<&[IngestEvent]> = chunk.iter().map(Vec::as_slice).collect();
            store
                .write_batch(&refs, Timestamp::from_millis(received).unwrap())
                .await
                .unwrap();
        }
    }
    let cutoff = Timestamp::from_millis(T0 - 90 * DAY).unwrap();
    assert_eq!(store.delete_events_before(cutoff).await.unwrap(), 5_200);
    let counts = store.row_counts().await.unwrap();
    assert_eq!(counts.events, 10);
    assert_eq!(counts.builds, 5_210, "build records stay");
    store.close().await;
}

#[tokio::test]
async fn events_are_kept_to_their_retention_and_records_stay_sqlite() {
    events_are_kept_to_their_retention_and_records_stay(Db::Sqlite).await;
}

#[tokio::test]
async fn events_are_kept_to_their_retention_and_records_stay_postgres() {
    events_are_kept_to_their_retention_and_records_stay(Db::Postgres).await;
}

#[tokio::test]
async fn each_event_is_told_stored_or_duplicate_whatever_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&crate::helpers::database_settings(None), dir.path())
        .await
        .unwrap();
    let started = note("STARTED", T0, 0, None);
    let completed = note("COMPLETED", T0 + 30_000, 30_000, Some("SUCCESS"));
    let now = Timestamp::from_millis(T0 + 40_000).unwrap();
    store.write_batch(&[&started], now).await.unwrap();
    // The duplicate comes first in the request, the new event second.
    let both: Vec<IngestEvent> = started.iter().chain(&completed).cloned().collect();
    let flags = store.write_batch_events(&[&both], now).await.unwrap();
    assert_eq!(flags, [vec![false, true]]);
}

#[tokio::test]
async fn queue_items_jenkins_no_longer_lists_are_closed_whatever_the_queue_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&crate::helpers::database_settings(None), dir.path())
        .await
        .unwrap();
    let waiting = |id: u64| {
        ce(
            "org.jenkinsci.queue.entered_waiting",
            json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "entryTime": T0,
                "jenkinsQueueId": id,
                "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on ‘linux’"}]}),
        )
    };
    let (a, b) = (waiting(5), waiting(6));
    let now = Timestamp::from_millis(T0 + 600_000).unwrap();
    store.write_batch(&[&a, &b], now).await.unwrap();
    let controller = ControllerName::parse("ci.example.com").unwrap();
    // Jenkins lists item 5 among twelve thousand others; item 6 is gone.
    let present: Vec<u64> = std::iter::once(5).chain(100_000..112_000).collect();
    let grace = Timestamp::from_millis(T0 + 60_000).unwrap();
    let closed = store
        .close_missing_queue_items(&controller, &present, grace, now)
        .await
        .unwrap();
    assert_eq!(closed, 1);
    let waiting: Vec<u64> = store
        .waiting_queue(Some(&controller))
        .await
        .unwrap()
        .iter()
        .map(|q| q.queue_id)
        .collect();
    assert_eq!(waiting, [5]);
}

/// Two replicas on one PostgreSQL, each taking a random half of a shuffled stream of
/// events for 1,000 builds, both sending at once: the records equal, field by field, those
/// one process folds from the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_fold_the_same_records_as_one() {
    use futures_util::StreamExt;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let t0 = 1_700_000_000_000i64;
    // Every build's events: queued, started, completed, finalized (Notification), and a
    // Statistics Gatherer start that names the node and label.
    let mut events: Vec<(&'static str, serde_json::Value)> = Vec::new();
    for n in 1..=1000u64 {
        let job = format!("job/race-{}/", n % 7);
        let name = format!("race-{}", n % 7);
        let at = t0 + n as i64 * 1000;
        for (phase, status, ts) in [
            ("QUEUED", None, at),
            ("STARTED", None, at + 5_000),
            ("COMPLETED", Some("SUCCESS"), at + 65_000),
            ("FINALIZED", Some("SUCCESS"), at + 66_000),
        ] {
            events.push((
                "/webhooks/notification",
                crate::helpers::payload::notification(&job, &name, n, phase, ts, 60_000, status),
            ));
        }
        events.push((
            "/webhooks/statistics",
            serde_json::json!({"ciUrl": "https://ci.example.com/", "jobName": name, "fullJobName": name,
                "number": n, "slaveInfo": {"slaveName": format!("agent-{}", n % 5), "label": "linux", "executor": "0"},
                "startTime": at + 4_000, "result": "INPROGRESS", "duration": 0, "queueTime": 4_000,
                "buildUrl": format!("{job}{n}/")}),
        ));
    }
    // Shuffled within windows of 50 builds: events of one build arrive at both replicas
    // at the same moment.
    for w in events.chunks_mut(250) {
        w.shuffle(&mut rng);
    }
    let send =
        async |apps: &[&TestApp], events: &[(&'static str, serde_json::Value)], split: bool| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let picks: Vec<usize> = events
                .iter()
                .map(|_| {
                    if split {
                        rng.random_range(0..apps.len())
                    } else {
                        0
                    }
                })
                .collect();
            for (w, p) in events.chunks(250).zip(picks.chunks(250)) {
                let codes: Vec<u16> = futures_util::stream::iter(w.iter().zip(p))
                    .map(|((path, body), &i)| async move {
                        apps[i]
                            .post_webhook(&format!("{path}?controller=prod"), body)
                            .await
                            .status()
                            .as_u16()
                    })
                    .buffer_unordered(64)
                    .collect()
                    .await;
                assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
            }
        };
    let records = async |app: &TestApp| {
        let (status, body) = app
            .get_json("/api/v1/builds?controller=prod&limit=1000")
            .await;
        assert_eq!(status, 200);
        let mut v = body["builds"].as_array().unwrap().clone();
        v.sort_by_key(|b| (b["job"].as_str().unwrap().to_string(), b["number"].as_u64()));
        v
    };

    let (settings, _one_dir) = test_settings(Db::Postgres).await;
    let one = spawn_with(settings).await;
    send(&[&one], &events, false).await;

    let (settings, _a_dir) = test_settings(Db::Postgres).await;
    let b_dir = tempfile::tempdir().unwrap();
    let mut second = settings.clone();
    second.server.data_dir = b_dir.path().to_path_buf();
    let a = spawn_with(settings).await;
    let b = spawn_with(second).await;
    send(&[&a, &b], &events, true).await;

    let (expected, got) = (records(&one).await, records(&a).await);
    assert_eq!(expected.len(), 1000);
    assert_eq!(got.len(), 1000);
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(e, g, "the two writers folded this build differently");
    }
}

/// A rolling upgrade: the next release migrated the store while this one still runs (and
/// may restart). This release must start on it.
async fn this_release_starts_on_a_store_the_next_one_migrated(db: Db) {
    let (settings, dir) = test_settings(db).await;
    let store = Store::connect(&settings.database, dir.path())
        .await
        .unwrap();
    store.close().await;
    // What the next release's migration leaves: its row in the migrations table, and an
    // added column.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("autopilot.db").display()),
        Db::Postgres => settings.database.postgres_url().unwrap(),
    })
    .await
    .unwrap();
    for sql in [
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the next release', TRUE, X'00', 1)",
        "ALTER TABLE builds ADD COLUMN next_release_field TEXT",
    ] {
        let sql = if db == Db::Postgres {
            sql.replace("X'00'", "'\\x00'::bytea")
        } else {
            sql.to_string()
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    drop(conn);
    let app = spawn_with(settings).await;
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn this_release_starts_on_a_store_the_next_one_migrated_sqlite() {
    this_release_starts_on_a_store_the_next_one_migrated(Db::Sqlite).await;
}

#[tokio::test]
async fn this_release_starts_on_a_store_the_next_one_migrated_postgres() {
    this_release_starts_on_a_store_the_next_one_migrated(Db::Postgres).await;
}

/// The hourly purge finds expired events by `received_at` through an index: without one it
/// read the whole table under the write lock, and in the soak every webhook waited 3 s for
/// it once an hour.
#[tokio::test]
async fn the_purge_of_expired_events_reads_an_index_not_the_table() {
    let (settings, dir) = test_settings(Db::Sqlite).await;
    let app = spawn_with(settings).await;
    let mut conn = crate::helpers::sqlite_in(dir.path()).await;
    // The purge's own selection (Store::delete_events_before), as SQLite plans it: (id, parent,
    // notused, detail) rows.
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT idempotency_key FROM events WHERE received_at < 1 LIMIT 5000",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| sqlx::Row::get::<String, _>(r, 3))
    .collect();
    assert!(
        plan.iter().any(|d| d.contains("events_received_at")),
        "the purge scans: {plan:?}"
    );
    drop(app);
}
