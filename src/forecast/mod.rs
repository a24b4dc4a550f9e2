//! Demand forecasting with a random forest (smartcore). Features at an origin `t` use only
//! values at or before `t`: the hour and weekday of the target time, the last three
//! values, rolling means, and the same step one day and one week before the target. The
//! model learns the change from `y[t]` to `y[t + horizon]`. Backtests roll the origin
//! forward and compare against the last value and the seasonal naive (same step a week
//! earlier).

use chrono::{Datelike, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use std::path::Path;

/// A failed forecast operation.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{0}")]
    Input(String),
    #[error("the model could not be fitted: {0}")]
    Fit(String),
}

/// Values at regular steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Epoch ms of the first step.
    pub start_ms: i64,
    pub step_ms: i64,
    pub values: Vec<f64>,
    /// Steps with no sample, filled with the previous value.
    pub filled: usize,
}

impl Series {
    /// Resamples `(epoch ms, value)` samples into steps: each step is the mean of its
    /// samples; a step without samples carries the previous step's value.
    pub fn from_samples(samples: &mut [(i64, f64)], step_ms: i64) -> Result<Self, ForecastError> {
        if samples.is_empty() {
            return Err(ForecastError::Input("the series has no samples".into()));
        }
        if step_ms <= 0 {
            return Err(ForecastError::Input("the step must be positive".into()));
        }
        samples.sort_by_key(|s| s.0);
        let start_ms = samples[0].0 - samples[0].0.rem_euclid(step_ms);
        let steps = ((samples[samples.len() - 1].0 - start_ms) / step_ms + 1) as usize;
        let mut sums = vec![(0.0, 0usize); steps];
        for (t, v) in samples.iter() {
            let i = ((t - start_ms) / step_ms) as usize;
            sums[i].0 += v;
            sums[i].1 += 1;
        }
        let mut values = Vec::with_capacity(steps);
        let mut filled = 0;
        for (sum, n) in sums {
            if n > 0 {
                values.push(sum / n as f64);
            } else {
                filled += 1;
                values.push(*values.last().unwrap_or(&0.0));
            }
        }
        Ok(Self {
            start_ms,
            step_ms,
            values,
            filled,
        })
    }

    /// Reads a CSV with a `timestamp` column (RFC 3339 or epoch seconds) and a numeric
    /// column: `column` by name, or the second column.
    pub fn read_csv(
        path: &Path,
        column: Option<&str>,
        step_ms: i64,
    ) -> Result<Self, ForecastError> {
        let shown = path.display();
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| ForecastError::Input(format!("{shown}: {e}")))?;
        let headers = reader
            .headers()
            .map_err(|e| ForecastError::Input(format!("{shown}: {e}")))?
            .clone();
        let t_idx = headers.iter().position(|h| h == "timestamp").unwrap_or(0);
        let v_idx = match column {
            Some(c) => headers.iter().position(|h| h == c).ok_or_else(|| {
                ForecastError::Input(format!(
                    "{shown}: no column {c:?} (columns: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ))
            })?,
            None => 1,
        };
        let mut samples = Vec::new();
        for (row, record) in reader.records().enumerate() {
            let line = row + 2;
            let record =
                record.map_err(|e| ForecastError::Input(format!("{shown}: line {line}: {e}")))?;
            let raw_t = record.get(t_idx).unwrap_or_default();
            let t = match raw_t.parse::<f64>() {
                Ok(secs) => (secs * 1000.0) as i64,
                Err(_) => crate::domain::Timestamp::parse_str(raw_t)
                    .map_err(|e| {
                        ForecastError::Input(format!(
                            "{shown}: line {line}: timestamp {raw_t:?} {e}"
                        ))
                    })?
                    .millis(),
            };
            let raw_v = record.get(v_idx).unwrap_or_default();
            let v: f64 = raw_v
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    ForecastError::Input(format!(
                        "{shown}: line {line}: value {raw_v:?} is not a number"
                    ))
                })?;
            samples.push((t, v));
        }
        Self::from_samples(&mut samples, step_ms)
    }

    pub fn steps_per_day(&self) -> usize {
        (86_400_000 / self.step_ms).max(1) as usize
    }

    fn time_of(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }
}

/// Builds running (or waiting) at each step's start, from `(start, end)` in epoch ms:
/// the demand series both the replay and the live controller forecast.
pub fn running_demand(spans: &[(i64, i64)], step_ms: i64) -> Option<Series> {
    let first = spans.iter().map(|s| s.0).min()?;
    let start = first - first.rem_euclid(step_ms);
    let end = spans.iter().map(|s| s.1).max()?;
    let steps = ((end - start) / step_ms + 1) as usize;
    let mut delta = vec![0i64; steps + 1];
    for &(from_ms, to_ms) in spans {
        // Counted at the sample instants in [from, to).
        let from = ((from_ms - start) + step_ms - 1).div_euclid(step_ms) as usize;
        let to = ((to_ms - start) + step_ms - 1).div_euclid(step_ms) as usize;
        if from < to {
            delta[from] += 1;
            delta[to.min(steps)] -= 1;
        }
    }
    let mut running = 0;
    let values = delta[..steps]
        .iter()
        .map(|d| {
            running += d;
            running as f64
        })
        .collect();
    Some(Series {
        start_ms: start,
        step_ms,
        values,
        filled: 0,
    })
}

/// Number of features.
pub const FEATURES: usize = 9;

/// Features for origin `t` and horizon `h` steps, from `values[..=t]` only; `None` while
/// there is not a week of history before the target.
pub fn features(series: &Series, t: usize, h: usize) -> Option<[f64; FEATURES]> {
    let y = &series.values;
    let day = series.steps_per_day();
    let week = day * 7;
    if t >= y.len() || h == 0 || h > day || t + h < week || t < 24 {
        return None;
    }
    let target = t + h;
    let when = Utc.timestamp_millis_opt(series.time_of(target)).single()?;
    let mean = |from: usize| y[from..=t].iter().sum::<f64>() / (t - from + 1) as f64;
    Some([
        f64::from(when.hour()) + f64::from(when.minute()) / 60.0,
        f64::from(when.weekday().num_days_from_monday()),
        y[t],
        y[t - 1],
        y[t - 2],
        mean(t - 5),
        mean(t - 23),
        y[target - day],
        y[target - week],
    ])
}

/// Forest parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ModelParams {
    pub trees: usize,
    pub max_depth: u16,
    pub seed: u64,
}

impl Default for ModelParams {
    /// 100 trees (the seed's choice), depth capped at 12: unlimited depth makes
    /// prediction slow and large.
    fn default() -> Self {
        Self {
            trees: 100,
            max_depth: 12,
            seed: 42,
        }
    }
}

type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// A trained model with what it was trained on and how it scored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Model {
    forest: Forest,
    pub horizon_steps: usize,
    pub step_ms: i64,
    pub params: ModelParams,
    /// Epoch ms of the first and last origin trained on.
    pub trained_from_ms: i64,
    pub trained_to_ms: i64,
    pub rows: usize,
    /// The backtest run before training, when there was one.
    pub backtest: Option<Backtest>,
}

fn dataset(
    series: &Series,
    origins: std::ops::Range<usize>,
    h: usize,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<usize>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut used = Vec::new();
    for t in origins {
        if t + h >= series.values.len() {
            break;
        }
        if let Some(f) = features(series, t, h) {
            x.push(f.to_vec());
            y.push(series.values[t + h] - series.values[t]);
            used.push(t);
        }
    }
    (x, y, used)
}

impl Model {
    /// Trains on every origin whose target lies at or before `until` (exclusive), so a
    /// backtest can train on the past only.
    pub fn train(
        series: &Series,
        h: usize,
        params: ModelParams,
        until: usize,
    ) -> Result<Self, ForecastError> {
        let end = until.min(series.values.len()).saturating_sub(h);
        let (x, y, used) = dataset(series, 0..end, h);
        if x.len() < 50 {
            return Err(ForecastError::Input(format!(
                "{} training rows: at least 50 are needed (a week of history plus the horizon, then some)",
                x.len()
            )));
        }
        let matrix = DenseMatrix::from_2d_vec(&x).map_err(|e| ForecastError::Fit(e.to_string()))?;
        let forest = Forest::fit(
            &matrix,
            &y,
            RandomForestRegressorParameters::default()
                .with_n_trees(params.trees)
                .with_max_depth(params.max_depth)
                .with_seed(params.seed),
        )
        .map_err(|e| ForecastError::Fit(e.to_string()))?;
        Ok(Self {
            forest,
            horizon_steps: h,
            step_ms: series.step_ms,
            params,
            trained_from_ms: series.time_of(used[0]),
            trained_to_ms: series.time_of(*used.last().expect("at least 50 rows")),
            rows: x.len(),
            backtest: None,
        })
    }

    /// Forecasts `y[t + horizon]` from origin `t`.
    pub fn predict(&self, series: &Series, t: usize) -> Option<f64> {
        let f = features(series, t, self.horizon_steps)?;
        let m = DenseMatrix::from_2d_vec(&vec![f.to_vec()]).ok()?;
        let delta = self.forest.predict(&m).ok()?[0];
        Some((series.values[t] + delta).max(0.0))
    }

    fn predict_many(&self, series: &Series, origins: &[usize]) -> Result<Vec<f64>, ForecastError> {
        let rows: Vec<Vec<f64>> = origins
            .iter()
            .map(|&t| features(series, t, self.horizon_steps).map(|f| f.to_vec()))
            .collect::<Option<_>>()
            .ok_or_else(|| ForecastError::Input("an origin lacks history".into()))?;
        let m = DenseMatrix::from_2d_vec(&rows).map_err(|e| ForecastError::Fit(e.to_string()))?;
        let deltas = self
            .forest
            .predict(&m)
            .map_err(|e| ForecastError::Fit(e.to_string()))?;
        Ok(origins
            .iter()
            .zip(deltas)
            .map(|(&t, d)| (series.values[t] + d).max(0.0))
            .collect())
    }
}

/// Errors of the model and the two baselines.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub model: f64,
    pub last_value: f64,
    pub seasonal_naive: f64,
}

/// A rolling-origin backtest's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    pub mae: Scores,
    pub rmse: Scores,
    /// Forecasts scored.
    pub points: usize,
    /// Times the model was refitted (one per fold).
    pub folds: usize,
}

/// Rolling origin: the last `folds` blocks of `fold_steps` steps are forecast, each by a
/// model trained only on what came before the block.
pub fn backtest(
    series: &Series,
    h: usize,
    params: ModelParams,
    folds: usize,
    fold_steps: usize,
) -> Result<Backtest, ForecastError> {
    let n = series.values.len();
    let week = series.steps_per_day() * 7;
    let first = n.saturating_sub(folds * fold_steps).max(week * 2);
    if first + h >= n {
        return Err(ForecastError::Input(format!(
            "{n} steps are too few to backtest (two weeks of history are needed first)"
        )));
    }
    let (mut abs, mut sq) = ([0.0f64; 3], [0.0f64; 3]);
    let mut points = 0;
    let mut done = 0;
    let mut origin = first;
    while origin + h < n {
        let model = Model::train(series, h, params, origin)?;
        let block: Vec<usize> = (origin..(origin + fold_steps).min(n - h)).collect();
        let predictions = model.predict_many(series, &block)?;
        for (&t, p) in block.iter().zip(predictions) {
            let actual = series.values[t + h];
            let guesses = [p, series.values[t], series.values[t + h - week]];
            for (k, g) in guesses.iter().enumerate() {
                abs[k] += (g - actual).abs();
                sq[k] += (g - actual).powi(2);
            }
            points += 1;
        }
        done += 1;
        origin += fold_steps;
    }
    let mae = |k: usize| abs[k] / points as f64;
    let rmse = |k: usize| (sq[k] / points as f64).sqrt();
    Ok(Backtest {
        mae: Scores {
            model: mae(0),
            last_value: mae(1),
            seasonal_naive: mae(2),
        },
        rmse: Scores {
            model: rmse(0),
            last_value: rmse(1),
            seasonal_naive: rmse(2),
        },
        points,
        folds: done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily_series(days: usize) -> Series {
        // Hourly: a daily cycle, quieter weekends, growth, a little deterministic noise.
        let values = (0..days * 24)
            .map(|i| {
                let hour = (i % 24) as f64;
                let weekday = (i / 24) % 7;
                let base = if weekday >= 5 { 3.0 } else { 10.0 };
                // Growth of a fifth per day: last week's value is stale by then.
                let trend = 0.2 * (i / 24) as f64;
                base + trend
                    + 8.0 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0)
                    + ((i * 7919) % 13) as f64 / 13.0
            })
            .collect();
        Series {
            start_ms: 1_700_006_400_000, // on the hour
            step_ms: 3_600_000,
            values,
            filled: 0,
        }
    }

    #[test]
    fn features_at_t_use_nothing_after_t() {
        let s = daily_series(21);
        for t in [200, 300, 400] {
            let full = features(&s, t, 1).unwrap();
            let mut cut = s.clone();
            cut.values.truncate(t + 1);
            // Poison everything after t: the features must not move.
            let mut poisoned = s.clone();
            for v in &mut poisoned.values[t + 1..] {
                *v = 1e9;
            }
            assert_eq!(features(&poisoned, t, 1).unwrap(), full, "t = {t}");
            assert_eq!(
                features(&cut, t, 1).map(|f| f.to_vec()),
                Some(full.to_vec())
            );
        }
        assert!(features(&s, 10, 1).is_none(), "no week of history yet");
    }

    #[test]
    fn resampling_means_steps_and_fills_gaps() {
        let mut samples = vec![(0, 1.0), (1_000, 3.0), (7_200_000, 5.0)];
        let s = Series::from_samples(&mut samples, 3_600_000).unwrap();
        assert_eq!(s.values, [2.0, 2.0, 5.0]);
        assert_eq!(s.filled, 1);
    }

    #[test]
    fn a_small_forest_beats_both_baselines_on_a_clear_cycle() {
        let s = daily_series(28);
        let params = ModelParams {
            trees: 10,
            max_depth: 8,
            seed: 1,
        };
        let b = backtest(&s, 1, params, 2, 48).unwrap();
        assert_eq!(b.folds, 2);
        assert!(b.mae.model < b.mae.seasonal_naive, "{b:?}");
        assert!(b.mae.model < b.mae.last_value, "{b:?}");
    }
}

/// Step of every pool's demand series, live and in replay.
pub const STEP_MS: i64 = 5 * 60_000;
/// History a pool's model trains on: the last four weeks.
pub const HISTORY_MS: i64 = 28 * 86_400_000;

/// The horizon, in steps, of a forecast one pod start-up ahead (rounded up).
pub fn horizon_steps(pod_startup_ms: i64) -> usize {
    (pod_startup_ms.max(1) + STEP_MS - 1)
        .div_euclid(STEP_MS)
        .max(1) as usize
}

/// One training of a pool's model, as the live pool and the replay both retrain it: on
/// the last [`HISTORY_MS`] of `series` up to index `upto` (targets in the past only),
/// after a rolling-origin backtest of the same window (four folds of a day) so the
/// model's scores against last-value and seasonal naive travel with it.
pub fn retrain(
    series: &Series,
    upto: usize,
    horizon: usize,
    params: ModelParams,
) -> Result<Model, ForecastError> {
    let window = (HISTORY_MS / series.step_ms.max(1)) as usize;
    let from = (upto + 1).saturating_sub(window);
    let windowed = Series {
        start_ms: series.start_ms + from as i64 * series.step_ms,
        step_ms: series.step_ms,
        values: series.values[from..=upto.min(series.values.len() - 1)].to_vec(),
        filled: 0,
    };
    let mut model = Model::train(&windowed, horizon, params, windowed.values.len())?;
    model.backtest = backtest(&windowed, horizon, params, 4, 288).ok();
    Ok(model)
}

impl Model {
    /// The backtest guard: the model's forecasts count only when it beat seasonal naive
    /// (and last-value) in its own backtest.
    pub fn trusted(&self) -> bool {
        self.backtest
            .as_ref()
            .is_some_and(|b| b.mae.model < b.mae.seasonal_naive && b.mae.model < b.mae.last_value)
    }
}

/// When a pool's model is retrained: at the first chance, then every `every_ms`; after a
/// failed training (usually too little history yet) again within the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retraining {
    pub every_ms: i64,
    next_ms: i64,
}

impl Retraining {
    pub fn new(every_ms: i64) -> Self {
        Self {
            every_ms: every_ms.max(1),
            next_ms: i64::MIN,
        }
    }

    pub fn due(&self, now_ms: i64) -> bool {
        now_ms >= self.next_ms
    }

    /// A training started at `now_ms`.
    pub fn started(&mut self, now_ms: i64) {
        self.next_ms = now_ms.saturating_add(self.every_ms);
    }

    /// The training started last failed at `now_ms`.
    pub fn failed(&mut self, now_ms: i64) {
        self.next_ms = self.next_ms.min(now_ms.saturating_add(3_600_000));
    }
}
