//! Percentiles, as every report, replay and decision takes them.

/// The nearest-rank `p` percentile (0 to 1) of a sorted list; `None` when it is empty.
pub fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
