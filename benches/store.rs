//! Store write cost without HTTP: group commits of N new builds' events straight into
//! `Store::write_batch` on SQLite (durable). Prints the time per commit and per event.
//! Run: `cargo bench --bench store`.

use jenkins_autopilot::config::{Settings, SqliteSynchronous};
use jenkins_autopilot::domain::{ControllerName, IngestEvent, Timestamp};
use jenkins_autopilot::ingest::{IngestContext, Ingested, notification};
use jenkins_autopilot::store::Store;
use std::time::Instant;

fn event(n: u64) -> Vec<IngestEvent> {
    let body = format!(
        r#"{{"name":"bench","url":"job/bench/","build":{{"full_url":"https://ci.example.com/job/bench/{n}/","number":{n},"queue_id":{n},"timestamp":1700000000000,"duration":0,"phase":"STARTED","url":"job/bench/{n}/"}}}}"#
    );
    let ctx = IngestContext {
        controller_override: None,
        default_controller: ControllerName::parse("default").unwrap(),
        received_at: Timestamp::now(),
    };
    match notification::parse(body.as_bytes(), &ctx).unwrap() {
        Ingested::Events(e) => e,
        Ingested::Ignored { .. } => unreachable!(),
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None, Vec::new()).unwrap().database;
        if std::env::var("BENCH_SYNCHRONOUS").as_deref() == Ok("normal") {
            settings.sqlite_synchronous = SqliteSynchronous::Normal;
        }
        let store = Store::connect(&settings, dir.path()).await.unwrap();
        let mut next = 1u64;
        // Without --bench (`cargo test --all-targets`) a few commits check it still works.
        let smoke = !std::env::args().any(|a| a == "--bench");
        for batch_size in [1usize, 8, 32, 128] {
            let commits = if smoke { 2 } else { (4096 / batch_size).max(64) };
            let started = Instant::now();
            for _ in 0..commits {
                let events: Vec<Vec<IngestEvent>> = (0..batch_size)
                    .map(|_| {
                        next += 1;
                        event(next)
                    })
                    .collect();
                let refs: Vec<&[IngestEvent]> = events.iter().map(Vec::as_slice).collect();
                store.write_batch(&refs, Timestamp::now()).await.unwrap();
            }
            let per_commit = started.elapsed().as_secs_f64() / commits as f64;
            println!(
                "batch {batch_size:>4}: {:>8.3} ms per commit, {:>7.1} us per event, {:>8.0} events/s",
                per_commit * 1e3,
                per_commit / batch_size as f64 * 1e6,
                batch_size as f64 / per_commit
            );
        }
        store.close().await;
    });
}
