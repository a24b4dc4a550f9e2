//! Ingest benchmark: the same HTTP load generator against
//! (a) `POST /webhooks/notification`, durable (SQLite, WAL, synchronous=FULL, group commit)
//! (b) an actix-web handler that answers 200 doing nothing,
//! in one run: 64 connections, 20 s each (BENCH_SECONDS, BENCH_CONNECTIONS to change;
//! BENCH_SYNCHRONOUS=normal for SQLite's synchronous=NORMAL).
//! Loopback only; bounded in time. Run: `cargo bench --bench ingest`.

use actix_web::{App, HttpResponse, HttpServer, web};
use jenkins_autopilot::config::Settings;
use jenkins_autopilot::startup::Application;
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-webhook-token-0123456789";

struct Figures {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: String,
    connections: usize,
    seconds: u64,
    body_for: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let url = url.clone();
        let counter = counter.clone();
        let body_for = body_for.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = body_for(n);
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        requests: all.len(),
        errors,
        per_second: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} errors)",
        f.per_second,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.requests,
        f.errors
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: then a one-second
    // smoke run checks the benchmark still works without spending CI's time.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let env_or = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = if smoke {
        1
    } else {
        env_or("BENCH_SECONDS", 20)
    };
    let connections = if smoke {
        4
    } else {
        env_or("BENCH_CONNECTIONS", 64) as usize
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None, Vec::new()).unwrap();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.data_dir = dir.path().to_path_buf();
        settings.webhook.token = Some(SecretString::from(TOKEN));
        if std::env::var("BENCH_SYNCHRONOUS").as_deref() == Ok("normal") {
            settings.database.sqlite_synchronous = jenkins_autopilot::config::SqliteSynchronous::Normal;
        }
        let app = Application::build(settings).await.unwrap();
        let app_port = app.port();
        let app_handle = app.server_handle();
        tokio::spawn(app.run_until_stopped());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let noop_port = listener.local_addr().unwrap().port();
        let noop = HttpServer::new(|| App::new().route("/", web::post().to(|| async { HttpResponse::Ok().finish() })))
            .listen(listener)
            .unwrap()
            .run();
        let noop_handle = noop.handle();
        tokio::spawn(noop);

        let notification = Arc::new(|n: u64| {
            // A distinct build per request, so every request stores a new event.
            format!(
                r#"{{"name":"bench","display_name":"bench","url":"job/bench/","build":{{"full_url":"https://ci.example.com/job/bench/{n}/","number":{n},"queue_id":{q},"timestamp":1700000000000,"duration":0,"phase":"STARTED","url":"job/bench/{n}/","scm":{{}},"log":"","notes":"","artifacts":{{}}}}}}"#,
                n = n + 1,
                q = n + 1000
            )
        });
        println!(
            "ingest benchmark: {connections} connections, {seconds} s each, loopback, SQLite synchronous={:?}",
            std::env::var("BENCH_SYNCHRONOUS").unwrap_or_else(|_| "full".into())
        );
        let base = load(format!("http://127.0.0.1:{noop_port}/"), connections, seconds, notification.clone()).await;
        print("(b) do-nothing actix handler", &base);
        let url = format!("http://127.0.0.1:{app_port}/webhooks/notification?token={TOKEN}");
        let ingest = load(url, connections, seconds, notification).await;
        print("(a) notification webhook, durable", &ingest);
        assert!(ingest.requests > 0 && base.requests > 0, "the load generator got no answers");
        let metrics = reqwest::get(format!("http://127.0.0.1:{app_port}/metrics")).await.unwrap().text().await.unwrap();
        let value = |name: &str| -> f64 {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let commits = value("autopilot_store_commit_seconds_count");
        println!(
            "    group commit: {commits:.0} commits, mean {:.2} ms each, mean {:.1} requests per commit",
            value("autopilot_store_commit_seconds_sum") / commits * 1e3,
            value("autopilot_store_batch_requests_sum") / value("autopilot_store_batch_requests_count"),
        );
        println!(
            "ratio a/b: {:.2} of the do-nothing handler's req/s; p99 {:.2} ms (goal: ratio >= 0.5, p99 < 10 ms)",
            ingest.per_second / base.per_second,
            ingest.p99.as_secs_f64() * 1e3
        );
        noop_handle.stop(true).await;
        app_handle.stop(true).await;
    });
}
