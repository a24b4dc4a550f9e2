//! Analytics over the recorded builds and scaling decisions: costs (with the pure model of
//! `crate::cost`), and the time ranges they are asked for.

pub mod costs;
pub mod frontier;
pub mod optimize;
pub mod performance;
pub mod render;
pub mod replay;
pub mod schedule;

use crate::domain::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Range {
    #[schema(value_type = i64)]
    pub from: Timestamp,
    #[schema(value_type = i64)]
    pub to: Timestamp,
}

impl Range {
    /// `24h`, `7d`, `30d` (any duration: the span ending now) or `FROM..TO` (RFC 3339 or
    /// epoch milliseconds each).
    pub fn parse(raw: &str, now: Timestamp) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some((a, b)) = raw.split_once("..") {
            let from = Timestamp::parse_str(a.trim()).map_err(|e| format!("FROM {e}"))?;
            let to = Timestamp::parse_str(b.trim()).map_err(|e| format!("TO {e}"))?;
            if to <= from {
                return Err("TO must be after FROM".into());
            }
            return Ok(Self { from, to });
        }
        let span: Duration = humantime::parse_duration(raw)
            .map_err(|_| "must be a span such as 24h, 7d or 30d, or FROM..TO".to_string())?;
        let ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 {
            return Err("must be longer than 0".into());
        }
        let from = Timestamp::from_millis(now.millis().saturating_sub(ms))
            .map_err(|_| "reaches before 1970".to_string())?;
        Ok(Self { from, to: now })
    }

    pub fn millis(&self) -> i64 {
        self.to.millis() - self.from.millis()
    }

    pub fn hours(&self) -> f64 {
        self.millis() as f64 / 3_600_000.0
    }

    /// The range of the same length just before this one.
    pub fn previous(&self) -> Option<Self> {
        let from = Timestamp::from_millis(self.from.millis() - self.millis()).ok()?;
        Some(Self {
            from,
            to: self.from,
        })
    }
}

/// The nearest-rank `p` percentile (0 to 1) of a sorted list; `None` when it is empty.
pub fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Change from `before` to `now` in percent; `None` when there was nothing before.
pub fn percent_change(before: f64, now: f64) -> Option<f64> {
    (before.abs() > f64::EPSILON).then(|| ((now - before) / before * 1000.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_spans_or_bounds() {
        let now = Timestamp::from_millis(20 * 86_400_000).unwrap();
        let r = Range::parse("7d", now).unwrap();
        assert_eq!(r.from.millis(), 13 * 86_400_000);
        assert_eq!(r.hours(), 168.0);
        assert_eq!(r.previous().unwrap().to, r.from);
        // A range whose previous one would start before 1970 has none.
        assert_eq!(Range::parse("15d", now).unwrap().previous(), None);
        let b = Range::parse("1970-01-02T00:00:00Z..86400000", now);
        assert!(b.is_err(), "TO equal to FROM");
        let b = Range::parse("86400000..1970-01-03T00:00:00Z", now).unwrap();
        assert_eq!(b.hours(), 24.0);
        for bad in ["", "soon", "0s", "20000d", "x..y"] {
            assert!(Range::parse(bad, now).is_err(), "{bad}");
        }
        assert_eq!(percent_change(10.0, 12.5), Some(25.0));
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5], 0.5), Some(3));
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5], 0.95), Some(5));
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(percent_change(0.0, 5.0), None);
    }
}
