//! Scheduled minimums (after the GitLab runner autoscaler's `periods`): a pool keeps at
//! least `min` agents while one of its cron expressions matches the current minute in its
//! time zone, for teams that know their hours. Pure: the clock comes in.

use crate::domain::Timestamp;
use chrono::TimeZone;
use serde::{Deserialize, Serialize};

/// One schedule as written in a pool's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Minutes the schedule is active, as a cron expression (`* 8-18 * * mon-fri`).
    pub cron: String,
    /// The IANA time zone the expression is read in (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Agents kept at least while the schedule is active.
    pub min: u32,
}

fn utc() -> String {
    "UTC".into()
}

/// A schedule ready to match instants.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
    pub min: u32,
    pub pattern: String,
}

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron {cron:?}: {source}")]
    Cron {
        cron: String,
        source: croner::errors::CronError,
    },
    #[error("timezone {0:?} is not an IANA time zone")]
    TimeZone(String),
}

impl Schedule {
    /// Parses a schedule; the error names what is wrong.
    pub fn parse(s: &ScheduleSettings) -> Result<Self, ScheduleError> {
        let cron = s
            .cron
            .parse::<croner::Cron>()
            .map_err(|source| ScheduleError::Cron {
                cron: s.cron.clone(),
                source,
            })?;
        let tz = s
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| ScheduleError::TimeZone(s.timezone.clone()))?;
        Ok(Self {
            cron,
            tz,
            min: s.min,
            pattern: format!("{} ({})", s.cron, s.timezone),
        })
    }

    /// Whether the schedule is active at `now` (its minute matches).
    pub fn active(&self, now: Timestamp) -> bool {
        let local = self.tz.from_utc_datetime(&now.to_datetime().naive_utc());
        // Seconds are not part of a five-field expression: any second of a matching minute.
        let minute = local.with_second_truncated();
        self.cron.is_time_matching(&minute).unwrap_or(false)
    }
}

trait TruncateSeconds {
    fn with_second_truncated(&self) -> Self;
}

impl<Tz: TimeZone> TruncateSeconds for chrono::DateTime<Tz> {
    fn with_second_truncated(&self) -> Self {
        use chrono::Timelike;
        self.with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or_else(|| self.clone())
    }
}

/// Every schedule that parses (the settings check reports the others).
pub fn parse_valid(settings: &[ScheduleSettings]) -> Vec<Schedule> {
    settings
        .iter()
        .filter_map(|s| Schedule::parse(s).ok())
        .collect()
}

/// The sizing rules at `now`: `policy` with its minimum raised by the active schedules;
/// and the schedule that raised it.
pub fn policy_at<'a>(
    policy: &crate::scaling::ScalePolicy,
    schedules: &'a [Schedule],
    now: Timestamp,
) -> (crate::scaling::ScalePolicy, Option<&'a Schedule>) {
    let (min, by) = min_at(policy.min, schedules, now);
    (
        crate::scaling::ScalePolicy {
            min,
            ..policy.clone()
        },
        by,
    )
}

/// The pool's minimum at `now`: `base`, raised by every active schedule; and the
/// schedule that raised it.
pub fn min_at(base: u32, schedules: &[Schedule], now: Timestamp) -> (u32, Option<&Schedule>) {
    schedules
        .iter()
        .filter(|s| s.min > base && s.active(now))
        .max_by_key(|s| s.min)
        .map_or((base, None), |s| (s.min, Some(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_str(rfc3339).unwrap()
    }

    fn sched(cron: &str, tz: &str, min: u32) -> Schedule {
        Schedule::parse(&ScheduleSettings {
            cron: cron.into(),
            timezone: tz.into(),
            min,
        })
        .unwrap()
    }

    #[test]
    fn working_hours_in_a_time_zone_raise_the_minimum() {
        let s = [
            sched("* 8-17 * * mon-fri", "Europe/Berlin", 4),
            sched("* 10-11 * * mon-fri", "Europe/Berlin", 6),
        ];
        // Monday 2026-01-05 07:30 UTC is 08:30 in Berlin.
        assert_eq!(min_at(1, &s, at("2026-01-05T07:30:10Z")).0, 4);
        // 09:15 UTC is 10:15 in Berlin: both active, the larger wins.
        let (min, by) = min_at(1, &s, at("2026-01-05T09:15:00Z"));
        assert_eq!((min, by.map(|s| s.min)), (6, Some(6)));
        // 06:59 UTC is 07:59 in Berlin, and Saturday is off.
        let (min, by) = min_at(1, &s, at("2026-01-05T06:59:00Z"));
        assert_eq!((min, by.is_none()), (1, true));
        assert_eq!(min_at(1, &s, at("2026-01-10T09:00:00Z")).0, 1);
        // A schedule below the pool's own minimum changes nothing.
        assert_eq!(min_at(5, &s, at("2026-01-05T07:30:00Z")).0, 5);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let bad = |cron: &str, tz: &str| {
            Schedule::parse(&ScheduleSettings {
                cron: cron.into(),
                timezone: tz.into(),
                min: 1,
            })
            .unwrap_err()
        };
        assert!(bad("every morning", "UTC").to_string().contains("cron"));
        assert!(
            bad("* 8 * * *", "Mars/Olympus")
                .to_string()
                .contains("timezone")
        );
    }
}
