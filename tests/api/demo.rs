//! `jenkins-autopilot demo`: within seconds the bundled trace has produced builds, the
//! controller's decisions scaling the in-memory pool up and, after idle time on the
//! trace's clock, down again (watched in the dashboard by headless Chromium), a trained
//! forecast, costs, and the dashboard.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_demo_shows_builds_scaling_costs_and_forecasts_within_seconds() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "3600",
            "--for",
            "40s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints its address");
    let base = first
        .split("dashboard at ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("an address")
        .trim_end_matches('/')
        .to_string();
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        }
    };
    // The dashboard's pool view, watched while the replay runs.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/demo.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(format!("{base}/")).arg("30");
    let browser = tokio::task::spawn_blocking(move || cmd.output());
    let deadline = Instant::now() + Duration::from_secs(35);
    let (mut live_builds, mut decided, mut shrunk, mut forecast) = (false, false, false, false);
    while Instant::now() < deadline && !(live_builds && decided && shrunk && forecast) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(b) = get(format!("{base}/api/v1/builds?controller=demo&limit=1")).await {
            // History numbers builds 1..=235; the live replay goes on from there.
            live_builds = b["builds"][0]["number"].as_u64().unwrap_or(0) > 235;
        }
        if let Some(d) = get(format!("{base}/api/v1/pools/linux/decisions?limit=1000")).await
            && let Some(ds) = d["decisions"].as_array()
        {
            let applied = |d: &&Value| d["outcome"] == "applied";
            decided |= ds
                .iter()
                .filter(applied)
                .any(|d| d["desired"].as_u64() > d["current"].as_u64());
            shrunk |= ds
                .iter()
                .filter(applied)
                .any(|d| d["desired"].as_u64() < d["current"].as_u64());
        }
        if let Some(f) = get(format!("{base}/api/v1/pools/linux/forecast")).await {
            forecast = f["forecast"]["value"].is_number();
        }
    }
    assert!(live_builds, "live builds replayed");
    assert!(decided, "the service's controller scaled the pool up");
    assert!(
        shrunk,
        "the pool shrank after idle time on the trace's clock"
    );
    assert!(forecast, "a forecast from the recorded history");
    let cost = get(format!("{base}/api/v1/costs?range=7d")).await.unwrap();
    assert!(cost["total"]["total"].as_f64().unwrap() > 0.0, "{cost}");
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("jenkins-autopilot"));
    let out = browser
        .await
        .unwrap()
        .expect("run node (./scripts/test installs Chromium and the browser test's packages)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    assert_eq!(shown["errors"], serde_json::json!([]), "{shown}");
    // The page showed the pool with agents and, later, with fewer.
    let current: Vec<u64> = shown["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["current"].as_u64())
        .collect();
    let peak = current.iter().position(|&c| c > 0);
    let shrank_after = peak.and_then(|p| current[p..].iter().position(|&c| c < current[p]));
    assert!(
        shrank_after.is_some(),
        "the dashboard showed the pool growing, then shrinking: {shown}"
    );
}
