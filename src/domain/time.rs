//! Instants as Jenkins plugins send them: epoch milliseconds, RFC 3339, zone-less ISO
//! (Java `LocalDateTime`, taken as UTC), Jackson's array form of `LocalDateTime`, and the
//! Notification plugin's old `yyyy-MM-dd'T'HH:mm:ss.Sz` form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch, UTC. Always after 1970 and before 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// Why a value is not an instant.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("is not a timestamp (expected epoch milliseconds or an ISO 8601 date-time)")]
    Unrecognised,
    #[error("is out of range (before 1970 or after 9999)")]
    OutOfRange,
}

const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

impl Timestamp {
    pub fn from_millis(ms: i64) -> Result<Self, TimestampError> {
        if (0..=MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimestampError::OutOfRange)
        }
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Parses a date-time string: RFC 3339, or ISO without an offset (taken as UTC), or a
    /// plain integer of epoch milliseconds.
    pub fn parse_str(raw: &str) -> Result<Self, TimestampError> {
        let raw = raw.trim();
        if let Ok(ms) = raw.parse::<i64>() {
            return Self::from_millis(ms);
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
            return Self::from_millis(dt.timestamp_millis());
        }
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
        ] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(raw, fmt) {
                return Self::from_millis(naive.and_utc().timestamp_millis());
            }
        }
        if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            let naive = date
                .and_hms_opt(0, 0, 0)
                .ok_or(TimestampError::Unrecognised)?;
            return Self::from_millis(naive.and_utc().timestamp_millis());
        }
        Err(TimestampError::Unrecognised)
    }

    /// The Notification plugin before its epoch-ms change formatted timestamps with
    /// `SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.Sz")`, where `S` is the millisecond count
    /// printed without padding: `12:00:00.5+00:00` means 5 ms, not 500 ms. Strings of
    /// that exact shape are read that way; everything else as [`Timestamp::parse_str`].
    pub fn parse_notification_str(raw: &str) -> Result<Self, TimestampError> {
        let raw = raw.trim();
        if let Some(body) = raw.strip_suffix("+00:00")
            && let Some((seconds, fraction)) = body.rsplit_once('.')
            && (1..=3).contains(&fraction.len())
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && let Ok(naive) = NaiveDateTime::parse_from_str(seconds, "%Y-%m-%dT%H:%M:%S")
        {
            let ms: i64 = fraction.parse().map_err(|_| TimestampError::Unrecognised)?;
            return Self::from_millis(naive.and_utc().timestamp_millis() + ms);
        }
        Self::parse_str(raw)
    }

    /// Reads a JSON value: a number (epoch ms), a string, or Jackson's array form of a
    /// `LocalDateTime` (`[year, month, day, hour, minute, second, nanos]`, UTC).
    pub fn from_json(value: &Value) -> Result<Self, TimestampError> {
        match value {
            Value::Number(n) => match n.as_i64() {
                Some(ms) => Self::from_millis(ms),
                None => match n.as_f64() {
                    Some(f) if f.is_finite() => Self::from_millis(f as i64),
                    _ => Err(TimestampError::OutOfRange),
                },
            },
            Value::String(s) => Self::parse_str(s),
            Value::Array(parts) if (3..=7).contains(&parts.len()) => {
                let mut nums = [0i64; 7];
                for (i, p) in parts.iter().enumerate() {
                    nums[i] = p.as_i64().ok_or(TimestampError::Unrecognised)?;
                }
                let part =
                    |i: usize| u32::try_from(nums[i]).map_err(|_| TimestampError::OutOfRange);
                let year = i32::try_from(nums[0]).map_err(|_| TimestampError::OutOfRange)?;
                let date = NaiveDate::from_ymd_opt(year, part(1)?, part(2)?)
                    .ok_or(TimestampError::OutOfRange)?;
                let naive = date
                    .and_hms_nano_opt(part(3)?, part(4)?, part(5)?, part(6)?)
                    .ok_or(TimestampError::OutOfRange)?;
                Self::from_millis(naive.and_utc().timestamp_millis())
            }
            _ => Err(TimestampError::Unrecognised),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_form_seen_from_jenkins_plugins() {
        let cases = [
            (json!(1_700_000_000_123i64), 1_700_000_000_123),
            (json!("1700000000123"), 1_700_000_000_123),
            (json!("2023-11-14T22:13:20.123Z"), 1_700_000_000_123),
            (json!("2023-11-14T23:13:20.123+01:00"), 1_700_000_000_123),
            (json!("2023-11-14T22:13:20.123"), 1_700_000_000_123),
            (
                json!([2023, 11, 14, 22, 13, 20, 123_000_000]),
                1_700_000_000_123,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                Timestamp::from_json(&value).unwrap().millis(),
                want,
                "{value}"
            );
        }
    }

    #[test]
    fn old_notification_fraction_is_a_millisecond_count() {
        let base = 1_700_000_000_000;
        let t = |s| Timestamp::parse_notification_str(s).unwrap().millis() - base;
        assert_eq!(t("2023-11-14T22:13:20.5+00:00"), 5);
        assert_eq!(t("2023-11-14T22:13:20.50+00:00"), 50);
        assert_eq!(t("2023-11-14T22:13:20.500+00:00"), 500);
        // Plain RFC 3339 keeps its usual meaning everywhere else.
        assert_eq!(
            Timestamp::parse_str("2023-11-14T22:13:20.5+00:00")
                .unwrap()
                .millis()
                - base,
            500
        );
    }

    #[test]
    fn refuses_garbage_and_out_of_range() {
        assert_eq!(
            Timestamp::from_json(&json!("yesterday")),
            Err(TimestampError::Unrecognised)
        );
        assert_eq!(
            Timestamp::from_json(&json!(-5)),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            Timestamp::from_json(&json!(true)),
            Err(TimestampError::Unrecognised)
        );
        assert_eq!(
            Timestamp::from_json(&json!([2023, 13, 1])),
            Err(TimestampError::OutOfRange)
        );
    }
}
