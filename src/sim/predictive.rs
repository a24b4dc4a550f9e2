//! The forecast a predictive pool consults in a replay. Demand is the number of builds
//! that would be running with no wait, sampled at each step's start: at any instant it is
//! known for every step already begun (a build's end is known once it has ended, and a
//! build still running is running). The model is retrained as the live pool retrains it
//! (`forecast::retrain` on the cadence of `forecast::Retraining`) on steps whose target
//! lies in the past, so a replay never learns from its future, and its forecast counts
//! only while the model beat seasonal naive in its backtest (`Model::trusted`).

use crate::forecast::{Model, ModelParams, Retraining, STEP_MS, Series};

/// A pool's forecaster during a replay.
pub struct Forecaster {
    series: Series,
    horizon_steps: usize,
    params: ModelParams,
    model: Option<Model>,
    retraining: Retraining,
    /// Refits done, for reports.
    pub retrains: usize,
}

impl Forecaster {
    /// Demand from builds given as (queued at, duration) in ms, sorted by queue time;
    /// the horizon is the pod start-up, rounded up to whole steps.
    pub fn new(
        builds: &[(i64, i64)],
        pod_startup_ms: i64,
        params: ModelParams,
        retrain_every_ms: i64,
    ) -> Option<Self> {
        let spans: Vec<(i64, i64)> = builds.iter().map(|&(q, d)| (q, q + d)).collect();
        let series = crate::forecast::running_demand(&spans, STEP_MS)?;
        Some(Self {
            series,
            horizon_steps: crate::forecast::horizon_steps(pod_startup_ms),
            params,
            model: None,
            retraining: Retraining::new(retrain_every_ms),
            retrains: 0,
        })
    }

    /// Builds expected to be running one start-up from `now`; `None` until a trusted
    /// model exists.
    pub fn demand_ahead(&mut self, now: i64) -> Option<f64> {
        let begun = ((now - self.series.start_ms).div_euclid(STEP_MS) as usize)
            .min(self.series.values.len() - 1);
        if self.retraining.due(now) {
            self.retraining.started(now);
            // Train on targets that have already happened: indices up to `begun`.
            match crate::forecast::retrain(&self.series, begun, self.horizon_steps, self.params) {
                Ok(m) => {
                    self.model = Some(m);
                    self.retrains += 1;
                }
                Err(_) => self.retraining.failed(now),
            }
        }
        // Features read the series up to `begun` only.
        let model = self.model.as_ref().filter(|m| m.trusted())?;
        model.predict(&self.series, begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_at_now_is_the_same_without_the_future() {
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
        let mut full = Forecaster::new(&builds, 60_000, params, 7 * day).unwrap();
        let mut past = Forecaster::new(&known, 60_000, params, 7 * day).unwrap();
        // Before two weeks of history there is nothing to train on: retried hourly.
        assert_eq!(full.demand_ahead(start + 3 * day), None);
        assert_eq!(full.retrains, 0);
        assert_eq!(full.demand_ahead(now), past.demand_ahead(now));
        assert_eq!((full.retrains, past.retrains), (1, 1));
        let (a, b) = (full.model.unwrap(), past.model.unwrap());
        assert_eq!(a.trained_to_ms, b.trained_to_ms);
        assert_eq!(
            a.backtest, b.backtest,
            "the backtest used something after now"
        );
        assert!(a.backtest.is_some());
    }
}
