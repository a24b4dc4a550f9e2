//! The performance report on a known data set: every field, every format, and the CLI.

use crate::helpers::{
    Db, TestApp, dry_run_decision, pool_settings, record_decisions, spawn_with, statistics_build,
};
use serde_json::{Value, json};

const H: i64 = 3_600_000;
const S: i64 = 1000;
const T0: i64 = 1_790_000_000_000;

async fn known_app(db: Db) -> (TestApp, tempfile::TempDir) {
    let (settings, dir) = pool_settings(db).await;
    let app = spawn_with(settings).await;
    record_decisions(
        &app,
        &[
            dry_run_decision(T0, 1, 0, 2),
            dry_run_decision(T0 + 24 * H, 2, 2, 1),
            dry_run_decision(T0 + 25 * H, 3, 1, 1),
        ],
    )
    .await;
    // The range before: app #1 and #2, 100 s each after 10 s in the queue.
    statistics_build(
        &app,
        "app",
        1,
        "linux",
        T0 - 30 * H,
        10 * S,
        100 * S,
        "SUCCESS",
    )
    .await;
    statistics_build(
        &app,
        "app",
        2,
        "linux",
        T0 - 20 * H,
        10 * S,
        100 * S,
        "SUCCESS",
    )
    .await;
    // The range, day 0: app #3 100 s, #4 150 s (slower than 120 s: the first slow one),
    // lib #1 failed after 60 s and 10 min in the queue. Day 1: app #5 160 s.
    statistics_build(&app, "app", 3, "linux", T0 + H, 0, 100 * S, "SUCCESS").await;
    statistics_build(
        &app,
        "app",
        4,
        "linux",
        T0 + 2 * H,
        20 * S,
        150 * S,
        "SUCCESS",
    )
    .await;
    statistics_build(
        &app,
        "lib",
        1,
        "linux",
        T0 + 3 * H,
        600 * S,
        60 * S,
        "FAILURE",
    )
    .await;
    statistics_build(
        &app,
        "app",
        5,
        "linux",
        T0 + 30 * H,
        40 * S,
        160 * S,
        "SUCCESS",
    )
    .await;
    (app, dir)
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - want).abs() < 1e-3 * want.abs().max(1.0))
}

#[tokio::test]
async fn every_field_of_the_performance_report_on_a_known_data_set_on_sqlite() {
    every_report_field(Db::Sqlite).await;
}

#[tokio::test]
async fn every_field_of_the_performance_report_on_a_known_data_set_on_postgres() {
    every_report_field(Db::Postgres).await;
}

async fn every_report_field(db: Db) {
    let (app, dir) = known_app(db).await;
    let range = format!("{T0}..{}", T0 + 48 * H);
    let (status, r) = app
        .get_json(&format!("/api/v1/reports/performance?range={range}"))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["range"]["from"], T0);
    assert_eq!(r["range"]["to"], T0 + 48 * H);
    assert_eq!(
        r["filter"],
        json!({"controller": null, "job": null, "label": null})
    );
    assert_eq!(r["builds"], 4);
    assert_eq!(r["results"], json!({"FAILURE": 1, "SUCCESS": 3}));
    assert!(
        close(&r["success_rate"], 0.75) && close(&r["error_rate"], 0.25),
        "{r}"
    );
    assert!(close(&r["demand_per_hour"], 4.0 / 48.0), "{r}");
    // Waits 0, 20 s, 40 s, 600 s; durations 100, 150, 60, 160 s.
    assert_eq!(
        r["queue_wait"],
        json!({"count": 4, "mean_ms": 165000.0, "p50_ms": 20000, "p95_ms": 600000})
    );
    assert_eq!(
        r["duration"],
        json!({"count": 4, "mean_ms": 117500.0, "p50_ms": 100000, "p95_ms": 160000})
    );
    assert_eq!(r["scaling"]["scale_ups"], 1);
    assert_eq!(r["scaling"]["scale_downs"], 1);
    assert_eq!(r["scaling"]["pools"]["linux"], json!([1, 1]));
    // 2 agents for 24 h, then 1 for 24 h: 72 agent-hours.
    // Agent 1 CPU, 2Gi: 0.07 an hour: 72 x 0.07 = 5.04 (cost rounds to 4 decimals).
    let c = &r["cost"];
    assert_eq!(c["currency"], "USD");
    assert!(close(&c["total"], 5.04), "{c}");
    // Builds ran 470 s = 0.1306 h of 72: efficiency 0.2 %.
    assert!(close(&c["efficiency"], 0.002), "{c}");
    assert!(close(&c["idle"], 5.04 - 470.0 / 3600.0 * 0.07), "{c}");
    assert!(close(&c["monthly_projection"], 5.04 / 48.0 * 730.5), "{c}");
    let t = &r["trends"];
    assert!(
        close(&t["duration"]["value"], 117500.0) && close(&t["duration"]["previous"], 100000.0),
        "{t}"
    );
    assert!(close(&t["duration"]["change_percent"], 17.5), "{t}");
    // Daily mean durations: day 0 (100 + 150 + 60) / 3 s, day 1 160 s.
    assert!(
        close(&t["duration"]["slope_per_day"], 160000.0 - 310000.0 / 3.0),
        "{t}"
    );
    assert!(close(&t["queue_wait"]["previous"], 10000.0), "{t}");
    assert!(close(&t["queue_wait"]["change_percent"], 1550.0), "{t}");
    assert!(close(&t["demand"]["change_percent"], 100.0), "{t}");
    assert!(close(&t["cost"]["previous"], 200.0 / 3600.0 * 0.07), "{t}");
    let regs = r["regressions"].as_array().unwrap();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["job"], "prod/app");
    assert!(
        close(&regs[0]["median_ms"], 150000.0) && close(&regs[0]["baseline_median_ms"], 100000.0)
    );
    assert!(close(&regs[0]["change_percent"], 50.0));
    assert_eq!(regs[0]["builds"], 3);
    assert_eq!(regs[0]["first_slow_build"]["number"], 4);
    assert_eq!(regs[0]["first_slow_build"]["duration_ms"], 150000);
    let recs: Vec<&str> = r["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(recs.len(), 5, "{recs:#?}");
    assert!(recs[0].starts_with("queue wait p95 is 10m"), "{recs:#?}");
    assert!(recs[1].starts_with("agents were busy 0 %"), "{recs:#?}");
    assert!(
        recs[2].starts_with("prod/app is +50 % slower") && recs[2].contains("since #4"),
        "{recs:#?}"
    );
    assert!(recs[3].starts_with("25 % of builds failed"), "{recs:#?}");
    assert!(
        recs[4].starts_with("4 of 4 builds sent no usage report"),
        "{recs:#?}"
    );

    // Filters narrow the builds.
    let (_, lib) = app
        .get_json(&format!(
            "/api/v1/reports/performance?range={range}&job=lib"
        ))
        .await;
    assert_eq!(lib["builds"], 1);
    assert_eq!(lib["regressions"], json!([]));

    // The other formats carry the same rows.
    for (format, ctype, needle) in [
        ("csv", "text/csv", "builds,count,4"),
        ("md", "text/markdown", "| builds | count | 4 |"),
        ("html", "text/html", "<td>regression</td><td>prod/app</td>"),
    ] {
        let resp = app
            .client
            .get(app.url(&format!(
                "/api/v1/reports/performance?range={range}&format={format}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ctype)
        );
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{format}: {text}");
        // The HTML report draws the frontier of the pool's own builds, its settings marked.
        let frontier = text.contains("<h2>Frontier of each pool's history</h2>");
        assert_eq!(frontier, format == "html", "{format}: {text}");
        if format == "html" {
            assert!(text.contains("<h3>Pool linux</h3>"), "{text}");
            assert!(
                text.contains("<svg") && text.contains("current (queue)"),
                "{text}"
            );
            // Seventeen frontier points and the current settings.
            let rows = text.matches("<tr><td>").count();
            assert!(text.contains("<td>warm</td><td>25%</td>"), "{text}");
            assert!(rows >= 18, "{rows}: {text}");
        }
    }
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/reports/performance?range={range}&format=pdf"
        ))
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("format")));

    // The CLI reads the same store.
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    cli.args([
        "report",
        "--range",
        &range,
        "--format",
        "json",
        "--data-dir",
    ])
    .arg(&app.data_dir)
    .current_dir(dir.path());
    if let Some(url) = &app.settings.database.url {
        use secrecy::ExposeSecret;
        cli.env("AUTOPILOT_DATABASE__URL", url.expose_secret());
    }
    let out = cli.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["builds"], 4);
    assert_eq!(cli["regressions"][0]["first_slow_build"]["number"], 4);
    app.stop().await;
}

#[tokio::test]
async fn the_export_streams_every_build_with_its_cost() {
    let (app, _dir) = known_app(Db::Sqlite).await;
    let range = format!("{T0}..{}", T0 + 48 * H);
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/export?range={range}&format=csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header[..3], ["controller", "job", "number"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "{text}");
    // Oldest first: app #3, 100 s on the pool's 1 CPU / 2Gi share: 100/3600 x 0.07.
    assert_eq!(&rows[0][1], "app");
    assert_eq!(&rows[0][2], "3");
    assert_eq!(&rows[0][7], "100000");
    assert_eq!(&rows[0][8], "0.0019");
    assert_eq!(&rows[0][11], "pool");
    assert_eq!(&rows[2][4], "FAILURE");

    let resp = app
        .client
        .get(app.url(&format!("/api/v1/export?range={range}&format=json")))
        .send()
        .await
        .unwrap();
    let all: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3]["number"], 5);
    assert_eq!(all[3]["queue_wait_ms"], 40000);
    // An empty range is an empty document, not an error.
    let resp = app
        .client
        .get(app.url("/api/v1/export?range=1000..2000&format=json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 0);
    let (status, body) = app.get_json("/api/v1/export?format=xml").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("format")));
}

#[tokio::test]
async fn a_scheduled_report_is_written_on_its_cron_and_only_the_newest_are_kept() {
    let (mut settings, dir) = pool_settings(Db::Sqlite).await;
    let out = dir.path().join("reports");
    settings.reports.schedules = serde_yaml::from_str(&format!(
        "[{{name: every-second, cron: '* * * * * *', range: 7d, format: json, directory: '{}', keep: 2}}]",
        out.display()
    ))
    .unwrap();
    let app = spawn_with(settings).await;
    crate::scaling::eventually(
        "three scheduled runs",
        std::time::Duration::from_secs(10),
        async || std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) >= 2,
    )
    .await;
    // Two more runs at least: still only the newest two.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "only the newest 2 are kept: {files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("every-second-") && name.ends_with(".json"),
            "{name}"
        );
        let report: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(report["builds"], 0);
    }
    app.stop().await;
}

#[tokio::test]
async fn spreadsheet_formulas_in_names_come_out_as_text() {
    let app = crate::helpers::spawn_app().await;
    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let jobs = ["=1+2", "@SUM(A1)", "+cmd", "-2+3", "plain"];
    for (i, job) in jobs.iter().enumerate() {
        statistics_build(
            &app,
            job,
            1,
            "-linux",
            start + i as i64 * 1000,
            0,
            60_000,
            "SUCCESS",
        )
        .await;
    }
    let resp = app
        .client
        .get(app.url("/api/v1/export?range=24h&format=csv"))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let names: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(
        names,
        ["'=1+2", "'@SUM(A1)", "'+cmd", "'-2+3", "plain"],
        "{text}"
    );
    assert!(rows.iter().all(|r| &r[3] == "'-linux"), "{text}");
    // Numbers stay numbers, and JSON carries names as they are.
    assert!(rows.iter().all(|r| r[7].parse::<i64>().is_ok()));
    let (_, json) = app.get_json("/api/v1/export?range=24h&format=json").await;
    assert_eq!(json[0]["job"], "=1+2");
    // The report's CSV too: its filter row carries the job asked for.
    let resp = app
        .client
        .get(app.url("/api/v1/reports/performance?range=24h&format=csv&job=%3D1%2B2"))
        .send()
        .await
        .unwrap();
    let report = resp.text().await.unwrap();
    assert!(report.contains("filter,job,'=1+2"), "{report}");
    assert!(report.contains("builds,count,1"), "{report}");
    app.stop().await;
}
