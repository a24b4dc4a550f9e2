//! The dashboard in headless Chromium (tests/browser/dashboard.mjs, Playwright core)
//! against the live service with recorded data: no console errors, the cards show the
//! API's numbers, the charts have data and size. The screenshot is kept in
//! target/test-artifacts/dashboard.png.

use crate::helpers::{
    Db, dry_run_decision, pool_settings, record_decisions, spawn_with, statistics_build,
};
use serde_json::{Value, json};
use std::path::Path;

const H: i64 = 3_600_000;
const S: i64 = 1000;

#[tokio::test]
async fn the_dashboard_shows_the_apis_numbers_and_draws_its_charts() {
    dashboard(false).await;
}

#[tokio::test]
async fn with_protected_reads_the_dashboard_asks_for_a_token_and_then_shows_the_same() {
    dashboard(true).await;
}

async fn dashboard(protect: bool) {
    let (mut settings, _dir) = pool_settings(Db::Sqlite).await;
    settings.cost.alerts.idle_share_percent = Some(10.0);
    settings.auth.protect_reads = protect;
    let app = spawn_with(settings).await;
    let reader = app.jwt(&[jenkins_autopilot::tokens::Scope::ReportsRead]);
    let now = jenkins_autopilot::domain::Timestamp::now().millis();
    // The pool: 2 agents three days ago, 3 two days ago, 1 a day ago, none for the last hour.
    let decisions: Vec<_> = [(72, 0, 2), (48, 2, 3), (24, 3, 1), (1, 1, 0)]
        .into_iter()
        .enumerate()
        .map(|(i, (ago, from, to))| {
            let at = now - ago * H;
            let mut d = dry_run_decision(at, i as i64, from, to);
            let mut inputs = json!({"busy_executors": to.min(2), "queued": 1,
                "forecast": {"value": 1.5 + i as f64, "target_at": at + 60_000, "acting": false}});
            if ago == 1 {
                // The newest: a warm pool whose replay kept it reactive.
                inputs["warm"] = json!({"agents": 0,
                    "reason": "in the replay of 40 builds warm capacity started 20 % at once for 9.0 agent-hours, no more than windows of that cost (25 %): reactive"});
            }
            d.inputs = serde_json::from_value(inputs).unwrap();
            d
        })
        .collect();
    record_decisions(&app, &decisions).await;
    // Builds over the last three days; one failed, one waited 10 minutes. The last two
    // came from a backfill of Jenkins' history, not from webhooks.
    let store = jenkins_autopilot::store::Store::connect(&app.settings.database, &app.data_dir)
        .await
        .unwrap();
    for n in 1..=6u64 {
        let start = now - (70 - 10 * n as i64) * H;
        let (wait, result) = match n {
            3 => (600 * S, "FAILURE"),
            _ => (20 * S * n as i64, "SUCCESS"),
        };
        if n >= 5 {
            let past = jenkins_autopilot::jenkins::history::HistoricBuild {
                number: n,
                timestamp: start,
                duration: (300 + 60 * n as i64) * S,
                result: Some(result.into()),
                built_on: Some("agent-linux-a".into()),
                queue_id: None,
                actions: vec![json!({"queuingDurationMillis": wait})],
            };
            let event = jenkins_autopilot::backfill::history_event(
                &jenkins_autopilot::domain::ControllerName::parse("prod").unwrap(),
                &jenkins_autopilot::domain::JobName::parse("app").unwrap(),
                &past,
                Some("linux".into()),
                jenkins_autopilot::domain::EventSource::Backfill,
            )
            .unwrap();
            store
                .write_batch(&[&[event]], jenkins_autopilot::domain::Timestamp::now())
                .await
                .unwrap();
            continue;
        }
        statistics_build(
            &app,
            "app",
            n,
            "linux",
            start,
            wait,
            (300 + 60 * n as i64) * S,
            result,
        )
        .await;
    }

    store.close().await;

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(if protect {
        "dashboard-protected.png"
    } else {
        "dashboard.png"
    });
    let _ = std::fs::remove_file(&shot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(&script).arg(format!("{}/", app.address)).arg(&shot);
    if protect {
        cmd.arg(&reader);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run node (./scripts/test installs Chromium and the browser test's packages)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    assert_eq!(
        shown["errors"],
        json!([]),
        "console or network errors: {shown}"
    );
    if protect {
        assert_eq!(shown["askedForToken"], true, "{shown}");
        let (status, _) = app.get_json("/api/v1/costs?range=7d").await;
        assert_eq!(status, 401, "reads need the token");
        let profiles = app.jwt(&[jenkins_autopilot::tokens::Scope::ProfilesRead]);
        let (status, _) = app.get_authed("/api/v1/costs?range=7d", &profiles).await;
        assert_eq!(status, 403, "and its scope");
        assert_eq!(app.get_json("/healthz").await.0, 200);
    }
    assert_eq!(shown["loaded"], "true", "{shown}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot was kept"
    );

    // The cards carry the API's numbers.
    let (_, cost) = app
        .get_authed("/api/v1/costs?range=7d&group_by=pool", &reader)
        .await;
    let (_, report) = app
        .get_authed("/api/v1/reports/performance?range=7d", &reader)
        .await;
    let card = |id: &str| -> f64 {
        shown["cards"][id]["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("card {id} has no number: {shown}"))
    };
    let same = |a: f64, b: &Value| {
        let b = b.as_f64().unwrap_or(f64::NAN);
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    };
    assert!(
        same(card("card-hourly-cost"), &cost["hourly_rate"]),
        "{shown} {cost}"
    );
    assert!(same(
        card("card-monthly-projection"),
        &cost["monthly_projection"]
    ));
    let savings = cost["total"]["idle"].as_f64().unwrap() / cost["hours"].as_f64().unwrap() * 730.5;
    assert!(same(card("card-savings"), &json!(savings)));
    assert!(same(card("card-demand"), &report["demand_per_hour"]));
    assert!(same(
        card("card-queue-wait"),
        &report["queue_wait"]["p95_ms"]
    ));
    assert!(same(card("card-error-rate"), &report["error_rate"]));
    assert!(same(card("card-efficiency"), &report["cost"]["efficiency"]));
    assert_eq!(report["builds"], 6);
    assert!(
        shown["history"].as_str().is_some_and(
            |h| h.starts_with("2 of these builds came from a backfill of Jenkins' history (")
        ),
        "{shown}"
    );
    assert!(
        shown["cards"]["card-error-rate"]["text"]
            .as_str()
            .unwrap()
            .starts_with("16.7 %"),
        "{shown}"
    );
    assert!(
        shown["cards"]["card-queue-wait"]["text"] == "10 min 0 s",
        "{shown}"
    );

    // The charts have data and a size.
    for chart in [
        "chart-trends",
        "chart-cost",
        "chart-scaling",
        "chart-forecast",
        "chart-frontier",
    ] {
        let c = &shown["charts"][chart];
        assert!(c["points"].as_u64().unwrap_or(0) > 0, "{chart}: {c}");
        assert!(c["width"].as_f64().unwrap_or(0.0) > 100.0, "{chart}: {c}");
        assert!(c["height"].as_f64().unwrap_or(0.0) > 100.0, "{chart}: {c}");
    }
    assert_eq!(shown["pools"], json!(["linux"]));
    // The header names this replica and its part (one replica here: it always leads).
    let (_, me) = app.get_authed("/api/v1/status", &reader).await;
    assert_eq!(
        shown["replica"],
        format!("Replica {} (single, off)", me["identity"].as_str().unwrap()),
        "{shown}"
    );
    // The pool view says what warm capacity kept and why.
    assert_eq!(
        shown["poolWarm"],
        "Warm capacity: 0 idle agent(s) kept. in the replay of 40 builds warm capacity started 20 % at once for 9.0 agent-hours, no more than windows of that cost (25 %): reactive",
        "{shown}"
    );
    // The frontier of the pool's own builds, with its current settings marked.
    let (_, f) = app
        .get_authed("/api/v1/pools/linux/frontier?range=7d", &reader)
        .await;
    assert_eq!(shown["charts"]["chart-frontier"]["points"], 18, "{shown}");
    let current = &f["current"];
    assert_eq!(
        shown["frontierCurrent"]["label"],
        format!("current ({})", current["setting"].as_str().unwrap()),
        "{shown} {f}"
    );
    assert!(same(
        shown["frontierCurrent"]["y"].as_f64().unwrap(),
        &json!(current["started_at_once"].as_f64().unwrap() * 100.0)
    ));
    assert!(
        shown["frontierNote"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Replaying {} recorded builds", f["builds"])),
        "{shown}"
    );
    assert!(
        shown["poolSize"].as_str().unwrap().starts_with("Agents: "),
        "{shown}"
    );
    // The newest decision's problem is shown: here the live pool's failed Jenkins read.
    let (_, newest) = app
        .get_authed("/api/v1/pools/linux/decisions?since=0&limit=1", &reader)
        .await;
    let error = newest["decisions"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jenkins: "), "{newest}");
    assert_eq!(shown["poolProblem"], format!("Problem: {error}"), "{shown}");
    // The plan button shows what the optimizer answers for the same range.
    let resp = app
        .client
        .post(app.url("/api/v1/costs/optimize"))
        .bearer_auth(&reader)
        .json(&json!({"target_savings": 20, "range": "7d"}))
        .send()
        .await
        .unwrap();
    let plan: Value = resp.json().await.unwrap();
    assert_eq!(shown["plan"]["message"], plan["message"], "{shown}");
    assert_eq!(shown["plan"]["reached"], plan["reached"].to_string());
    assert!(!shown["plan"]["changes"].as_array().unwrap().is_empty());
    assert!(
        !shown["alerts"].as_array().unwrap().is_empty(),
        "idle alert shown: {shown}"
    );
    app.stop().await;
}
