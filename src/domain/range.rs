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

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("FROM {0}")]
    From(super::TimestampError),
    #[error("TO {0}")]
    To(super::TimestampError),
    #[error("TO must be after FROM")]
    Backwards,
    #[error("must be a span such as 24h, 7d or 30d, or FROM..TO")]
    NotASpan,
    #[error("must be longer than 0")]
    Empty,
    #[error("reaches before 1970")]
    BeforeEpoch,
}

impl Range {
    /// `24h`, `7d`, `30d` (any duration: the span ending now) or `FROM..TO` (RFC 3339 or
    /// epoch milliseconds each).
    pub fn parse(raw: &str, now: Timestamp) -> Result<Self, RangeError> {
        let raw = raw.trim();
        if let Some((a, b)) = raw.split_once("..") {
            let from = Timestamp::parse_str(a.trim()).map_err(RangeError::From)?;
            let to = Timestamp::parse_str(b.trim()).map_err(RangeError::To)?;
            if to <= from {
                return Err(RangeError::Backwards);
            }
            return Ok(Self { from, to });
        }
        let span: Duration = humantime::parse_duration(raw).map_err(|_| RangeError::NotASpan)?;
        let ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 {
            return Err(RangeError::Empty);
        }
        let from = Timestamp::from_millis(now.millis().saturating_sub(ms))
            .map_err(|_| RangeError::BeforeEpoch)?;
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
