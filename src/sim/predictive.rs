//! The forecast a predictive pool consults in a replay. Demand is the number of builds
//! that would be running with no wait, sampled at each step's start: at any instant it is
//! known for every step already begun (a build's end is known once it has ended, and a
//! build still running is running). The model is retrained weekly on the last four weeks
//! of steps whose target lies in the past, so a replay never learns from its future.

use crate::forecast::{Model, ModelParams, Series};

/// Step of the demand series.
pub const STEP_MS: i64 = 5 * 60_000;
const RETRAIN_MS: i64 = 7 * 86_400_000;
const WINDOW_STEPS: usize = 28 * 288;

/// A pool's forecaster during a replay.
pub struct Forecaster {
    series: Series,
    horizon_steps: usize,
    params: ModelParams,
    model: Option<Model>,
    next_retrain: i64,
    /// Refits done, for reports.
    pub retrains: usize,
}

impl Forecaster {
    /// Demand from builds given as (queued at, duration) in ms, sorted by queue time;
    /// the horizon is the pod start-up, rounded up to whole steps.
    pub fn new(builds: &[(i64, i64)], pod_startup_ms: i64, params: ModelParams) -> Option<Self> {
        let spans: Vec<(i64, i64)> = builds.iter().map(|&(q, d)| (q, q + d)).collect();
        let series = crate::forecast::running_demand(&spans, STEP_MS)?;
        Some(Self {
            next_retrain: series.start_ms + 14 * 86_400_000,
            series,
            horizon_steps: ((pod_startup_ms + STEP_MS - 1) / STEP_MS).max(1) as usize,
            params,
            model: None,
            retrains: 0,
        })
    }

    /// Builds expected to be running one start-up from `now`; `None` until a model exists.
    pub fn demand_ahead(&mut self, now: i64) -> Option<f64> {
        let begun = ((now - self.series.start_ms).div_euclid(STEP_MS) as usize)
            .min(self.series.values.len() - 1);
        if now >= self.next_retrain {
            // Train on targets that have already happened: indices below `begun + 1`.
            let window_start = (begun + 1).saturating_sub(WINDOW_STEPS);
            let windowed = Series {
                start_ms: self.series.start_ms + window_start as i64 * STEP_MS,
                step_ms: STEP_MS,
                values: self.series.values[window_start..=begun].to_vec(),
                filled: 0,
            };
            if let Ok(m) = Model::train(
                &windowed,
                self.horizon_steps,
                self.params,
                windowed.values.len(),
            ) {
                self.model = Some(m);
                self.retrains += 1;
            }
            self.next_retrain = now + RETRAIN_MS;
        }
        // Features read the series up to `begun` only.
        self.model.as_ref()?.predict(&self.series, begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forecast_at_now_is_the_same_without_the_future() {
        // Three weeks of builds: a burst every working hour.
        let day = 86_400_000i64;
        let start = 1_699_833_600_000; // a Monday, 00:00 UTC
        let mut builds = Vec::new();
        for d in 0..21 {
            for h in 8..18 {
                let at = start + d * day + h * 3_600_000 + (d * 7 + h) % 5 * 60_000;
                builds.push((at, 20 * 60_000 + (h % 3) * 600_000));
            }
        }
        let now = start + 16 * day + 12 * 3_600_000 + 5 * 60_000;
        // What is known at `now`: builds queued by then, and the ones still running cut
        // to end a step after `now` (their real end is not known yet).
        let known: Vec<(i64, i64)> = builds
            .iter()
            .filter(|(q, _)| *q <= now)
            .map(|&(q, d)| {
                if q + d > now {
                    (q, now + STEP_MS - q)
                } else {
                    (q, d)
                }
            })
            .collect();
        let params = ModelParams {
            trees: 5,
            max_depth: 6,
            seed: 3,
        };
        let mut full = Forecaster::new(&builds, 60_000, params).unwrap();
        let mut past = Forecaster::new(&known, 60_000, params).unwrap();
        let a = full.demand_ahead(now).expect("a model after two weeks");
        let b = past.demand_ahead(now).unwrap();
        assert_eq!(a, b, "the forecast used something after now");
        assert_eq!((full.retrains, past.retrains), (1, 1));
    }
}
