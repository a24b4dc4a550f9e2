//! Pod start-up in a replay: a fixed time, or a log-normal distribution given by its
//! median and 95th percentile (`p50=45s,p95=180s`), drawn for each agent from a seeded
//! generator so that a replay is repeatable.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

/// z of the 95th percentile of the standard normal.
const Z95: f64 = 1.644_853_626_951_472_2;

/// How long an agent takes from its pod's creation to taking builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startup {
    pub p50_ms: i64,
    pub p95_ms: i64,
}

/// Why a start-up distribution was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{text:?}: {source}")]
    Duration {
        text: String,
        source: humantime::DurationError,
    },
    #[error("{0:?} is not p50=... or p95=...")]
    NotAPercentile(String),
    #[error("unknown percentile {0:?} (p50, p95)")]
    UnknownPercentile(String),
    #[error("give both p50= and p95=")]
    Incomplete,
    #[error("p95 must be at least p50, and p50 above 0")]
    Order,
}

impl Startup {
    /// Always the same start-up.
    pub fn fixed(d: Duration) -> Self {
        let ms = d.as_millis() as i64;
        Self {
            p50_ms: ms,
            p95_ms: ms,
        }
    }

    /// `60` or `60s` (fixed; plain numbers are seconds), or `p50=45s,p95=180s`.
    pub fn parse(raw: &str) -> Result<Self, StartupError> {
        let raw = raw.trim();
        let duration = |v: &str| -> Result<Duration, StartupError> {
            let v = v.trim();
            match v.parse::<u64>() {
                Ok(secs) => Ok(Duration::from_secs(secs)),
                Err(_) => humantime::parse_duration(v).map_err(|source| StartupError::Duration {
                    text: v.to_string(),
                    source,
                }),
            }
        };
        if !raw.contains('=') {
            return duration(raw).map(Self::fixed);
        }
        let (mut p50, mut p95) = (None, None);
        for part in raw.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| StartupError::NotAPercentile(part.to_string()))?;
            match k.trim() {
                "p50" => p50 = Some(duration(v)?),
                "p95" => p95 = Some(duration(v)?),
                other => return Err(StartupError::UnknownPercentile(other.to_string())),
            }
        }
        let (Some(p50), Some(p95)) = (p50, p95) else {
            return Err(StartupError::Incomplete);
        };
        if p95 < p50 || p50.is_zero() {
            return Err(StartupError::Order);
        }
        Ok(Self {
            p50_ms: p50.as_millis() as i64,
            p95_ms: p95.as_millis() as i64,
        })
    }

    /// Draws start-ups, the same sequence for the same seed.
    pub fn sampler(self, seed: u64) -> Sampler {
        let dist = (self.p95_ms > self.p50_ms).then(|| {
            let sigma = ((self.p95_ms as f64) / (self.p50_ms as f64)).ln() / Z95;
            LogNormal::new((self.p50_ms as f64).ln(), sigma).expect("finite, positive sigma")
        });
        Sampler {
            fixed: self.p50_ms,
            dist,
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl std::fmt::Display for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.p95_ms == self.p50_ms {
            write!(f, "{} s", self.p50_ms as f64 / 1000.0)
        } else {
            write!(
                f,
                "p50 {} s, p95 {} s",
                self.p50_ms as f64 / 1000.0,
                self.p95_ms as f64 / 1000.0
            )
        }
    }
}

/// A live pool's measured start-ups: the last hundred pods' (creation to ready), one
/// sample per pod.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    samples: std::collections::VecDeque<(String, i64)>,
}

/// Pods remembered.
const MEASURED: usize = 100;
/// Fewer samples than this: not measured yet.
const MIN_MEASURED: usize = 3;

impl Measured {
    /// Records a pod's start-up, once per pod.
    pub fn record(&mut self, pod: &str, ms: i64) {
        if self.samples.iter().any(|(p, _)| p == pod) {
            return;
        }
        if self.samples.len() == MEASURED {
            self.samples.pop_front();
        }
        self.samples.push_back((pod.to_string(), ms));
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The median and 95th percentile (nearest rank), once there are enough samples.
    pub fn startup(&self) -> Option<Startup> {
        if self.samples.len() < MIN_MEASURED {
            return None;
        }
        let mut v: Vec<i64> = self.samples.iter().map(|(_, ms)| *ms).collect();
        v.sort_unstable();
        Some(Startup {
            p50_ms: crate::domain::nearest_rank(&v, 0.5)?,
            p95_ms: crate::domain::nearest_rank(&v, 0.95)?,
        })
    }
}

/// A replay's source of start-ups.
pub struct Sampler {
    fixed: i64,
    dist: Option<LogNormal<f64>>,
    rng: StdRng,
}

impl Sampler {
    pub fn next_ms(&mut self) -> i64 {
        match &self.dist {
            None => self.fixed,
            Some(d) => (d.sample(&mut self.rng).round() as i64).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_start_ups_count_each_pod_once() {
        let mut m = Measured::default();
        m.record("a", 40_000);
        m.record("b", 50_000);
        assert_eq!(m.startup(), None, "too few");
        m.record("a", 99_000);
        m.record("c", 200_000);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.startup(),
            Some(Startup {
                p50_ms: 50_000,
                p95_ms: 200_000
            })
        );
    }

    #[test]
    fn fixed_and_distributed_start_ups_parse() {
        assert_eq!(
            Startup::parse("60").unwrap(),
            Startup::fixed(Duration::from_secs(60))
        );
        assert_eq!(Startup::parse("90s").unwrap().p95_ms, 90_000);
        let d = Startup::parse("p50=45s,p95=180s").unwrap();
        assert_eq!((d.p50_ms, d.p95_ms), (45_000, 180_000));
        for bad in ["p50=45s", "p50=3m,p95=1m", "p99=1m,p50=1s", "soon"] {
            assert!(Startup::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_have_the_percentiles_asked_for() {
        let mut s = Startup::parse("p50=45s,p95=180s").unwrap().sampler(7);
        let mut v: Vec<i64> = (0..20_000).map(|_| s.next_ms()).collect();
        v.sort_unstable();
        let p50 = v[10_000] as f64;
        let p95 = v[19_000] as f64;
        assert!((p50 / 45_000.0 - 1.0).abs() < 0.05, "{p50}");
        assert!((p95 / 180_000.0 - 1.0).abs() < 0.08, "{p95}");
        let mut f = Startup::fixed(Duration::from_secs(60)).sampler(7);
        assert_eq!((f.next_ms(), f.next_ms()), (60_000, 60_000));
    }
}
