//! Mutation fuzzing of every payload parser on the stable toolchain: real plugin samples
//! (as the plugins' documentation and code send them) are mutated byte-wise and
//! value-wise, and each parser must answer `Ok` or a field error for every one, never
//! panic; every event it accepts must also pass or fail the bounds check cleanly.
//! Prints executions, executions per second and panics per target; exits 1 on a panic.
//!
//! Run: `cargo bench --bench fuzz` (`FUZZ_EXECUTIONS`, default 1,000,000 per target;
//! `FUZZ_SEED`; the settings loader, which reads files, runs a hundredth of them). Under
//! `cargo test --all-targets` a short pass of 2,000 per target runs.

use jenkins_autopilot::domain::{ControllerName, Timestamp};
use jenkins_autopilot::ingest::{
    IngestContext, Ingested, cloudevents, limits, notification, performance, statistics,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

fn samples() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let note = |phase: &str, status: Value| {
        json!({"name": "app", "url": "job/app/", "build": {"full_url": "https://ci.example.com/job/app/3/",
            "number": 3, "queue_id": 77, "timestamp": 1_700_000_000_000i64, "duration": 30_000, "phase": phase,
            "status": status, "url": "job/app/3/", "scm": {"url": "https://git.example.com/app.git",
            "branch": "main", "commit": "0123456789abcdef"}, "parameters": {"BRANCH": "main"},
            "log": "", "notes": ""}})
    };
    let ce_job = json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "number": 4,
        "status": "FAILED", "duration": 20_000, "jenkinsQueueId": 91, "url": "job/app/4/",
        "parameters": null, "scmState": {"url": null, "branch": null, "commit": null}});
    let ce_queue = json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "entryTime": 1_700_000_000_000i64,
        "exitTime": null, "startedBy": "SCM", "jenkinsQueueId": 3, "status": "ENTERED_WAITING", "duration": 0,
        "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on \u{2018}linux\u{2019}",
        "type": "entered_waiting", "entryTime": 1_700_000_000_000i64, "exitTime": null}]});
    let structured = json!({"specversion": "1.0", "id": "e1", "source": "job/app",
        "type": "org.jenkinsci.job.started", "datacontenttype": "application/json", "data": ce_job.clone()});
    let stats_build = json!({"ciUrl": "https://ci.example.com/", "jobName": "app", "fullJobName": "team/app",
        "number": 5, "slaveInfo": {"slaveName": "agent-1", "label": "linux", "executor": "0"},
        "startTime": 1_700_000_000_000i64, "endTime": 0, "result": "INPROGRESS", "duration": 0,
        "parameters": {"A": "b"}, "scmInfo": {"url": "u", "branch": "b", "commit": "c"}, "queueTime": 10_000,
        "buildUrl": "job/team/job/app/5/", "contextId": 1, "buildCause": "SCM", "buildFailureCauses": []});
    let stats_step = json!({"startTime": 1_700_000_000_000i64, "endTime": 1_700_000_004_000i64,
        "buildUrl": "job/app/7/", "buildStepType": "Shell", "buildStepId": "s1"});
    let perf = json!({"type": "build", "elapsed_ms": 60_000, "cgroup": {"cpu.stat":
        "usage_usec 30000000\nuser_usec 20000000\nsystem_usec 10000000\n", "memory.peak": "314572800",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
        "requests": {"cpu": "500m", "memory": "1Gi"}, "stages": [{"name": "Compile", "duration_ms": 40_000}]});
    let settings = "server:\n  body_limit_bytes: 2048\nscaling:\n  pools:\n    linux: {controller: prod, \
        label: linux, namespace: ci, deployment: a, behavior: {scaleDown: {stabilizationWindow: 10m}}}\n\
        jenkins:\n  controllers:\n    prod: {url: \"https://ci.example.com/\"}\n";
    let b = |v: &Value| v.to_string().into_bytes();
    vec![
        (
            "notification",
            vec![
                b(&note("STARTED", Value::Null)),
                b(&note("COMPLETED", json!("SUCCESS"))),
                b(&note("FINALIZED", json!("FAILURE"))),
            ],
        ),
        ("cloudevents-binary", vec![b(&ce_job), b(&ce_queue)]),
        ("cloudevents-structured", vec![b(&structured)]),
        (
            "statistics",
            vec![b(&stats_build), b(&stats_step), b(&ce_queue)],
        ),
        ("performance", vec![b(&perf)]),
        ("settings", vec![settings.as_bytes().to_vec()]),
    ]
}

const INTERESTING: [&str; 14] = [
    "0",
    "-1",
    "9223372036854775807",
    "18446744073709551615",
    "1e309",
    "null",
    "\"\"",
    "[]",
    "{}",
    "true",
    "\"\\u202e\"",
    "\"FAILED\"",
    "\"../..\"",
    "-9223372036854775808",
];

/// One mutation of `seed`: a byte flipped, inserted or removed, a span duplicated, or a
/// number, string or literal swapped for one that breaks assumptions.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if out.is_empty() {
            out.push(b'{');
        }
        let i = rng.random_range(0..out.len());
        match rng.random_range(0..6) {
            0 => out[i] ^= 1 << rng.random_range(0..8),
            1 => out.insert(i, rng.random()),
            2 => {
                out.remove(i);
            }
            3 => {
                let j = (i + rng.random_range(1..32)).min(out.len());
                let span = out[i..j].to_vec();
                out.splice(i..i, span);
            }
            _ => {
                // Replace the value after a `:` (JSON) with an interesting one.
                if let Some(colon) = out[i..].iter().position(|&c| c == b':') {
                    let start = i + colon + 1;
                    let end = out[start..]
                        .iter()
                        .position(|&c| c == b',' || c == b'}' || c == b'\n')
                        .map_or(out.len(), |e| start + e);
                    let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                    out.splice(start..end, v.bytes());
                }
            }
        }
    }
    out
}

fn run(target: &str, input: &[u8], ctx: &IngestContext) {
    let check = |r: Result<Ingested, jenkins_autopilot::ingest::IngestError>| {
        if let Ok(Ingested::Events(events)) = r {
            for e in &events {
                let _ = limits::check(e);
            }
        }
    };
    match target {
        "notification" => check(notification::parse(input, ctx)),
        "cloudevents-binary" => {
            if let Ok(data) = cloudevents::parse_binary_data(input) {
                for t in [
                    "org.jenkinsci.job.failed",
                    "org.jenkinsci.queue.entered_waiting",
                ] {
                    let attrs = cloudevents::CeAttributes {
                        id: Some("x".into()),
                        ce_type: Some(t.into()),
                        source: None,
                    };
                    check(cloudevents::parse(&attrs, data.clone(), ctx));
                }
            }
        }
        "cloudevents-structured" => {
            if let Ok((attrs, data)) = cloudevents::parse_structured(input) {
                check(cloudevents::parse(&attrs, data, ctx));
            }
        }
        "statistics" => check(statistics::parse(input, None, ctx)),
        "performance" => {
            let _ = performance::parse(input);
        }
        "settings" => {
            let dir = std::env::temp_dir().join(format!("autopilot-fuzz-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("fuzz.yaml"), input);
            let _ = jenkins_autopilot::config::Settings::load(Some(&dir), Vec::new());
        }
        other => unreachable!("no target {other}"),
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let executions: u64 = if smoke {
        2_000
    } else {
        std::env::var("FUZZ_EXECUTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let ctx = IngestContext {
        controller_override: None,
        default_controller: ControllerName::parse("default").unwrap(),
        received_at: Timestamp::now(),
    };
    // Panics are what this looks for: keep their messages short.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let mut failed = false;
    for (target, seeds) in samples() {
        // Settings files are written to and read from disk: a hundredth of the executions.
        let n = if target == "settings" {
            executions / 100
        } else {
            executions
        }
        .max(1);
        let mut rng = StdRng::seed_from_u64(seed);
        let started = Instant::now();
        let mut panics = 0u64;
        for i in 0..n {
            let input = mutate(&seeds[(i as usize) % seeds.len()], &mut rng);
            if catch_unwind(AssertUnwindSafe(|| run(target, &input, &ctx))).is_err() {
                panics += 1;
                if panics == 1 {
                    eprintln!("{target}: input {:?}", String::from_utf8_lossy(&input));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz {target:<24} {n:>10} executions  {:>9.0}/s  panics {panics}",
            n as f64 / secs.max(1e-9)
        );
        failed |= panics > 0;
    }
    if failed {
        std::process::exit(1);
    }
}
