//! A pool's load as the profile selection judges it: a pure function of the pool's last
//! decision (its time, whether its reads failed, its executor counts) and the time now.

use super::choose::Load;
use crate::domain::{DecisionInputs, Timestamp};

/// What the pool last read, as its newest decision keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub decided_at: Timestamp,
    /// Why its reads failed, if they did.
    pub error: Option<&'a str>,
    pub inputs: &'a DecisionInputs,
}

/// The pool's busy share: busy executors over all its executors. No reading yet, a read
/// that failed, or one older than `max_age_ms` leaves the load unknown, and says why.
pub fn pool_load(pool: &str, last: Option<Reading<'_>>, now: Timestamp, max_age_ms: i64) -> Load {
    let unknown = |how: String| Load { percent: None, how };
    let Some(last) = last else {
        return unknown(format!("load unknown: pool {pool} has not reconciled yet"));
    };
    if let Some(err) = last.error {
        return unknown(format!(
            "load unknown: pool {pool}'s last read failed ({err})"
        ));
    }
    if now.millis() - last.decided_at.millis() > max_age_ms {
        return unknown(format!("load unknown: pool {pool}'s last reading is stale"));
    }
    let inputs = last.inputs;
    match (inputs.busy_executors, inputs.idle_executors) {
        (Some(busy), Some(idle)) => {
            let (busy, idle) = (u64::from(busy), u64::from(idle));
            let total = busy + idle;
            let percent = if total == 0 {
                // No executors at all: loaded when work waits, idle otherwise.
                if inputs.queued.unwrap_or(0) > 0 {
                    100
                } else {
                    0
                }
            } else {
                (busy * 100).div_ceil(total) as u32
            };
            Load {
                percent: Some(percent),
                how: format!("pool {pool} is {percent} % busy ({busy} of {total} executors)"),
            }
        }
        _ => unknown(format!(
            "load unknown: pool {pool}'s last reading has no executor counts"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_is_the_busy_share_of_a_fresh_successful_reading() {
        let at = |ms| Timestamp::from_millis(ms).unwrap();
        let inputs = |busy, idle, queued| DecisionInputs {
            busy_executors: busy,
            idle_executors: idle,
            queued,
            ..Default::default()
        };
        let fresh = inputs(Some(3), Some(1), Some(0));
        let reading = |decided, error, inputs| {
            Some(Reading {
                decided_at: at(decided),
                error,
                inputs,
            })
        };
        let load = |last| pool_load("linux", last, at(100_000), 30_000);
        assert_eq!(load(reading(90_000, None, &fresh)).percent, Some(75));
        // One busy of three rounds up: never judged idler than it is.
        let third = inputs(Some(1), Some(2), None);
        assert_eq!(load(reading(90_000, None, &third)).percent, Some(34));
        let none = inputs(Some(0), Some(0), Some(2));
        assert_eq!(load(reading(90_000, None, &none)).percent, Some(100));
        let none_idle = inputs(Some(0), Some(0), None);
        assert_eq!(load(reading(90_000, None, &none_idle)).percent, Some(0));
        for (last, why) in [
            (None, "has not reconciled yet"),
            (
                reading(90_000, Some("jenkins: timed out"), &fresh),
                "last read failed",
            ),
            (reading(60_000, None, &fresh), "stale"),
            (
                reading(90_000, None, &inputs(None, Some(1), None)),
                "no executor counts",
            ),
        ] {
            let l = load(last);
            assert_eq!(l.percent, None);
            assert!(l.how.contains(why), "{}", l.how);
        }
    }
}
