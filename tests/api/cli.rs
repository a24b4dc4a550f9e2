//! The command line: `check-config` reports every bad field and its path.

use std::process::Command;

fn check_config(dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    cmd.arg("check-config").arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `simulate ARGS --trace TRACE`.
fn simulate(trace: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .arg("simulate")
        .args(args)
        .arg("--trace")
        .arg(trace)
        .output()
        .expect("run simulate")
}

/// Runs `simulate ARGS --format json`; it must succeed.
fn simulate_json(trace: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = simulate(trace, &[args, &["--format", "json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_config_lists_every_invalid_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        "server:\n  listen: \"not an address\"\n  body_limt_bytes: 5\ndatabase:\n  url: mysql://x\n  max_connections: many\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "server: [unclosed\n").unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[("AUTOPILOT_INGEST__MAX_BATCH", "0")]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "service.yaml: server.listen",
        "service.yaml: server.body_limt_bytes: is not a known setting",
        "service.yaml: database.url",
        "service.yaml: database.max_connections",
        "env AUTOPILOT_INGEST__MAX_BATCH: ingest.max_batch",
        "broken.yaml: is not valid YAML",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

/// A pool's label is parsed as the label type: blank, control characters and overlong
/// labels are refused with the field named.
#[test]
fn a_pools_label_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jenkins-scaling.yaml");
    for (label, reason) in [
        ("\"linux\\a\"", "control characters"),
        ("\"   \"", "must not be empty"),
        (&format!("\"{}\"", "x".repeat(1100)), "at most 1024 bytes"),
    ] {
        std::fs::write(
            &file,
            format!("jenkins:\n  controllers:\n    prod: {{url: \"https://ci.example.com/\"}}\nscaling:\n  pools:\n    linux: {{controller: prod, label: {label}, namespace: ci, deployment: agent-linux}}\n"),
        )
        .unwrap();
        let (code, _, stderr) = check_config(dir.path(), &[]);
        assert_eq!(code, 1, "{label}: {stderr}");
        assert!(
            stderr.contains("scaling.pools.linux.label") && stderr.contains(reason),
            "{label}: {stderr}"
        );
    }
}

/// Found by fuzzing the settings: a logging filter that made the filter parser panic
/// (a leading space before a multi-byte character) is refused, named, not a crash.
#[test]
fn a_hostile_logging_filter_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        "logging:\n  format: json\n  filter: \"info, \\u00eaacservice\"\n",
    )
    .unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("logging.filter"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // And one whose field filter compiled for longer than the fuzzer's 10 s.
    let slow = String::from_utf8_lossy(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds/settings/filter-pattern-timeout.yaml"),
        )
        .unwrap(),
    )
    .into_owned();
    let filter = slow
        .lines()
        .find_map(|l| l.trim().strip_prefix("filter: "))
        .unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        format!("logging:\n  format: json\n  filter: {filter:?}\n"),
    )
    .unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("logging.filter: takes target=level directives only"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_shipped_files() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-cd-integration");
    let (code, stdout, stderr) = check_config(&shipped, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("settings are valid"));
}

#[test]
fn the_settings_in_the_kubernetes_configmap_are_valid() {
    // The kustomization makes the ConfigMap from these files: what check-config reads is
    // what the pod gets.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-cd-integration/k8s/settings");
    assert!(dir.join("jenkins-scaling.yaml").is_file());
    let (code, _, stderr) = check_config(&dir, &[]);
    assert_eq!(code, 0, "{stderr}");
    // The service listens on every address there: its read API needs a token.
    let service: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("service.yaml")).unwrap()).unwrap();
    assert_eq!(service["auth"]["protect_reads"], true, "{service}");
}

#[test]
fn a_warm_pool_is_checked_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let pools = |warm: &str| {
        [
            "jenkins:",
            "  controllers:",
            "    prod: {url: \"https://ci.example.com/\"}",
            "scaling:",
            "  pools:",
            "    linux:",
            "      controller: prod",
            "      label: linux",
            "      namespace: ci",
            "      deployment: agent-linux",
            "      policy: warm",
            &format!("      warm: {warm}"),
        ]
        .join("\n")
    };
    let file = dir.path().join("jenkins-scaling.yaml");
    std::fs::write(&file, pools("{budget: 25%, max_idle: 4, window: 3d}")).unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(
        &file,
        format!("{}\n      predictive: scale", pools("{budget: 50}")),
    )
    .unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("scaling.pools.linux.predictive") && stderr.contains("policy: warm"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        format!(
            "{}\n      schedules: [{{cron: \"* 8-18 * * mon-fri\", timezone: Mars/Olympus, min: 2}}]",
            pools("{budget: 50}")
        ),
    )
    .unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("scaling.pools.linux.schedules[0]") && stderr.contains("Mars/Olympus"),
        "{stderr}"
    );
    std::fs::write(&file, pools("{budget: 25%, max_idle: 40, window: 5m}")).unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("scaling.pools.linux.warm.max_idle")
            && stderr.contains("scaling.pools.linux.warm.window"),
        "{stderr}"
    );
    std::fs::write(&file, pools("{budget: lots, max_idle: 4, windw: 3d}")).unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("warm"), "{stderr}");
    assert!(stderr.contains("lots"), "{stderr}");
}

#[test]
fn the_example_pools_are_valid() {
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-cd-integration/examples");
    let (code, _, stderr) = check_config(&examples, &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn simulate_compares_policies_on_a_trace_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let mut csv = String::from("queued_at,job,label,duration_s,result\n");
    for i in 0..60 {
        // Bursts of three every ten minutes on linux, a build an hour on arm64.
        let t = 1_700_000_000 + (i / 3) * 600 + (i % 3) * 5;
        csv.push_str(&format!("{t},build,linux,{},success\n", 240 + (i % 7) * 30));
        if i % 6 == 0 {
            csv.push_str(&format!("{},test,arm64,120,failure\n", t + 1));
        }
    }
    std::fs::write(&trace, csv).unwrap();
    let v = simulate_json(&trace, &["--compare", "--pod-startup", "60"]);
    let p = &v["policies"];
    for name in ["seed-queue-half", "queue", "per-build", "oracle"] {
        let f = &p[name];
        assert_eq!(f["busy_agents_removed"], 0, "{name}");
        assert_eq!(f["builds"], 70, "{name}");
        assert!(
            f["pools"]["linux"].is_object() && f["pools"]["arm64"].is_object(),
            "{name}: one pool per label"
        );
        for key in [
            "agent_hours",
            "cost",
            "wait_p50_s",
            "wait_p95_s",
            "wait_p99_s",
            "wait_max_s",
            "builds_waited",
            "scale_ups",
            "scale_downs",
            "efficiency",
        ] {
            assert!(f[key].is_number(), "{name}.{key}");
        }
    }
    let static_name = p
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with("static:"))
        .unwrap()
        .clone();
    assert_eq!(
        p[&static_name]["wait_max_s"], 0.0,
        "a static pool at the oracle's peak never queues"
    );
    let oracle = p["oracle"]["agent_hours"].as_f64().unwrap();
    for name in [
        "seed-queue-half",
        "queue",
        "per-build",
        static_name.as_str(),
    ] {
        assert!(
            p[name]["agent_hours"].as_f64().unwrap() >= oracle - 1e-9,
            "{name} below the oracle"
        );
    }
    assert_eq!(p["oracle"]["wait_max_s"], 0.0);
    assert_eq!(
        p["per-build"]["wait_p50_s"], 60.0,
        "every per-build pod waits the start-up"
    );

    // One label, one policy, and a bad policy name.
    let one = simulate(&trace, &["--label", "arm64", "--policy", "static:1"]);
    assert!(one.status.success());
    let table = String::from_utf8_lossy(&one.stdout);
    assert!(
        table.contains("static:1") && table.contains("10 builds"),
        "{table}"
    );
    let bad = simulate(&trace, &["--policy", "magic"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown policy"));
}

#[test]
fn simulate_frontier_sweeps_every_family_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let mut csv = String::from("queued_at,job,label,duration_s\n");
    // Three weeks of working days: a build every quarter hour or so from 9 to 17.
    let monday = 1_699_833_600i64;
    for d in 0..21 {
        if d % 7 >= 5 {
            continue;
        }
        for i in 0..32 {
            let t = monday + d * 86_400 + 9 * 3600 + i * 900 + (i * 131 % 600);
            csv.push_str(&format!("{t},build,linux,{}\n", 120 + (i % 5) * 60));
        }
    }
    std::fs::write(&trace, csv).unwrap();
    let v = simulate_json(&trace, &["--frontier"]);
    let oracle = v["oracle_agent_hours"].as_f64().unwrap();
    assert!(oracle > 0.0);
    let points = v["frontier"].as_array().unwrap();
    let settings: Vec<(String, String)> = points
        .iter()
        .map(|p| {
            (
                p["family"].as_str().unwrap().to_string(),
                p["setting"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (family, setting) in [
        ("window", "0m"),
        ("window", "240m"),
        ("keep-idle", "10m"),
        ("keep-idle", "120m"),
        ("headroom", "1"),
        ("headroom", "2"),
        ("warm", "5%"),
        ("warm", "100%"),
    ] {
        assert!(
            settings.contains(&(family.to_string(), setting.to_string())),
            "{family} {setting} in {settings:?}"
        );
    }
    assert_eq!(points.len(), 17);
    for p in points {
        assert_eq!(p["busy_agents_removed"], 0, "{p}");
        let share = p["started_at_once"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{p}");
        assert!(p["agent_hours"].as_f64().unwrap() >= oracle - 1e-9, "{p}");
        assert!(p["wait_p50_s"].is_number() && p["wait_p95_s"].is_number());
    }
    let of = |family: &str, setting: &str| {
        points
            .iter()
            .find(|p| p["family"] == family && p["setting"] == setting)
            .unwrap()
    };
    // A longer window costs more and starts more builds at once; two idle agents more
    // than one.
    let (w0, w240) = (of("window", "0m"), of("window", "240m"));
    assert!(w240["agent_hours"].as_f64() > w0["agent_hours"].as_f64());
    assert!(w240["started_at_once"].as_f64() > w0["started_at_once"].as_f64());
    assert!(
        of("headroom", "2")["started_at_once"].as_f64()
            >= of("headroom", "1")["started_at_once"].as_f64()
    );

    let table = simulate(&trace, &["--frontier"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("dominated by") && text.contains("keep-idle"),
        "{text}"
    );
}

#[test]
fn forecast_backtest_train_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series.csv");
    let mut csv = String::from("timestamp,busy_executors,agents_online\n");
    for i in 0..(24 * 24) {
        let t = chrono::DateTime::from_timestamp(1_700_006_400 + i * 3600, 0).unwrap();
        let hour = (i % 24) as f64;
        let v = 5.0
            + 0.2 * (i / 24) as f64
            + 6.0 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
        csv.push_str(&format!("{},{v:.3},10\n", t.to_rfc3339()));
    }
    std::fs::write(&series, csv).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
            .arg("forecast")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = series.to_str().unwrap();
    let small = [
        "--horizon",
        "1h",
        "--step",
        "1h",
        "--trees",
        "8",
        "--max-depth",
        "6",
    ];
    let json = run(&[
        &[
            "backtest", "--series", s, "--format", "json", "--folds", "2",
        ][..],
        &small[..],
    ]
    .concat());
    let b: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Errors of a real size: above zero (nobody forecasts this series exactly) and
    // below its daily swing of 6; RMSE at least MAE.
    for k in ["model", "last_value", "seasonal_naive"] {
        let (mae, rmse) = (
            b["mae"][k].as_f64().unwrap(),
            b["rmse"][k].as_f64().unwrap(),
        );
        assert!(mae > 0.0 && mae < 6.0, "{k}: {b}");
        assert!(rmse >= mae - 1e-9, "{k}: {b}");
    }
    assert!(b["points"].as_u64().unwrap() > 0);
    let model = dir.path().join("model.json");
    let trained = run(&[
        &["train", "--series", s, "--model", model.to_str().unwrap()][..],
        &small[..],
    ]
    .concat());
    assert!(trained.contains("trained on"), "{trained}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert!(
        saved["backtest"]["mae"]["model"].is_number(),
        "the model keeps its backtest scores"
    );
    assert!(saved["trained_to_ms"].is_number());
    let predicted: serde_json::Value = serde_json::from_str(&run(&[
        "predict",
        "--series",
        s,
        "--model",
        model.to_str().unwrap(),
    ]))
    .unwrap();
    // The series ends at 23:00 of day 23 at night level 5 + 0.2 x 23 = 9.6; an hour
    // later it is still night (the day peaks at 15.6).
    let f = predicted["forecast"].as_f64().unwrap();
    assert!((8.0..=11.5).contains(&f), "{predicted}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args(["forecast", "backtest", "--series", s, "--column", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no column \"nope\""));
}

#[test]
fn a_partial_behavior_is_valid_as_the_hpa_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jenkins-scaling.yaml"),
        [
            "jenkins:",
            "  controllers:",
            "    prod: {url: \"https://ci.example.com/\"}",
            "scaling:",
            "  pools:",
            "    linux:",
            "      controller: prod",
            "      label: linux",
            "      namespace: ci",
            "      deployment: agent-linux",
            "      behavior:",
            "        scaleDown: {stabilizationWindow: 10m}",
        ]
        .join("\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn duplicate_keys_and_unknown_sections_are_reported_where_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        "server:\n  body_limit_bytes: 2048\n  body_limit_bytes: 4096\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("duplicate entry with key \"body_limit_bytes\""),
        "{stderr}"
    );
    std::fs::remove_file(dir.path().join("service.yaml")).unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[("AUTOPILOT_NOSUCH__FIELD", "1")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("env AUTOPILOT_NOSUCH__FIELD: nosuch"),
        "{stderr}"
    );
}

/// JCasC's default merge (`errorOnConflict`) refuses a key two files set, even to the
/// same value: pointing CASC_JENKINS_CONFIG at `jenkins/casc/` must load.
#[test]
fn the_jcasc_samples_never_set_the_same_key() {
    fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    leaves(v, format!("{at}/{k}"), out);
                }
            }
            // JCasC merges sequences by conflict too: a list is one setting.
            _ => out.push(at),
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jenkins/casc");
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let doc: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut keys = Vec::new();
        leaves(&doc, String::new(), &mut keys);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for k in keys {
            if let Some(other) = seen.insert(k.clone(), name.clone()) {
                panic!("{k} is set in {other} and {name}");
            }
        }
    }
    assert!(seen.keys().any(|k| k.contains("cloudEventsGlobalConfig")));
}

/// Credentials in a controller's URL would follow it into logs, errors and answers: the
/// URL is refused and the secret appears nowhere in what check-config prints.
#[test]
fn a_controller_url_with_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jenkins.yaml"),
        "jenkins:\n  controllers:\n    prod: {url: \"https://autopilot:s3cr3t-token-value@ci.example.com/\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("jenkins.controllers.prod.url")
            && stderr.contains("set `user` and `api_token`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t-token-value") && !stdout.contains("s3cr3t-token-value"),
        "the token is never printed:\n{stdout}\n{stderr}"
    );
}

/// `simulate --pool-config` reads one pool in the service's schema and replays its own
/// policy as the live pool runs it: a budget of 12.5 % as 12.5 % (it was 13 %), a
/// keep-idle time of 90 s as 90 s (it was 60 s); a field the service does not know, or
/// one it refuses, is refused with its name.
#[test]
fn simulate_replays_a_pool_of_the_service_schema_with_its_own_budget_and_keep_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let mut csv = String::from("queued_at,job,label,duration_s\n");
    for i in 0..40 {
        csv.push_str(&format!("{},build,linux,300\n", 1_700_000_000 + i * 900));
    }
    std::fs::write(&trace, csv).unwrap();
    let pool = dir.path().join("pool.yaml");
    let base = "controller: prod\nlabel: linux\nnamespace: ci\ndeployment: agents\nmax: 20\n";
    let policies = |yaml: &str| -> Vec<String> {
        std::fs::write(&pool, format!("{base}{yaml}")).unwrap();
        let v = simulate_json(&trace, &["--pool-config", pool.to_str().unwrap()]);
        v["policies"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(
        policies("policy: warm\nwarm: {budget: 12.5%, window: 2h}\n"),
        ["warm:12.5"]
    );
    assert_eq!(
        policies("policy: keep-idle\nkeep_idle: 90s\n"),
        ["keep-idle:1m 30s"]
    );
    assert_eq!(policies(""), ["queue"]);
    // --policy still names another.
    std::fs::write(&pool, base).unwrap();
    let v = simulate_json(
        &trace,
        &[
            "--pool-config",
            pool.to_str().unwrap(),
            "--policy",
            "warm:25",
        ],
    );
    assert!(v["policies"]["warm:25"].is_object());
    for (yaml, field) in [
        ("agent_cpu: 2\n", "agent_cpu: is not a known setting"),
        ("min: 30\n", "min: must not exceed max (20)"),
        ("warm: {window: 10m}\n", "warm.window: must be at least 1h"),
        // A key given twice, as in the service's own settings files.
        ("max: 30\n", "is not valid YAML"),
    ] {
        std::fs::write(&pool, format!("{base}{yaml}")).unwrap();
        let out = simulate(&trace, &["--pool-config", pool.to_str().unwrap()]);
        assert!(!out.status.success(), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{yaml}: {err}");
    }
}
