//! `report --range R` over a store of 1,000,000 builds on SQLite: a year of history by
//! default (BENCH_DAYS puts the builds in fewer days: twice the range puts every build in
//! the range or the range before, the trend's baseline: the worst case). 200 jobs, one pool
//! with a decision every 10 s of the last 30 days. Prints the time of the report (the
//! `report` command's work without the process start) read from the builds alone, then
//! the time to roll the store up, then the report read from the rollups (whole hours and
//! UTC days) and the builds at the edges, in the same run.
//! Run: `BENCH_DAYS=120 BENCH_RANGE=60d cargo bench --bench report` (BENCH_BUILDS to
//! change the count; BENCH_RANGE defaults to 30d).

use jenkins_autopilot::analytics::{Range, performance};
use jenkins_autopilot::config::{PoolSettings, Settings};
use jenkins_autopilot::domain::Timestamp;
use jenkins_autopilot::store::{Measure, Store};
use sqlx::Connection;
use std::time::Instant;

const DAY: i64 = 86_400_000;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let builds: i64 = std::env::var("BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 20_000 } else { 1_000_000 });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None, Vec::new()).unwrap();
        settings.server.data_dir = dir.path().to_path_buf();
        let pool: PoolSettings = serde_yaml::from_str(
            "{controller: prod, label: linux, namespace: ci, deployment: agents}",
        )
        .unwrap();
        settings.scaling.pools.insert("linux".into(), pool);
        let store = Store::connect(&settings.database, dir.path()).await.unwrap();
        store.close().await;

        let days: i64 = std::env::var("BENCH_DAYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 60 } else { 365 });
        let now = Timestamp::now().millis();
        let start = now - days * DAY;
        let loading = Instant::now();
        let url = format!("sqlite://{}", dir.path().join("autopilot.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let step = (days * DAY) / builds;
        let mut values = Vec::with_capacity(500);
        for i in 0..builds {
            let started = start + i * step;
            let duration = 60_000 + (i * 7919) % 1_200_000;
            let wait = (i * 104_729) % 120_000;
            let result = if i % 10 == 0 { "FAILURE" } else { "SUCCESS" };
            values.push(format!(
                "('prod', 'job-{}', {i}, {i}, 'finalized', 'linux', 'agent', {}, {started}, {}, {wait}, {duration}, '{result}', '{{}}', {started}, {started})",
                i % 200,
                started - wait,
                started + duration
            ));
            if values.len() == 500 || i == builds - 1 {
                let sql = format!(
                    "INSERT INTO builds (controller, job, number, queue_id, phase, label, node, queued_at, started_at, finished_at, queue_wait_ms, duration_ms, result, parameters, sort_at, updated_at) VALUES {}",
                    values.join(", ")
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.unwrap();
                values.clear();
            }
        }
        // A decision every 10 s over the last 30 days.
        let decisions = 30 * DAY / 10_000;
        for chunk in (0..decisions).collect::<Vec<_>>().chunks(500) {
            let rows: Vec<String> = chunk
                .iter()
                .map(|k| {
                    let replicas = 5 + (k / 360) % 20;
                    format!(
                        "('linux', {}, {k}, 'periodic', {replicas}, {replicas}, {replicas}, 'demand', 'r', 'dry-run', NULL, '{{}}')",
                        now - 30 * DAY + k * 10_000
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO scaling_decisions (pool, decided_at, seq, trigger_kind, current_replicas, recommended, desired, rule, reason, outcome, error, inputs) VALUES {}",
                rows.join(", ")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        // Rows written around the store's write path: their hours are marked for the
        // rollups as the migration marks a store's existing builds.
        sqlx::query(
            "INSERT INTO rollup_stale (hour, mark) SELECT DISTINCT (finished_at / 3600000) * 3600000, 0 \
             FROM builds WHERE finished_at IS NOT NULL",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        println!(
            "report benchmark: {builds} builds over {days} days and {decisions} decisions loaded in {:.1} s",
            loading.elapsed().as_secs_f64()
        );

        let store = Store::connect(&settings.database, dir.path()).await.unwrap();
        let range_arg = std::env::var("BENCH_RANGE").unwrap_or_else(|_| "30d".into());
        let range = Range::parse(&range_arg, Timestamp::now()).unwrap();
        let report = async |what: &str, runs: u32| {
            let mut best = f64::MAX;
            for run in 1..=runs {
                let t = Instant::now();
                let report = performance::performance_report(
                    &store,
                    &settings,
                    range,
                    performance::Filter::default(),
                )
                .await
                .unwrap();
                let secs = t.elapsed().as_secs_f64();
                best = best.min(secs);
                println!(
                    "{what}, run {run}: report --range {range_arg} in {secs:.3} s ({} builds in the range, {} in the one before; {} regressions)",
                    report.builds,
                    (report.trends.demand.previous.unwrap_or(0.0) * range.hours()).round(),
                    report.regressions.len()
                );
                assert!(report.builds > 0);
            }
            best
        };
        // The store's size as SQLite counts it (pages, the write-ahead log included).
        let size_mb = async || {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let bytes: i64 = sqlx::query_scalar(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
            bytes as f64 / 1e6
        };
        let before_mb = size_mb().await;
        let from_builds = report("from the builds", 1).await;
        let t = Instant::now();
        let (mut hours, mut days) = (0, 0);
        loop {
            let done = store.roll_up(Timestamp::now(), 500).await.unwrap();
            hours += done.hours;
            days += done.days;
            if !done.left {
                break;
            }
        }
        let counts = store.rollup_counts().await.unwrap();
        println!(
            "rolled up {hours} hours and {days} days in {:.1} s: {} hour rows (the last {} days keep theirs), {} day rows; the store {before_mb:.0} MB before, {:.0} MB after",
            t.elapsed().as_secs_f64(),
            counts.hour_rows,
            jenkins_autopilot::store::HOUR_ROWS_KEPT_MS / DAY,
            counts.day_rows,
            size_mb().await
        );
        let rolled = report("from the rollups", 3).await;
        println!(
            "report --range {range_arg}: {from_builds:.3} s from the builds, {rolled:.3} s (best of 3) from the rollups: {:.1}x faster",
            from_builds / rolled
        );
        // Where the time goes: each aggregate the report reads, once.
        let prev = range.previous().unwrap();
        let t = Instant::now();
        let groups = store.build_groups(prev.from, range.from, range.to).await.unwrap();
        let t_groups = t.elapsed();
        let t = Instant::now();
        store.job_medians(prev.from, range.from, range.to).await.unwrap();
        let t_medians = t.elapsed();
        let t = Instant::now();
        for m in [Measure::Duration, Measure::QueueWait] {
            store.histogram(m, range.from, range.to, &[]).await.unwrap();
        }
        store.day_sums(range.from, range.to, &[]).await.unwrap();
        let t_hist = t.elapsed();
        let t = Instant::now();
        store.replica_steps("linux", range.from, range.to).await.unwrap();
        store.scale_events("linux", range.from, range.to).await.unwrap();
        let t_pool = t.elapsed();
        let t = Instant::now();
        store
            .costly_build_candidates(range.from, range.to, 0, 0.05, 0.01, 0.5, 100)
            .await
            .unwrap();
        let t_costly = t.elapsed();
        println!(
            "breakdown: groups {:.3} s ({} groups), medians {:.3} s, histograms and days {:.3} s, pool decisions {:.3} s, costly builds {:.3} s",
            t_groups.as_secs_f64(),
            groups.len(),
            t_medians.as_secs_f64(),
            t_hist.as_secs_f64(),
            t_pool.as_secs_f64(),
            t_costly.as_secs_f64()
        );
        store.close().await;
    });
}
