//! The pool's recent arrivals as the warm plan reads them. Pure.

use serde::Serialize;

/// Arrivals no further apart than this are one burst (a pipeline fanning out, a
/// workflow run starting its jobs).
pub const BURST_GAP_MS: i64 = 2_000;

/// The pool's recent arrivals as the plan needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ArrivalsNow {
    /// When the last build arrived (epoch ms), if any is known.
    pub last_ms: Option<i64>,
    /// When the last build finished (epoch ms), if any is known.
    pub last_finish_ms: Option<i64>,
    /// Builds of the burst under way (0 when the last arrival is more than a start-up ago).
    pub in_burst: u32,
}

impl ArrivalsNow {
    /// The last arrival and finish before `now`, and the burst under way.
    pub fn at(now: i64, arrivals: &[i64], finishes: &[i64]) -> Self {
        let seen = &arrivals[..arrivals.partition_point(|&a| a <= now)];
        let last_ms = seen.last().copied();
        let mut in_burst = 0u32;
        if last_ms.is_some_and(|l| now - l <= BURST_GAP_MS) {
            in_burst = 1;
            for w in seen.windows(2).rev() {
                if w[1] - w[0] > BURST_GAP_MS {
                    break;
                }
                in_burst += 1;
            }
        }
        Self {
            last_ms,
            last_finish_ms: finishes[..finishes.partition_point(|&f| f <= now)]
                .last()
                .copied(),
            in_burst,
        }
    }
}
