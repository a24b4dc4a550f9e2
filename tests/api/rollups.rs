//! Report rollups answer as the builds do. Two stores take the same events: one is
//! rolled up, the other never is (all its hours stay stale, so it reads every build).
//! Every report aggregate is compared between them over ranges that start and end inside
//! hours, on hour and on UTC-day boundaries, before and after late changes: a late build
//! in a rolled hour, a usage report for a rolled build, a build whose finish moves to
//! another hour and day.

use crate::helpers::{Db, database_settings, fresh_postgres_url};
use jenkins_autopilot::domain::{ControllerName, EventSource, IngestEvent, JobName, Timestamp};
use jenkins_autopilot::ingest::statistics::{self, StatisticsKind};
use jenkins_autopilot::ingest::{IngestContext, Ingested, notification};
use jenkins_autopilot::store::{BuildGroup, Measure, Store};
use serde_json::json;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// A UTC midnight.
const D0: i64 = 1_700_006_400_000;

fn ctx() -> IngestContext {
    IngestContext {
        controller_override: Some(ControllerName::parse("prod").unwrap()),
        default_controller: ControllerName::parse("prod").unwrap(),
        received_at: Timestamp::from_millis(D0).unwrap(),
    }
}

/// A finished build through Statistics Gatherer's two webhooks: `job` #`n` on `label`,
/// started at `start`, `duration` long, queued `wait` before.
fn build(
    job: &str,
    n: u64,
    label: &str,
    start: i64,
    duration: i64,
    wait: i64,
    result: &str,
) -> Vec<IngestEvent> {
    let started = json!({"ciUrl": "https://ci.example.com/", "jobName": job, "fullJobName": job, "number": n,
        "slaveInfo": {"slaveName": format!("{label}-1"), "label": label, "executor": "0"}, "startTime": start,
        "result": "INPROGRESS", "duration": 0, "queueTime": wait, "buildUrl": format!("job/{job}/{n}/")});
    let done = json!({"ciUrl": "https://ci.example.com/", "jobName": job, "fullJobName": job, "number": n,
        "result": result, "duration": duration, "buildUrl": format!("job/{job}/{n}/")});
    let mut out = Vec::new();
    for (i, body) in [started, done].into_iter().enumerate() {
        match statistics::parse(
            body.to_string().as_bytes(),
            Some(StatisticsKind::Build),
            &ctx(),
        )
        .unwrap()
        {
            Ingested::Events(mut e) => {
                for ev in &mut e {
                    ev.key = format!("{}-{i}-{start}-{duration}", ev.key);
                }
                out.extend(e)
            }
            Ingested::Ignored { kind } => panic!("ignored {kind}"),
        }
    }
    out
}

/// The Notification plugin's COMPLETED event for `job` #`n`, ending at `end`.
fn ended(job: &str, n: u64, end: i64) -> Vec<IngestEvent> {
    let body = json!({"name": job, "url": format!("job/{job}/"), "build": {
        "full_url": format!("https://ci.example.com/job/{job}/{n}/"), "number": n, "timestamp": end,
        "duration": 10_000, "phase": "COMPLETED", "status": "SUCCESS", "url": format!("job/{job}/{n}/")}});
    match notification::parse(body.to_string().as_bytes(), &ctx()).unwrap() {
        Ingested::Events(e) => e,
        Ingested::Ignored { kind } => panic!("ignored {kind}"),
    }
}

/// A usage report (autopilot.recordPerformance's body) for `job` #`n`, in each store.
async fn usage(stores: &[&Store], job: &str, n: u64, body: serde_json::Value) {
    let report =
        jenkins_autopilot::ingest::performance::parse(body.to_string().as_bytes()).unwrap();
    for s in stores {
        s.upsert_performance(
            &ControllerName::parse("prod").unwrap(),
            &JobName::parse(job).unwrap(),
            n,
            &report,
            Timestamp::from_millis(D0).unwrap(),
        )
        .await
        .unwrap();
    }
}

/// A small deterministic generator (the same sequence on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A new store, and its URL.
async fn store(db: Db, dir: &std::path::Path) -> (Store, String) {
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres_url().await),
    };
    let store = Store::connect(&database_settings(url.clone()), dir)
        .await
        .unwrap();
    let url = url.unwrap_or_else(|| format!("sqlite://{}", dir.join("autopilot.db").display()));
    (store, url)
}

/// Every aggregate the reports read, over `[from, split)` and `[split, to)`.
async fn reads(s: &Store, from: i64, split: i64, to: i64) -> String {
    let t = |ms: i64| Timestamp::from_millis(ms).unwrap();
    let (from, split, to) = (t(from), t(split), t(to));
    let mut groups = s.build_groups(from, split, to).await.unwrap();
    // Sums of products are rounded in the order they are added: compared to 9 digits.
    let round = |v: f64| format!("{v:.9e}");
    groups.sort_by(|a, b| {
        (&a.controller, &a.job, &a.label, &a.result, a.current).cmp(&(
            &b.controller,
            &b.job,
            &b.label,
            &b.result,
            b.current,
        ))
    });
    let groups: Vec<String> = groups
        .iter()
        .map(|g: &BuildGroup| {
            format!(
                "{} {} {:?} {:?} {} n={} d={} w={} ws={} u={} um={} cpu={} mem={}",
                g.controller,
                g.job,
                g.label,
                g.result,
                g.current,
                g.builds,
                g.duration_ms,
                g.wait_ms,
                g.waits,
                g.unreported,
                g.unreported_ms,
                round(g.cpu_m_ms),
                round(g.memory_b_ms)
            )
        })
        .collect();
    let mut medians = s.job_medians(from, split, to).await.unwrap();
    medians.sort_by(|a, b| {
        (&a.controller, &a.job, a.current).cmp(&(&b.controller, &b.job, b.current))
    });
    let mut out = format!("groups {groups:#?}\nmedians {medians:?}\n");
    for keep in [vec![], vec![("job", "job-3")], vec![("label", "big")]] {
        for m in [Measure::Duration, Measure::QueueWait] {
            let h = s.histogram(m, split, to, &keep).await.unwrap();
            out.push_str(&format!("histogram {m:?} {keep:?} {h:?}\n"));
        }
        let days = s.day_sums(from, to, &keep).await.unwrap();
        out.push_str(&format!("days {keep:?} {days:?}\n"));
    }
    out
}

/// Ranges: inside hours, on hours, on UTC days, a split inside an hour.
fn ranges() -> Vec<(i64, i64, i64)> {
    vec![
        (
            D0 - 5 * HOUR + 123,
            D0 + DAY + 7 * HOUR + 45_678,
            D0 + 3 * DAY - 1_234,
        ),
        (D0, D0 + 2 * DAY, D0 + 3 * DAY),
        (D0 - 3 * HOUR, D0 + 10 * HOUR, D0 + 2 * DAY + 5 * HOUR),
        (D0 + 30 * 60_000, D0 + 30 * 60_000, D0 + DAY + 30 * 60_000),
        (D0 - DAY, D0 + DAY, D0 + 4 * DAY),
    ]
}

async fn compare(rolled: &Store, raw: &Store, when: &str) {
    for (from, split, to) in ranges() {
        let (a, b) = (
            reads(rolled, from, split, to).await,
            reads(raw, from, split, to).await,
        );
        assert!(
            a == b,
            "{when}, range {from}..{split}..{to}:\nrolled up:\n{a}\nfrom the builds:\n{b}"
        );
    }
}

async fn rollups_answer_as_the_builds_do(db: Db) {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((rolled, rolled_url), (raw, raw_url)) =
        (store(db, d1.path()).await, store(db, d2.path()).await);
    // The rolled store reads builds 7 at a time (a snapshot each): every hour and day is
    // summed from several slices, and must sum as one read does.
    let rolled = rolled.with_read_slice(7);
    let both = async |events: Vec<IngestEvent>| {
        for s in [&rolled, &raw] {
            for chunk in events.chunks(200) {
                s.write_batch(&[chunk], Timestamp::from_millis(D0).unwrap())
                    .await
                    .unwrap();
            }
        }
    };
    // Three days and a bit of builds from 6 h before a UTC midnight: 12 jobs, two labels,
    // one in ten failed, some found by a backfill or the repair, waits known or not.
    let mut rng = Lcg(7);
    let mut events = Vec::new();
    let mut finished = Vec::new();
    let mut successes: Vec<(String, i64, i64)> = Vec::new();
    for n in 1..=900u64 {
        let job = format!("job-{}", rng.next(12));
        let start = D0 - 6 * HOUR + (n as i64) * 5 * 60_000 + rng.next(60_000) as i64;
        let duration = 1_000 + rng.next(1_800_000) as i64;
        let wait = rng.next(90_000) as i64;
        let label = if rng.next(3) == 0 { "big" } else { "linux" };
        let result = if rng.next(10) == 0 {
            "FAILURE"
        } else {
            "SUCCESS"
        };
        let mut e = build(&job, n, label, start, duration, wait, result);
        match rng.next(20) {
            0 => e.iter_mut().for_each(|e| e.source = EventSource::Backfill),
            1 => e.iter_mut().for_each(|e| e.source = EventSource::Repair),
            _ => {}
        }
        if result == "SUCCESS" {
            successes.push((job.clone(), start + duration, duration));
        }
        finished.push((job, n, start + duration));
        events.extend(e);
    }
    both(events).await;
    // Usage reports for one build in three (requests on some).
    for (i, (job, n, _)) in finished.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let mut body = json!({"type": "build", "elapsed_ms": 60_000,
            "usage": {"cpu_usage_usec": 30_000_000 + i as u64 * 7_919, "memory_peak_bytes": 500_000_000 + i as u64 * 104_729}});
        if i % 2 == 0 {
            body["requests"] = json!({"cpu": "1500m", "memory": "2Gi"});
        }
        usage(&[&rolled, &raw], job, *n, body).await;
    }
    compare(&rolled, &raw, "nothing rolled up yet").await;
    // Read in slices or in one, the finished builds come back the same, in finish order.
    let (from, to) = (
        Timestamp::from_millis(D0 - DAY).unwrap(),
        Timestamp::from_millis(D0 + 5 * DAY).unwrap(),
    );
    let (mut sliced, mut whole) = (Vec::new(), Vec::new());
    rolled
        .for_each_finished_build(from, to, |b| sliced.push(b))
        .await
        .unwrap();
    raw.clone()
        .with_read_slice(u32::MAX)
        .for_each_finished_build(from, to, |b| whole.push(b))
        .await
        .unwrap();
    assert_eq!(sliced.len(), finished.len());
    assert!(sliced.is_sorted_by_key(|b| b.finished_at));
    let key = |b: &jenkins_autopilot::store::PricedBuild| {
        (b.finished_at, b.controller.clone(), b.job.clone(), b.number)
    };
    sliced.sort_by_key(key);
    whole.sort_by_key(key);
    assert_eq!(sliced, whole);
    // The costly-build candidates too: the longest 5 of those past 20 minutes (or dear).
    let candidates = async |s: &Store| {
        s.costly_build_candidates(from, to, 20 * 60_000, 0.05, 0.01, 0.02, 5)
            .await
            .unwrap()
    };
    let (a, b) = (
        candidates(&rolled).await,
        candidates(&raw.clone().with_read_slice(u32::MAX)).await,
    );
    assert_eq!(a.len(), 5);
    assert_eq!(
        a.iter().map(|b| b.duration_ms).collect::<Vec<_>>(),
        b.iter().map(|b| b.duration_ms).collect::<Vec<_>>()
    );
    // The medians, counted by hand: the middle duration, or the mean of the two middle
    // ones, of each job's successful builds on each side.
    let (from, split, to) = ranges()[0];
    let mut by_hand: std::collections::BTreeMap<(String, bool), Vec<i64>> = Default::default();
    for (job, end, d) in successes
        .iter()
        .filter(|(_, end, _)| *end >= from && *end < to)
    {
        by_hand
            .entry((job.clone(), *end >= split))
            .or_default()
            .push(*d);
    }
    let t = |ms: i64| Timestamp::from_millis(ms).unwrap();
    let medians = raw.job_medians(t(from), t(split), t(to)).await.unwrap();
    assert_eq!(medians.len(), by_hand.len());
    let mut even = 0;
    for m in medians {
        let mut v = by_hand[&(m.job.clone(), m.current)].clone();
        v.sort();
        let n = v.len();
        let want = if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
        };
        even += usize::from(n.is_multiple_of(2));
        assert_eq!(
            (m.median_ms, m.builds),
            (want, n as u64),
            "{} {}",
            m.job,
            m.current
        );
    }
    assert!(even > 0, "some job has an even count");

    // Rolled up soon after: every day keeps its hour rows.
    let now = Timestamp::from_millis(D0 + 5 * DAY).unwrap();
    let mut passes = 0;
    loop {
        let done = rolled.roll_up(now, 25).await.unwrap();
        // The hours still behind after a pass are the stale ones (all are over by now).
        let stale = rolled.rollup_counts().await.unwrap().stale_hours;
        assert_eq!(done.behind as u64, stale, "{done:?}");
        if !done.left {
            break;
        }
        assert!(done.behind > 0, "{done:?}");
        passes += 1;
    }
    let counts = rolled.rollup_counts().await.unwrap();
    assert_eq!(counts.stale_hours, 0, "{counts:?}");
    assert!(
        counts.rolled_days >= 4 && counts.day_rows > 0 && counts.hour_rows > 0,
        "{counts:?}"
    );
    assert!(passes >= 3, "25 hours a pass: {passes}");
    assert_eq!(raw.rollup_counts().await.unwrap().hour_rows, 0);
    compare(&rolled, &raw, "rolled up").await;

    // Late changes land in rolled hours and days: each store reads them at once.
    let mut late = build(
        "job-3",
        5_000,
        "big",
        D0 + 10 * HOUR + 5,
        42_000,
        7_000,
        "SUCCESS",
    );
    // Build 2 (finished early on the first day) is reported again as ending a day later.
    let (job, n, at) = finished[1].clone();
    late.extend(ended(&job, n, at + DAY + 2 * HOUR));
    both(late).await;
    let moved = rolled
        .get_build(
            &ControllerName::parse("prod").unwrap(),
            &JobName::parse(&job).unwrap(),
            n,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        moved.finished_at.unwrap().millis(),
        at + DAY + 2 * HOUR,
        "{moved:?}"
    );
    let (job, n, _) = &finished[400];
    let body = json!({"type": "build", "elapsed_ms": 1, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1},
        "requests": {"cpu": "8", "memory": "16Gi"}});
    usage(&[&rolled, &raw], job, *n, body).await;
    let stale = rolled.rollup_counts().await.unwrap().stale_hours;
    assert!(stale >= 3, "{stale}");
    compare(&rolled, &raw, "late changes, not rolled up").await;
    while rolled.roll_up(now, 25).await.unwrap().left {}
    assert_eq!(rolled.rollup_counts().await.unwrap().stale_hours, 0);
    compare(&rolled, &raw, "late changes rolled up").await;

    // Months later the days keep only their day rows; edges inside days read the builds.
    while rolled.roll_up(Timestamp::now(), 25).await.unwrap().left {}
    let counts = rolled.rollup_counts().await.unwrap();
    assert_eq!((counts.stale_hours, counts.hour_rows), (0, 0), "{counts:?}");
    assert!(counts.day_rows > 0, "{counts:?}");
    compare(&rolled, &raw, "hour rows dropped").await;

    // A writer that marks no hour (the release before this one, during a rolling
    // upgrade): the next pass finds its change by when it was made.
    sqlx::any::install_default_drivers();
    let (job, n, _) = finished[300].clone();
    for url in [&rolled_url, &raw_url] {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE builds SET duration_ms = duration_ms + 60000, updated_at = $1 \
             WHERE job = $2 AND number = $3",
        )
        .bind(Timestamp::now().millis())
        .bind(job.clone())
        .bind(n as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let (from, split, to) = ranges()[1];
    let stale = reads(&rolled, from, split, to).await != reads(&raw, from, split, to).await;
    assert!(stale, "the rollups do not know the change yet");
    rolled.roll_up(Timestamp::now(), 25).await.unwrap();
    compare(&rolled, &raw, "a change no writer marked, rolled up").await;
    let counts = rolled.rollup_counts().await.unwrap();
    assert_eq!(
        (counts.stale_hours, counts.hour_rows),
        (0, 0),
        "an old day is summed again whole: {counts:?}"
    );
}

#[tokio::test]
async fn rollups_answer_as_the_builds_do_sqlite() {
    rollups_answer_as_the_builds_do(Db::Sqlite).await;
}

#[tokio::test]
async fn rollups_answer_as_the_builds_do_postgres() {
    rollups_answer_as_the_builds_do(Db::Postgres).await;
}

/// Marks of one hour's writes: a row per writer, not per write. Before, each of these
/// writes added its own row (a busy hour made a million and a half, and removing them
/// held the writer for seconds). Builds finished in an hour rolled while writers keep
/// writing into it come out exact once the writes stop.
async fn an_hour_keeps_a_mark_per_writer(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (s, url) = store(db, dir.path()).await;
    let raw_dir = tempfile::tempdir().unwrap();
    let (raw, _) = store(db, raw_dir.path()).await;
    let hour = D0 + 3 * HOUR;
    let writes = async |s: &Store, from: u64, to: u64| {
        for n in from..to {
            let e = build(
                "busy",
                n + 1,
                "linux",
                hour + n as i64 * 1_000,
                500,
                100,
                "SUCCESS",
            );
            s.write_batch(&[&e], Timestamp::from_millis(D0).unwrap())
                .await
                .unwrap();
        }
    };
    // Writers on every write connection at once, into the same hour.
    futures_util::future::join_all((0..4).map(|w| writes(&s, w * 60, w * 60 + 60))).await;
    writes(&raw, 0, 240).await;
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollup_stale WHERE hour = $1")
        .bind(hour)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let most = match db {
        Db::Sqlite => 1,
        Db::Postgres => 4,
    };
    assert!(
        (1..=most).contains(&rows),
        "{rows} mark rows for 240 writes"
    );
    // Rolls beside more writes into the rolled hour: the hour stays marked until a roll
    // that saw every write, and then reads as the builds do.
    let now = Timestamp::from_millis(D0 + DAY).unwrap();
    let more = writes(&s, 240, 400);
    let rolls = async {
        for _ in 0..20 {
            s.roll_up(now, 5).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(more, rolls);
    writes(&raw, 240, 400).await;
    while s.roll_up(now, 5).await.unwrap().left {}
    let counts = s.rollup_counts().await.unwrap();
    assert_eq!(counts.stale_hours, 0, "{counts:?}");
    assert!(counts.hour_rows > 0, "{counts:?}");
    let (from, to) = (D0, D0 + DAY);
    assert_eq!(
        reads(&s, from, hour + HOUR, to).await,
        reads(&raw, from, hour + HOUR, to).await
    );
}

#[tokio::test]
async fn an_hour_keeps_a_mark_per_writer_sqlite() {
    an_hour_keeps_a_mark_per_writer(Db::Sqlite).await;
}

#[tokio::test]
async fn an_hour_keeps_a_mark_per_writer_postgres() {
    an_hour_keeps_a_mark_per_writer(Db::Postgres).await;
}

/// An hour that was rolled is not rolled again for changes its roll already summed: the
/// look-back for writes that mark nothing used to mark a busy hour that had just ended
/// again at every pass (six seconds of a core each for 576,000 builds in the soak), for as
/// long as its last writes stayed inside the look-back.
#[tokio::test]
async fn an_hour_rolled_is_not_rolled_again_for_what_it_summed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = store(Db::Sqlite, dir.path()).await;
    let written = D0 + 2 * DAY;
    let hour = written - 2 * HOUR;
    for n in 1..=20u64 {
        let e = build(
            "late",
            n,
            "linux",
            hour + n as i64 * 1_000,
            500,
            100,
            "SUCCESS",
        );
        s.write_batch(&[&e], Timestamp::from_millis(written).unwrap())
            .await
            .unwrap();
    }
    let at = |ms: i64| Timestamp::from_millis(ms).unwrap();
    let first = s.roll_up(at(written + 60_000), 10).await.unwrap();
    assert_eq!(first.hours, 1, "{first:?}");
    // The next passes look back over the same writes: nothing new to sum.
    for pass in 2..=3 {
        let again = s.roll_up(at(written + pass * 60_000), 10).await.unwrap();
        assert_eq!(again.hours, 0, "pass {pass}: {again:?}");
    }
    // A change the roll did not see is summed.
    let late = ended("late", 3, hour + 30 * 60_000);
    s.write_batch(&[&late], at(written + 200_000))
        .await
        .unwrap();
    let after = s.roll_up(at(written + 240_000), 10).await.unwrap();
    assert!(after.hours >= 1, "{after:?}");
}

/// An hour is first rolled 5 minutes after it ends: the late events of its last builds
/// come in first, and it is summed once, not once more for each of them (two or three
/// times over, seconds of a core each, in the soak).
#[tokio::test]
async fn an_hour_is_rolled_once_the_late_events_of_its_last_builds_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = store(Db::Sqlite, dir.path()).await;
    let at = |ms: i64| Timestamp::from_millis(ms).unwrap();
    let hour = D0 + 2 * DAY;
    let end = hour + HOUR;
    // A build that finished a second before the hour ended, written as it ended, and
    // another whose completion arrives 90 s late.
    let e = build("edge", 1, "linux", end - 61_000, 60_000, 100, "SUCCESS");
    s.write_batch(&[&e], at(end)).await.unwrap();
    let one_minute_after = s.roll_up(at(end + 60_000), 10).await.unwrap();
    assert_eq!(one_minute_after.hours, 0, "{one_minute_after:?}");
    assert_eq!(
        one_minute_after.behind, 0,
        "not due yet: {one_minute_after:?}"
    );
    let late = ended("edge", 2, end - 1_000);
    s.write_batch(&[&late], at(end + 90_000)).await.unwrap();
    let rolled = s.roll_up(at(end + 5 * 60_000), 10).await.unwrap();
    assert_eq!(rolled.hours, 1, "{rolled:?}");
    for pass in 6..=8 {
        let again = s.roll_up(at(end + pass * 60_000), 10).await.unwrap();
        assert_eq!(again.hours, 0, "minute {pass}: {again:?}");
    }
}
