//! Time ranges as reports, costs, exports and replays are asked for them.

use super::Timestamp;
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
