//! Soak benchmark: the release binary, started as a process on 127.0.0.1 with a fresh
//! SQLite store, takes webhooks at a steady rate for a long time; every 30 s its resident
//! memory, WAL and database sizes are sampled, and every minute the webhooks' p50, p99 and
//! max latency and errors are printed. After the load it keeps sampling for a while (does
//! memory come back?). The goal: RSS within +/-10 % of its mean after the first 5 minutes
//! and under 200 MB, WAL under 256 MB, p99 under 20 ms every minute.
//!
//! The load is what a busy installation sends: Notification (STARTED, COMPLETED,
//! FINALIZED) and CloudEvents (queue entered_waiting and left, job started and completed)
//! for builds of 500 jobs with ever new build numbers, paced open-loop at the rate (late
//! requests are sent at once, never skipped).
//!
//! Run: `scripts/soak [MINUTES] [RATE]`, or `SOAK_MINUTES=60 SOAK_RATE=1000 cargo bench
//! --bench soak`. Settings (environment): SOAK_MINUTES (60), SOAK_RATE events/s (1000),
//! SOAK_TAIL_MINUTES after the load (3), SOAK_SAMPLE_SECONDS (30), SOAK_BINARY (the release
//! binary cargo builds beside the benchmark). Under `cargo test --all-targets` it runs 5 s
//! at 200 events/s. Loopback only; stops by itself.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "soak-webhook-token-0123456789abcdef";
const WORKERS: u64 = 64;
const JOBS: u64 = 500;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Event `n` of the load: (path, extra headers, body).
fn event(n: u64, now_ms: i64) -> (&'static str, Vec<(&'static str, String)>, String) {
    let job = n % JOBS;
    let build = n / 7 + 1;
    let name = format!("team-{}/app-{job}", job % 20);
    let url = format!("job/team-{}/job/app-{job}/", job % 20);
    let root = "https://ci.example.com/";
    let queue_id = 1_000_000 + n / 7;
    match n % 7 {
        0..=2 => {
            let phase = ["STARTED", "COMPLETED", "FINALIZED"][(n % 7) as usize];
            let status = if phase == "STARTED" {
                String::new()
            } else {
                r#","status":"SUCCESS""#.to_string()
            };
            let body = format!(
                r#"{{"name":"{name}","display_name":"app-{job}","url":"{url}","build":{{"full_url":"{root}{url}{build}/","number":{build},"queue_id":{queue_id},"timestamp":{start},"duration":{dur},"phase":"{phase}"{status},"url":"{url}{build}/","scm":{{"url":"https://git.example.com/app.git","branch":"origin/main","commit":"4f5e6d7c{job:04}"}},"parameters":{{"DEPLOY":"false","TARGET":"staging"}},"log":"","notes":"","artifacts":{{}}}}}}"#,
                start = now_ms - 120_000,
                dur = if phase == "STARTED" {
                    0
                } else {
                    95_000 + job as i64
                },
            );
            ("/webhooks/notification", Vec::new(), body)
        }
        3 | 4 => {
            let (ce_type, status, exit) = if n % 7 == 3 {
                (
                    "org.jenkinsci.queue.entered_waiting",
                    "ENTERED_WAITING",
                    "null".to_string(),
                )
            } else {
                (
                    "org.jenkinsci.queue.left",
                    "LEFT",
                    (now_ms - 1_000).to_string(),
                )
            };
            let body = format!(
                r#"{{"ciUrl":"{root}","displayName":"app-{job}","entryTime":{entry},"exitTime":{exit},"startedBy":"timer","jenkinsQueueId":{queue_id},"status":"{status}","duration":0,"queueCauses":[{{"type":"waiting","reasonForWaiting":"Waiting for next available executor on ‘linux’"}}]}}"#,
                entry = now_ms - 30_000,
            );
            (
                "/webhooks/cloudevents",
                ce_headers(n, ce_type, &format!("{root}{url}")),
                body,
            )
        }
        _ => {
            let (ce_type, phase) = if n % 7 == 5 {
                ("org.jenkinsci.job.started", "STARTED")
            } else {
                ("org.jenkinsci.job.completed", "COMPLETED")
            };
            let body = format!(
                r#"{{"name":"{name}","displayName":"app-{job}","url":"{url}","build":{{"fullUrl":"{root}{url}{b}/","number":{b},"queueId":{q},"timestamp":{start},"duration":{dur},"phase":"{phase}","status":"SUCCESS","url":"{url}{b}/"}}}}"#,
                b = build + 1_000_000,
                q = queue_id + 5_000_000,
                start = now_ms - 60_000,
                dur = if phase == "STARTED" { 0 } else { 55_000 },
            );
            (
                "/webhooks/cloudevents",
                ce_headers(n, ce_type, &format!("{root}{url}")),
                body,
            )
        }
    }
}

/// A binary-mode CloudEvent's headers.
fn ce_headers(n: u64, ce_type: &str, source: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", format!("soak-{n}")),
        ("ce-type", ce_type.to_string()),
        ("ce-source", source.to_string()),
    ]
}

/// A `/proc/PID/status` figure in bytes: `VmRSS` (all resident memory), `RssAnon` (the
/// heap and stacks), `RssFile` (mapped files: the binary, SQLite's shared WAL index).
fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The machine's CPU time so far, in clock ticks: (all, stolen by the hypervisor). On a
/// virtual machine whose host is busy, steal makes latency no code can remove: each
/// minute's share is printed beside its p99 so such minutes can be told apart.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all = fields.iter().take(8).sum();
    (all, fields.get(7).copied().unwrap_or(0))
}

/// The service's own CPU time so far (user and system), in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and
    // 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Latencies (µs) and errors of the minute being measured.
#[derive(Default)]
struct Minute {
    latencies: Vec<u64>,
    errors: u64,
    /// What the first failed request of the minute got: its status and body, or the
    /// transport error with its causes.
    first_error: Option<String>,
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Without --bench (`cargo test --all-targets`) a few seconds check that it works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rate = env_or("SOAK_RATE", if smoke { 200 } else { 1000 }).max(1);
    let (load, tail) = if smoke {
        (Duration::from_secs(5), Duration::from_secs(1))
    } else {
        (
            Duration::from_secs(env_or("SOAK_MINUTES", 60) * 60),
            Duration::from_secs(env_or("SOAK_TAIL_MINUTES", 3) * 60),
        )
    };
    let sample_every = if smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(env_or("SOAK_SAMPLE_SECONDS", 30).max(1))
    };
    // The binary cargo built beside this benchmark (release under `cargo bench`).
    let binary = std::env::var("SOAK_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_jenkins-autopilot").to_string());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Child(
        std::process::Command::new(&binary)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("--config")
            .arg(dir.path())
            .env("AUTOPILOT_WEBHOOK__TOKEN", TOKEN)
            .env("AUTOPILOT_LOGGING__FILTER", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the service"),
    );
    let pid = child.0.id();
    let db = dir.path().join("autopilot.db");
    let wal = dir.path().join("autopilot.db-wal");
    let base = format!("http://127.0.0.1:{port}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Idle connections are dropped well before the service's keep-alive (75 s) closes
        // them: reusing one just as the service closes it loses that request ("connection
        // closed before message completed"), as a client with reqwest's default of 90 s
        // did about once an hour.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(WORKERS as usize)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let started = Instant::now();
        while client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(started.elapsed() < Duration::from_secs(60), "the service did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "soak: {rate} events/s for {:.1} min, then {:.1} min at rest; \
             pid {pid}, data in {}",
            load.as_secs_f64() / 60.0,
            tail.as_secs_f64() / 60.0,
            dir.path().display()
        );
        let minute = Arc::new(Mutex::new(Minute::default()));
        let next = Arc::new(AtomicU64::new(0));
        let load_start = Instant::now();
        let load_end = load_start + load;
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (client, base, minute, next) =
                (client.clone(), base.clone(), minute.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                // Worker w sends events w, w + WORKERS, ...: each at its own instant.
                let gap = Duration::from_secs_f64(WORKERS as f64 / rate as f64);
                let mut due = load_start + Duration::from_secs_f64(w as f64 / rate as f64);
                loop {
                    if due >= load_end {
                        return;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    due += gap;
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    let (path, headers, body) = event(n, now_ms);
                    let mut req = client
                        .post(format!("{base}{path}"))
                        .bearer_auth(TOKEN)
                        .header("Content-Type", "application/json")
                        .timeout(Duration::from_secs(30))
                        .body(body);
                    for (k, v) in headers {
                        req = req.header(k, v);
                    }
                    let t = Instant::now();
                    let failed = match req.send().await {
                        Ok(r) => {
                            let status = r.status();
                            let body = r.bytes().await;
                            (!status.is_success()).then(|| {
                                let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
                                format!("HTTP {status}: {}", text.unwrap_or_default())
                            })
                        }
                        Err(e) => {
                            let mut text = e.to_string();
                            let mut source = std::error::Error::source(&e);
                            while let Some(s) = source {
                                text.push_str(&format!(": {s}"));
                                source = s.source();
                            }
                            Some(text)
                        }
                    };
                    let us = t.elapsed().as_micros() as u64;
                    let mut m = minute.lock().unwrap();
                    m.latencies.push(us);
                    if let Some(why) = failed {
                        m.errors += 1;
                        m.first_error.get_or_insert(why);
                    }
                }
            }));
        }

        let total = load + tail;
        let mut samples: Vec<(f64, u64, u64, u64)> = Vec::new();
        let mut p99s: Vec<u64> = Vec::new();
        let mut next_sample = Duration::ZERO;
        let mut next_minute = Duration::from_secs(60);
        let (mut requests, mut errors) = (0u64, 0u64);
        let (mut ticks_before, mut service_before) = (cpu_ticks(), process_ticks(pid));
        let mut steals: Vec<f64> = Vec::new();
        println!(
            "{:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "min", "rss_MB", "anon_MB", "file_MB", "wal_MB", "db_MB"
        );
        while load_start.elapsed() < total + Duration::from_secs(1) {
            let at = load_start.elapsed();
            if at >= next_sample {
                let (rss, w, d) = (rss_bytes(pid), file_size(&wal), file_size(&db));
                let min = at.as_secs_f64() / 60.0;
                println!(
                    "{min:>7.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    rss as f64 / 1e6,
                    status_bytes(pid, "RssAnon:") as f64 / 1e6,
                    status_bytes(pid, "RssFile:") as f64 / 1e6,
                    w as f64 / 1e6,
                    d as f64 / 1e6
                );
                samples.push((min, rss, w, d));
                next_sample += sample_every;
            }
            if at >= next_minute {
                let m = std::mem::take(&mut *minute.lock().unwrap());
                let mut l = m.latencies;
                l.sort_unstable();
                let (ticks, service) = (cpu_ticks(), process_ticks(pid));
                let all = ticks.0.saturating_sub(ticks_before.0).max(1) as f64;
                let steal = ticks.1.saturating_sub(ticks_before.1) as f64 / all;
                // Clock ticks are per CPU: the share of all CPUs' time, times their count.
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let service_cores = service.saturating_sub(service_before) as f64 / all * cpus;
                (ticks_before, service_before) = (ticks, service);
                if !l.is_empty() {
                    let p99 = percentile(&l, 0.99);
                    println!(
                        "minute {:>3}: {:>6} requests, {} errors, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; service {:.2} cores, steal {:.0} %",
                        next_minute.as_secs() / 60,
                        l.len(),
                        m.errors,
                        percentile(&l, 0.5) as f64 / 1000.0,
                        p99 as f64 / 1000.0,
                        l[l.len() - 1] as f64 / 1000.0,
                        service_cores,
                        steal * 100.0
                    );
                    p99s.push(p99);
                    steals.push(steal);
                }
                if let Some(why) = &m.first_error {
                    println!("  first error of the minute: {why}");
                }
                requests += l.len() as u64;
                errors += m.errors;
                next_minute += Duration::from_secs(60);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for w in workers {
            let _ = w.await;
        }
        // What the last, partial minute took.
        let rest = std::mem::take(&mut *minute.lock().unwrap());
        if !rest.latencies.is_empty() {
            let mut l = rest.latencies;
            l.sort_unstable();
            let p99 = percentile(&l, 0.99);
            println!(
                "last part: {:>6} requests, {} errors, p50 {:.1} ms, p99 {:.1} ms",
                l.len(),
                rest.errors,
                percentile(&l, 0.5) as f64 / 1000.0,
                p99 as f64 / 1000.0
            );
            p99s.push(p99);
            requests += l.len() as u64;
            errors += rest.errors;
            if let Some(why) = &rest.first_error {
                println!("  first error of the part: {why}");
            }
        }
        // Where the time went: the service's own commit latencies.
        if let Ok(r) = client.get(format!("{base}/metrics")).send().await
            && let Ok(text) = r.text().await
        {
            for line in text.lines().filter(|l| {
                l.starts_with("autopilot_store_commit_seconds")
                    || l.starts_with("autopilot_store_batch_requests_sum")
                    || l.starts_with("autopilot_store_batch_requests_count")
            }) {
                println!("service: {line}");
            }
        }

        // The judgement, after the first 5 minutes of load.
        let steady: Vec<&(f64, u64, u64, u64)> = samples
            .iter()
            .filter(|s| s.0 >= 5.0 && s.0 <= load.as_secs_f64() / 60.0)
            .collect();
        let mean = steady.iter().fold(0.0, |a, s| a + s.1 as f64) / steady.len().max(1) as f64;
        let spread = steady
            .iter()
            .map(|s| (s.1 as f64 - mean).abs() / mean.max(1.0))
            .fold(0.0, f64::max);
        let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
        let wal_max = samples.iter().map(|s| s.2).max().unwrap_or(0);
        let p99_max = p99s.iter().copied().max().unwrap_or(0);
        println!(
            "summary: {requests} requests, {errors} errors; RSS after 5 min: mean {:.1} MB, \
             within +/-{:.1} % of it, max {:.1} MB over the run; WAL max {:.1} MB; \
             worst minute's p99 {:.1} ms",
            mean / 1e6,
            spread * 100.0,
            rss_max as f64 / 1e6,
            wal_max as f64 / 1e6,
            p99_max as f64 / 1000.0
        );
        // The machine's own part: minutes the hypervisor took more than 5 % of the CPUs.
        let starved: Vec<usize> = (0..steals.len()).filter(|&i| steals[i] > 0.05).collect();
        let fed_p99 = (0..p99s.len())
            .filter(|i| !starved.contains(i))
            .map(|i| p99s[i])
            .max();
        println!(
            "steal: mean {:.1} % of the CPUs; {} of {} minutes above 5 %; worst p99 of the \
             others {}",
            steals.iter().fold(0.0, |a, s| a + s) / steals.len().max(1) as f64 * 100.0,
            starved.len(),
            steals.len(),
            fed_p99.map_or("-".to_string(), |p| format!("{:.1} ms", p as f64 / 1000.0))
        );
        let goals = [
            ("RSS flat within +/-10 % after 5 min", spread <= 0.10),
            ("RSS under 200 MB", rss_max < 200_000_000),
            ("WAL under 256 MB", wal_max < 256 << 20),
            ("p99 under 20 ms every minute", p99_max < 20_000),
            ("no errors", errors == 0),
        ];
        for (goal, met) in goals {
            println!("goal {goal}: {}", if met { "met" } else { "NOT met" });
        }
        if smoke {
            assert!(samples.len() >= 3, "sampled the service");
            assert!(requests > 0, "sent webhooks");
            assert_eq!(errors, 0, "every webhook was taken");
        }
    });
    drop(child);
}
