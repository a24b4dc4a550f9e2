//! Analytics over the recorded builds and scaling decisions: costs (with the pure model of
//! `crate::cost`), and the time ranges they are asked for.

pub mod costs;
pub mod frontier;
pub mod optimize;
pub mod performance;
pub mod render;
pub mod replay;
pub mod schedule;

pub use crate::domain::{Range, nearest_rank};

/// Change from `before` to `now` in percent; `None` when there was nothing before.
pub fn percent_change(before: f64, now: f64) -> Option<f64> {
    (before.abs() > f64::EPSILON).then(|| ((now - before) / before * 1000.0).round() / 10.0)
}

/// Money and hours as answers show them: to four decimals.
pub(crate) fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

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
