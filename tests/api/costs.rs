//! Costs over HTTP on a hand-computed history: builds from the webhooks, one with a usage
//! report, scaling decisions of one pool.

use crate::helpers::{
    Db, dry_run_decision, pool_settings, record_decisions, spawn_with, statistics_build,
};
use jenkins_autopilot::tokens::Scope;
use serde_json::{Value, json};

const H: i64 = 3_600_000;
/// 2026-09-21T14:13:20Z: the start of the range the test asks for.
const T0: i64 = 1_790_000_000_000;

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-3)
}

#[tokio::test]
async fn costs_of_a_known_history_add_up_by_hand_on_sqlite() {
    costs_of_a_known_history(Db::Sqlite).await;
}

#[tokio::test]
async fn costs_of_a_known_history_add_up_by_hand_on_postgres() {
    costs_of_a_known_history(Db::Postgres).await;
}

async fn costs_of_a_known_history(db: Db) {
    let (mut settings, dir) = pool_settings(db).await;
    settings.cost.alerts.cost_per_build = Some(0.1);
    let app = spawn_with(settings).await;

    // The pool: 2 agents from T0, 1 from T0 + 2 h.
    record_decisions(
        &app,
        &[
            dry_run_decision(T0, 1, 0, 2),
            dry_run_decision(T0 + 2 * H, 2, 2, 1),
        ],
    )
    .await;
    // A: 1 h on linux, no report: its executor's share, 1 CPU and 2Gi: 0.05 + 0.02.
    statistics_build(&app, "a", 1, "linux", T0, 0, H, "SUCCESS").await;
    // B: 30 min on linux; reported 500m/512Mi requested, 1.5 CPU and 256Mi used:
    // CPU 1.5 x 0.5 x 0.05 = 0.0375, memory 0.5 x 0.5 x 0.01 = 0.0025.
    statistics_build(&app, "b", 1, "linux", T0 + H, 0, H / 2, "SUCCESS").await;
    let report = json!({"type": "build", "elapsed_ms": H / 2,
        "usage": {"cpu_usage_usec": 1500 * (H / 2), "memory_peak_bytes": 256u64 << 20},
        "requests": {"cpu": "500m", "memory": "512Mi"}});
    let (status, body) = app
        .post_authed(
            "/api/v1/builds/prod/b/1/performance",
            &app.jwt(&[Scope::BuildsWrite]),
            &report,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // C: 2 h on gpu, which no pool serves: the default 1 CPU, 2Gi: 0.10 + 0.04.
    statistics_build(&app, "c", 1, "gpu", T0 + H, 0, 2 * H, "SUCCESS").await;
    // D: the range before, 1 h, no pool: 0.07.
    statistics_build(&app, "d", 1, "gpu", T0 - 2 * H, 0, H, "SUCCESS").await;

    let range = format!("{T0}..{}", T0 + 4 * H);
    let (status, c) = app
        .get_json(&format!("/api/v1/costs?range={range}&group_by=job"))
        .await;
    assert_eq!(status, 200, "{c}");
    // Pool: 2 x 2 h + 1 x 2 h = 6 agent-hours: CPU 0.30, memory 0.12; its builds 0.11, so
    // idle 0.31. Total 0.42 + C's 0.14 = 0.56.
    let linux = &c["pools"]["linux"];
    assert!(close(&linux["agent_hours"], 6.0), "{linux}");
    assert!(close(&linux["busy_agent_hours"], 1.5), "{linux}");
    assert!(close(&linux["efficiency"], 0.25), "{linux}");
    assert!(close(&c["total"]["total"], 0.56), "{c}");
    assert!(close(&c["total"]["idle"], 0.31), "{c}");
    assert!(close(&c["total"]["cpu"], 0.40), "{c}");
    assert!(close(&c["total"]["memory"], 0.16), "{c}");
    assert!(close(&c["hourly_rate"], 0.14), "{c}");
    assert!(close(&c["monthly_projection"], 0.14 * 730.5), "{c}");
    assert_eq!(c["builds"], 3);
    assert_eq!(
        c["priced_by"],
        json!({"report": 1, "pool": 1, "default": 1})
    );
    assert!(close(&c["previous_total"], 0.07), "{c}");
    assert!(close(&c["trend_percent"], 700.0), "{c}");
    let rows: Vec<(String, f64)> = c["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["cost"]["total"].as_f64().unwrap(),
            )
        })
        .collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, ["(idle)", "prod/c", "prod/a", "prod/b"]);
    let sum: f64 = rows.iter().map(|r| r.1).sum();
    assert!(
        (sum - 0.56).abs() < 1e-3,
        "rows add up to the total: {rows:?}"
    );
    // Alerts: C above 0.10 per build; the pool 74 % idle, above 60 %.
    let alerts = c["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["subject"], "prod/c#1");
    assert_eq!(alerts[1]["kind"], "idle_share");

    // By pool: linux (0.42, its builds and idle) and the builds outside any pool.
    let (_, p) = app
        .get_json(&format!("/api/v1/costs?range={range}&group_by=pool"))
        .await;
    let pools: Vec<(String, f64)> = p["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["cost"]["total"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pools[0].0, "linux");
    assert!((pools[0].1 - 0.42).abs() < 1e-3, "{pools:?}");
    assert_eq!(pools[1].0, "(no pool)");
    assert!((pools[1].1 - 0.14).abs() < 1e-3, "{pools:?}");

    for (query, field) in [
        ("range=soon", "range"),
        ("range=7d&group_by=team", "group_by"),
        ("range=2026-01-02T00:00:00Z..2026-01-01T00:00:00Z", "range"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/costs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field);
    }
    drop(dir);
}

/// Builds before the pool's first decision (imported history, a new install) are not
/// held against agents nobody recorded: the pool's idle and efficiency cover the span its
/// decisions cover, and say from when.
#[tokio::test]
async fn a_pools_idle_and_efficiency_cover_only_what_its_decisions_cover() {
    let (settings, _dir) = pool_settings(Db::Sqlite).await;
    let app = spawn_with(settings).await;
    let day = 24 * H;
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 3 * day;
    // A one-hour build a day for three days, on the pool's label.
    for d in 0..3 {
        statistics_build(
            &app,
            "app",
            d as u64 + 1,
            "linux",
            start + d * day,
            0,
            H,
            "SUCCESS",
        )
        .await;
    }
    // The pool's only decision: two agents, from the last day's build on.
    let first = start + 2 * day;
    record_decisions(&app, &[dry_run_decision(first, 1, 2, 2)]).await;
    let (_, c) = app
        .get_json(&format!(
            "/api/v1/costs?range={}..{now}&group_by=pool",
            start - H
        ))
        .await;
    let pool = &c["pools"]["linux"];
    assert_eq!(pool["covered_from"], first, "{pool}");
    // Two agents for the day since the decision; one build-hour in it.
    let agent_hours = pool["agent_hours"].as_f64().unwrap();
    let covered_h = (now - first) as f64 / H as f64;
    assert!((agent_hours - 2.0 * covered_h).abs() < 0.05, "{pool}");
    assert!(close(&pool["busy_agent_hours"], 1.0), "{pool}");
    let efficiency = pool["efficiency"].as_f64().unwrap();
    assert!(efficiency < 0.05, "not 100 %: {pool}");
    assert!(pool["cost"]["idle"].as_f64().unwrap() > 0.0, "{pool}");
    app.stop().await;
}

/// A pool's `controller:` is a controller name like the webhooks': `Prod` in the settings
/// is the `prod` the webhooks name, so its builds are priced to the pool.
#[tokio::test]
async fn a_pools_controller_name_matches_its_webhooks_whatever_its_case() {
    let (base, dir) = crate::helpers::test_settings(Db::Sqlite).await;
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("jenkins-scaling.yaml"),
        "jenkins:\n  controllers:\n    Prod: {url: \"http://127.0.0.1:9/\"}\n\
         scaling:\n  reconcile_interval: 1h\n  pools:\n    linux: {controller: Prod, label: linux, namespace: ci, deployment: agents}\n",
    )
    .unwrap();
    let mut settings = jenkins_autopilot::config::Settings::load(Some(&conf), Vec::new()).unwrap();
    settings.server = base.server;
    settings.webhook = base.webhook;
    settings.auth = base.auth;
    settings.kubernetes = base.kubernetes;
    assert_eq!(settings.scaling.pools["linux"].controller.as_str(), "prod");
    let app = spawn_with(settings).await;
    let start = chrono::Utc::now().timestamp_millis() - H;
    statistics_build(&app, "app", 1, "linux", start, 0, 60_000, "SUCCESS").await;
    let (_, c) = app.get_json("/api/v1/costs?range=24h&group_by=pool").await;
    assert_eq!(c["priced_by"]["pool"], 1, "{c}");
    assert!(
        c["breakdown"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"] == "linux" && g["builds"] == 1),
        "{c}"
    );
    app.stop().await;
}

/// Statistics Gatherer sends the node's labels, space-separated: a build on a node that
/// carries the pool's label is the pool's build.
#[tokio::test]
async fn a_build_on_a_node_with_the_pools_label_is_priced_to_the_pool() {
    let (settings, _dir) = pool_settings(Db::Sqlite).await;
    let app = spawn_with(settings).await;
    let start = chrono::Utc::now().timestamp_millis() - H;
    statistics_build(
        &app,
        "app",
        1,
        "docker linux agent-7",
        start,
        0,
        60_000,
        "SUCCESS",
    )
    .await;
    statistics_build(&app, "app", 2, "windows", start + 1, 0, 60_000, "SUCCESS").await;
    let (_, c) = app.get_json("/api/v1/costs?range=24h&group_by=pool").await;
    assert_eq!(c["priced_by"]["pool"], 1, "{c}");
    assert_eq!(c["priced_by"]["default"], 1, "{c}");
    app.stop().await;
}
