//! What the fuzzers drive: each payload parser as a webhook would call it, then the
//! bounds check on every event it accepts, and the settings loader on one file. A target
//! must answer (`Ok` or an error naming the field) for every input, never panic. Used by
//! the `cargo fuzz` targets in `fuzz/` and by `benches/fuzz.rs`.

use crate::domain::{ControllerName, Timestamp};
use crate::ingest::{
    IngestContext, IngestError, Ingested, cloudevents, limits, notification, performance,
    statistics,
};

/// The fuzzed entry points.
pub const TARGETS: [&str; 6] = [
    "notification",
    "cloudevents-binary",
    "cloudevents-structured",
    "statistics",
    "performance",
    "settings",
];

/// The context every fuzzed payload is parsed in.
pub fn context() -> IngestContext {
    IngestContext {
        controller_override: None,
        default_controller: ControllerName::parse("default").expect("a valid name"),
        received_at: Timestamp::from_millis(1_700_000_000_000).expect("a valid time"),
    }
}

fn check(parsed: Result<Ingested, IngestError>) {
    if let Ok(Ingested::Events(events)) = parsed {
        for e in &events {
            let _ = limits::check(e);
        }
    }
}

/// Feeds `input` to `target` (one of [`TARGETS`]).
pub fn run(target: &str, input: &[u8], ctx: &IngestContext) {
    match target {
        "notification" => check(notification::parse(input, ctx)),
        "cloudevents-binary" => {
            if let Ok(data) = cloudevents::parse_binary_data(input) {
                for t in [
                    "org.jenkinsci.job.failed",
                    "org.jenkinsci.queue.entered_waiting",
                ] {
                    let attrs = cloudevents::CeAttributes {
                        specversion: Some("1.0".into()),
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
            let text = String::from_utf8_lossy(input).into_owned();
            let _ = crate::config::Settings::from_texts(
                vec![("fuzz.yaml".into(), text)],
                Vec::new(),
                Vec::new(),
            );
        }
        other => panic!("no fuzz target {other}"),
    }
}
