//! The pipeline API over HTTP: rule selection, the learned path, pod YAML, performance
//! reports, analysis, and every way a token is refused.

use crate::helpers::{Db, TestApp, payload, spawn_app, spawn_app_on, spawn_with, test_settings};
use jenkins_autopilot::tokens::Scope;
use serde_json::{Value, json};
use std::time::Duration;

const MI: u64 = 1024 * 1024;

fn reader(app: &TestApp) -> String {
    app.jwt(&[Scope::ProfilesRead])
}

async fn select(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .get_authed(&format!("/api/v1/profiles/select?{query}"), &reader(app))
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// A report from the build container's cgroup files: `cpu_m` average over 100 s,
/// `peak_mib` memory peak.
fn report(build_type: &str, cpu_m: u64, peak_mib: u64, oom_kills: u64) -> Value {
    json!({
        "type": build_type,
        "elapsed_ms": 100_000,
        "cgroup": {
            "cpu.stat": format!("usage_usec {}\nuser_usec 1\nsystem_usec 1\n", cpu_m * 100_000),
            "memory.peak": format!("{}\n", peak_mib * MI),
            "memory.events": format!("low 0\nhigh 0\nmax 0\noom {oom_kills}\noom_kill {oom_kills}\n"),
        },
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "profile": "medium",
        "stages": [{"name": "Build", "duration_ms": 90_000}]
    })
}

async fn post_report(app: &TestApp, job: &str, number: u64, body: &Value) -> Value {
    let (status, reply) = app
        .post_authed(
            &format!("/api/v1/builds/prod/{job}/{number}/performance"),
            &app.jwt(&[Scope::BuildsWrite]),
            body,
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    reply
}

/// Parses the pod YAML as a Kubernetes Pod, strictly: re-serialized, it must be the same
/// document (nothing unknown dropped).
fn parse_pod(yaml: &str) -> k8s_openapi::api::core::v1::Pod {
    let raw: Value = serde_yaml::from_str(yaml).expect("pod_yaml is YAML");
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml::from_str(yaml).expect("pod_yaml is a Pod");
    assert_eq!(
        serde_json::to_value(&pod).unwrap(),
        raw,
        "pod_yaml has fields a Pod has not"
    );
    pod
}

#[tokio::test]
async fn every_rule_row_through_http_with_a_valid_pod() {
    let app = spawn_app().await;
    let cases = [
        ("test", "0", "light", "100m", "256Mi", "rule 1"),
        ("test", "49", "light", "100m", "256Mi", "rule 1"),
        ("test", "50", "medium", "500m", "512Mi", "rule 2"),
        ("build", "69", "medium", "500m", "512Mi", "rule 3"),
        ("build", "70", "heavy", "1", "1Gi", "rule 4"),
        ("deploy", "10", "intensive", "2", "2Gi", "rule 5"),
        ("lint", "99", "medium", "500m", "512Mi", "rule 6"),
    ];
    for (t, load, profile, cpu, mem, rule) in cases {
        let s = select(
            &app,
            &format!("job=app&type={t}&load={load}&controller=prod"),
        )
        .await;
        assert_eq!(s["profile"], profile, "{t}@{load}: {s}");
        assert_eq!(s["source"], "rule");
        assert_eq!(s["requests"]["cpu"], cpu);
        assert_eq!(s["requests"]["memory"], mem);
        assert!(s["reason"].as_str().unwrap().starts_with(rule), "{s}");
        let pod = parse_pod(s["pod_yaml"].as_str().unwrap());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers.len(), 1, "the plugin adds jnlp itself");
        let c = &spec.containers[0];
        assert_eq!(c.name, "build");
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, cpu);
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, mem);
        assert_eq!(
            pod.metadata.labels.unwrap()["jenkins-autopilot/profile"],
            profile
        );
    }
    // No load and no pool: bounded rules are skipped, the larger profile is chosen.
    let s = select(&app, "job=app&type=test").await;
    assert_eq!(s["profile"], "medium", "{s}");
    assert!(s["load"].is_null());
    assert!(
        s["reason"].as_str().unwrap().contains("load unknown"),
        "{s}"
    );
    // The image can be named.
    let s = select(
        &app,
        "job=app&type=build&load=0&image=maven:3.9-eclipse-temurin-21",
    )
    .await;
    let pod = parse_pod(s["pod_yaml"].as_str().unwrap());
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some("maven:3.9-eclipse-temurin-21")
    );
    for (query, field) in [
        ("type=build", "job"),
        ("job=app", "type"),
        ("job=app&type=build&load=101", "load"),
        ("job=app&type=build&load=lots", "load"),
        ("job=app&type=a%20b", "type"),
        ("job=app&type=build&pool=nope", "pool"),
        ("job=app&type=build&image=a%20b", "image"),
    ] {
        let (status, body) = app
            .get_authed(&format!("/api/v1/profiles/select?{query}"), &reader(&app))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

async fn learned_path(db: Db) {
    let app = spawn_app_on(db).await;
    // Fewer than 5 reports: the rule decides (test at load 10: light).
    for n in 1..=4 {
        post_report(&app, "team/app", n, &report("test", 200, 300, 0)).await;
        let s = select(&app, "job=team/app&type=test&load=10&controller=prod").await;
        assert_eq!(s["source"], "rule", "after {n}: {s}");
        assert_eq!(s["profile"], "light");
        assert_eq!(s["samples"], n);
    }
    // The fifth: learned. p90 peak 300Mi + 15 % = 345Mi: above light, so medium.
    post_report(&app, "team/app", 5, &report("test", 200, 300, 0)).await;
    let s = select(&app, "job=team/app&type=test&load=10&controller=prod").await;
    assert_eq!(s["source"], "learned", "{s}");
    assert_eq!(s["profile"], "medium");
    assert!(s["reason"].as_str().unwrap().contains("300Mi"), "{s}");
    // Other build types of the job learn apart.
    let other = select(&app, "job=team/app&type=build&load=10&controller=prod").await;
    assert_eq!(other["source"], "rule");
    // A report again for the same build replaces, not adds.
    post_report(&app, "team/app", 5, &report("test", 200, 300, 0)).await;
    let (status, rec) = app
        .get_authed(
            "/api/v1/jobs/prod/team/app/recommendation?type=test",
            &reader(&app),
        )
        .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["samples"], 5);
    assert_eq!(rec["source"], "learned");
    assert_eq!(rec["learned"]["profile"], "medium");
    assert_eq!(rec["min_samples"], 5);
    app.stop().await;
}

#[tokio::test]
async fn the_learned_size_takes_over_at_min_samples_on_sqlite() {
    learned_path(Db::Sqlite).await;
}

#[tokio::test]
async fn the_learned_size_takes_over_at_min_samples_on_postgres() {
    learned_path(Db::Postgres).await;
}

#[tokio::test]
async fn old_reports_decay_and_an_oom_kill_bumps_memory() {
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    settings.build_optimization.learned.half_life = Duration::from_millis(300);
    settings.build_optimization.learned.exact = true;
    let app = spawn_with(settings).await;
    // Ten heavy builds, then (after many half-lives) five light ones.
    for n in 1..=10 {
        post_report(&app, "app", n, &report("build", 1800, 1800, 0)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for n in 11..=15 {
        post_report(&app, "app", n, &report("build", 100, 300, 0)).await;
    }
    let s = select(&app, "job=app&type=build&load=0&controller=prod").await;
    assert_eq!(s["source"], "learned", "{s}");
    assert_eq!(
        s["requests"]["cpu"], "100m",
        "old heavy builds barely count: {s}"
    );
    assert_eq!(s["requests"]["memory"], "345Mi", "{s}");
    // An OOM kill at a 400Mi peak: memory at least max(400 + 100, 400 x 1.2) = 500Mi.
    post_report(&app, "app", 16, &report("build", 100, 400, 1)).await;
    let s = select(&app, "job=app&type=build&load=0&controller=prod").await;
    assert_eq!(s["requests"]["memory"], "500Mi", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("OOM-killed"), "{s}");
    let pod = parse_pod(s["pod_yaml"].as_str().unwrap());
    let limits = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(
        limits["memory"].0, "750Mi",
        "an exact size keeps the ladder's headroom"
    );
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn twenty_builds_peaking_at_300mi_move_the_selection_from_rule_to_learned() {
    let app = spawn_app().await;
    let mut sources = Vec::new();
    for n in 1..=20u64 {
        let before = select(&app, "job=web&type=test&load=20&controller=prod").await;
        sources.push((before["source"].clone(), before["profile"].clone()));
        // Peaks between 270Mi and 300Mi, CPU 150-250m.
        let peak = 270 + (n * 7) % 31;
        post_report(
            &app,
            "web",
            n,
            &report("test", 150 + (n * 13) % 101, peak, 0),
        )
        .await;
    }
    let after = select(&app, "job=web&type=test&load=20&controller=prod").await;
    // Builds 1-5 were chosen by the rule (light: 256Mi, less than they use) ...
    for (i, (source, profile)) in sources.iter().enumerate().take(5) {
        assert_eq!(source, "rule", "build {}", i + 1);
        assert_eq!(profile, "light");
    }
    // ... every one after by the learned size, which covers the peak.
    for (i, (source, profile)) in sources.iter().enumerate().skip(5) {
        assert_eq!(source, "learned", "build {}", i + 1);
        assert_eq!(profile, "medium");
    }
    assert_eq!(after["source"], "learned");
    assert_eq!(after["profile"], "medium");
    assert_eq!(after["samples"], 20);
    app.stop().await;
}

#[tokio::test]
async fn a_build_is_analysed_from_its_webhooks_and_its_report() {
    let app = spawn_app().await;
    let t0 = 1_790_000_000_000i64;
    // Three earlier builds of 100 s, then one of 140 s.
    for (n, duration) in [(1u64, 100_000), (2, 100_000), (3, 100_000), (4, 140_000)] {
        let start = t0 + n as i64 * 1_000_000;
        for (phase, duration, status) in [
            ("STARTED", 0, None),
            ("COMPLETED", duration, Some("SUCCESS")),
        ] {
            let resp = app
                .post_webhook(
                    "/webhooks/notification?controller=prod",
                    &payload::notification("job/app/", "app", n, phase, start, duration, status),
                )
                .await;
            assert!(resp.status().is_success());
        }
    }
    // It asked for heavy (1 CPU, 1Gi) and used 120m and 310Mi.
    let mut r = report("build", 120, 310, 0);
    r["requests"] = json!({"cpu": "1", "memory": "1Gi"});
    let reply = post_report(&app, "app", 4, &r).await;
    assert_eq!(reply["build_known"], true);
    let controller = "prod";
    let path = format!("/api/v1/builds/{controller}/app/4/analysis");
    let (status, a) = app.get_authed(&path, &app.jwt(&[Scope::ReportsRead])).await;
    assert_eq!(status, 200, "{a}");
    let score = a["score"].as_u64().unwrap();
    assert!((1..90).contains(&score), "{a}");
    let recs: Vec<&str> = a["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        recs.iter()
            .any(|r| r.contains("memory request 1Gi, peak 310Mi: use medium")),
        "{recs:?}"
    );
    assert!(
        recs.iter()
            .any(|r| r.contains("+40 % against the job's median")),
        "{recs:?}"
    );
    assert_eq!(a["performance"]["memory_peak"], "310Mi");
    assert_eq!(a["build"]["duration_ms"], 140_000);
    let names: Vec<&str> = a["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "queue_wait",
            "duration",
            "cpu_efficiency",
            "memory_efficiency",
            "result"
        ]
    );
    // Unknown build: 404.
    let (status, body) = app
        .get_authed(
            &format!("/api/v1/builds/{controller}/app/99/analysis"),
            &app.jwt(&[Scope::ReportsRead]),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_bad_report_is_refused_with_its_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.jwt(&[Scope::BuildsWrite]);
    let mut no_peak = report("build", 100, 100, 0);
    no_peak["cgroup"]["memory.peak"] = json!("max\n");
    let mut zero = report("build", 100, 100, 0);
    zero["elapsed_ms"] = json!(0);
    for (body, field) in [(no_peak, "cgroup.memory.peak"), (zero, "elapsed_ms")] {
        let (status, reply) = app
            .post_authed("/api/v1/builds/prod/app/1/performance", &token, &body)
            .await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let (status, _) = app
        .get_authed(
            "/api/v1/builds/prod/app/1/analysis",
            &app.jwt(&[Scope::ReportsRead]),
        )
        .await;
    assert_eq!(status, 404, "nothing was stored");
}

#[tokio::test]
async fn every_token_failure_is_refused() {
    use base64::Engine;
    let app = spawn_app().await;
    let path = "/api/v1/profiles/select?job=app&type=build&load=0";
    let keys = |secret: &str| {
        let mut auth = app.settings.auth.clone();
        auth.jwt_secret = Some(secret.to_string().into());
        jenkins_autopilot::tokens::TokenKeys::load(&auth, &app.data_dir).unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let hour = Duration::from_secs(3600);
    let good = keys(crate::helpers::JWT_SECRET);
    let expired = good
        .issue("ci", &[Scope::ProfilesRead], hour, now - 7200)
        .unwrap();
    let foreign = keys("another-secret-0123456789abcdef0123456789")
        .issue("ci", &[Scope::ProfilesRead], hour, now)
        .unwrap();
    let wrong_scope = good.issue("ci", &[Scope::BuildsWrite], hour, now).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(
            json!({"sub": "ci", "iss": "jenkins-autopilot", "iat": now, "exp": now + 3600, "scope": "admin"})
                .to_string()
        )
    );
    // The right claims re-signed under another issuer name.
    let mut other_iss = app.settings.auth.clone();
    other_iss.jwt_secret = Some(crate::helpers::JWT_SECRET.to_string().into());
    other_iss.issuer = "someone-else".into();
    let other_issuer = jenkins_autopilot::tokens::TokenKeys::load(&other_iss, &app.data_dir)
        .unwrap()
        .issue("ci", &[Scope::Admin], hour, now)
        .unwrap();
    for (token, status, says) in [
        (expired.as_str(), 401, "expired"),
        (foreign.as_str(), 401, "signature"),
        (none.as_str(), 401, "JWT"),
        (other_issuer.as_str(), 401, "issued"),
        ("garbage", 401, "JWT"),
        (wrong_scope.as_str(), 403, "profiles:read"),
    ] {
        let (s, body) = app.get_authed(path, token).await;
        assert_eq!(s, status, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    // No token, or the webhook token instead of a JWT.
    let (s, _) = app.get_json(path).await;
    assert_eq!(s, 401);
    let (s, _) = app.get_authed(path, crate::helpers::TOKEN).await;
    assert_eq!(s, 401);
    // Each endpoint wants its own scope; admin holds them all.
    let reader = app.jwt(&[Scope::ProfilesRead]);
    let (s, _) = app
        .post_authed(
            "/api/v1/builds/prod/app/1/performance",
            &reader,
            &report("build", 1, 1, 0),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get_authed("/api/v1/builds/prod/app/1/analysis", &reader)
        .await;
    assert_eq!(s, 403);
    let admin = app.jwt(&[Scope::Admin]);
    let (s, _) = app.get_authed(path, &admin).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_hs256_ones_do_not() {
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    settings.auth.jwt_secret = None;
    settings.auth.jwt_public_key_file = Some(fixtures.join("jwt-test-rsa.pub.pem"));
    settings.auth.jwt_private_key_file = Some(fixtures.join("jwt-test-rsa.pem"));
    let app = spawn_with(settings).await;
    let path = "/api/v1/profiles/select?job=app&type=build&load=0";
    let (s, body) = app.get_authed(path, &app.jwt(&[Scope::ProfilesRead])).await;
    assert_eq!(s, 200, "{body}");
    // An HS256 token (say, signed with the public key's text as secret) is refused.
    let mut hs = app.settings.auth.clone();
    hs.jwt_public_key_file = None;
    hs.jwt_private_key_file = None;
    hs.jwt_secret = Some(
        std::fs::read_to_string(fixtures.join("jwt-test-rsa.pub.pem"))
            .unwrap()
            .into(),
    );
    let forged = jenkins_autopilot::tokens::TokenKeys::load(&hs, &app.data_dir)
        .unwrap()
        .issue(
            "x",
            &[Scope::Admin],
            Duration::from_secs(60),
            chrono::Utc::now().timestamp(),
        )
        .unwrap();
    let (s, body) = app.get_authed(path, &forged).await;
    assert_eq!(s, 401, "{body}");
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_token_from_the_cli_is_accepted_by_the_service_on_the_same_data_dir() {
    let (mut settings, dir) = test_settings(Db::Sqlite).await;
    settings.auth.jwt_secret = None;
    let issue = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
            .args([
                "token",
                "issue",
                "--subject",
                "jenkins-prod",
                "--scope",
                "profiles:read,builds:write",
                "--ttl",
                "90d",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // No key yet: a token signed with a new one would be refused, so none is made
    // unless asked, and the message says how to reach the service's own directory.
    let refused = issue(&[]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("no signing key") && why.contains("kubectl -n autopilot exec"),
        "{why}"
    );
    assert!(!dir.path().join("jwt-secret").exists());
    let out = issue(&["--create-secret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let app = spawn_with(settings).await;
    let (s, body) = app
        .get_authed("/api/v1/profiles/select?job=app&type=build&load=0", &token)
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = app
        .get_authed("/api/v1/builds/prod/app/1/analysis", &token)
        .await;
    assert_eq!(s, 403, "reports:read was not granted");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args([
            "token",
            "issue",
            "--subject",
            "x",
            "--scope",
            "everything",
            "--data-dir",
        ])
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a scope"));
    // Lifetimes from a minute to a year, and a subject on one line.
    for (ttl, subject, reason) in [
        ("18446744073709551615s", "x", "lifetime"),
        ("1ns", "x", "lifetime"),
        ("367d", "x", "lifetime"),
        ("1h", "team\nadmin", "subject"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
            .args([
                "token",
                "issue",
                "--subject",
                subject,
                "--scope",
                "builds:write",
                "--ttl",
                ttl,
                "--data-dir",
            ])
            .arg(dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "--ttl {ttl} --subject {subject:?} was issued"
        );
        assert!(stderr.contains(reason), "{stderr}");
    }
    app.stop().await;
}
