//! A live pool's demand forecast: the series from its recorded builds, retrained in the
//! background on the same cadence and with the same backtest guard as the replay
//! (`forecast::retrain`, `forecast::Retraining`). Shown, never acted on: warm capacity
//! is what acts ahead of demand.

use super::ForecastView;
use crate::domain::{ControllerName, Label, Timestamp};
use crate::forecast::{self, HISTORY_MS, Model, ModelParams, Retraining, STEP_MS, Series};
use crate::store::Store;
use std::sync::Arc;

/// The model and its background retraining.
pub(super) struct LiveForecast {
    model: Option<Arc<Model>>,
    training: Option<tokio::task::JoinHandle<Result<Model, forecast::ForecastError>>>,
    retraining: Retraining,
    error: Option<String>,
    /// The demand series and the step it was read at.
    series: Option<(i64, Series)>,
    params: ModelParams,
    horizon_steps: usize,
}

impl LiveForecast {
    pub(super) fn new(retrain_every_ms: i64, trees: usize, pod_startup_ms: i64) -> Self {
        Self {
            model: None,
            training: None,
            retraining: Retraining::new(retrain_every_ms),
            error: None,
            series: None,
            params: ModelParams {
                trees: trees.max(1),
                ..ModelParams::default()
            },
            horizon_steps: forecast::horizon_steps(pod_startup_ms),
        }
    }

    /// The demand forecast one pod start-up ahead, from the label's builds in the store.
    pub(super) async fn forecast(
        &mut self,
        store: &Store,
        controller: &ControllerName,
        label: &Label,
        now: Timestamp,
    ) -> ForecastView {
        if self.training.as_ref().is_some_and(|h| h.is_finished()) {
            match self.training.take().expect("checked").await {
                Ok(Ok(model)) => {
                    self.model = Some(Arc::new(model));
                    self.error = None;
                }
                Ok(Err(e)) => {
                    self.retraining.failed(now.millis());
                    self.error = Some(e.to_string());
                }
                Err(e) => self.error = Some(format!("training stopped: {e}")),
            }
        }
        // The series is sampled at step starts: read the store once per step, not on
        // every reconcile, and afresh for every training.
        let step = now.millis().div_euclid(STEP_MS);
        let train_due = self.retraining.due(now.millis()) && self.training.is_none();
        let cached = self
            .series
            .as_ref()
            .filter(|(s, _)| *s == step && !train_due);
        let series = match cached {
            Some((_, series)) => series.clone(),
            None => match demand_series(store, controller, label, now).await {
                Ok(series) => {
                    self.series = Some((step, series.clone()));
                    series
                }
                Err(error) => {
                    return ForecastView {
                        error: Some(error.to_string()),
                        ..Default::default()
                    };
                }
            },
        };
        let t = series.values.len() - 1;
        if train_due {
            self.retraining.started(now.millis());
            let training = series.clone();
            let (h, params) = (self.horizon_steps, self.params);
            self.training = Some(tokio::task::spawn_blocking(move || {
                forecast::retrain(&training, t, h, params)
            }));
        }
        let mut view = ForecastView {
            actual_now: Some(series.values[t]),
            error: self.error.clone(),
            ..Default::default()
        };
        if let Some(model) = &self.model {
            view.value = model.predict(&series, t);
            view.target_at = Some(series.start_ms + (t + model.horizon_steps) as i64 * STEP_MS);
            view.model = Some(serde_json::json!({
                "trained_from_ms": model.trained_from_ms, "trained_to_ms": model.trained_to_ms,
                "rows": model.rows, "backtest": model.backtest,
                "beats_seasonal_naive": model.trusted(),
            }));
        }
        view
    }
}

/// Why a pool's demand series could not be read.
#[derive(Debug, thiserror::Error)]
enum SeriesError {
    #[error("reading build history: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("no build history for this label yet")]
    NoHistory,
}

/// The pool's demand series up to `now` (last index = now's step), from the builds of
/// the last four weeks in the store.
async fn demand_series(
    store: &Store,
    controller: &ControllerName,
    label: &Label,
    now: Timestamp,
) -> Result<Series, SeriesError> {
    let since = Timestamp::from_millis((now.millis() - HISTORY_MS).max(0))
        .expect("the epoch or later is an instant");
    let spans = store.build_spans(controller, since).await?;
    let mine: Vec<(i64, i64)> = spans
        .into_iter()
        .filter(|(l, _, _)| l.as_deref().is_some_and(|l| label.serves(l)))
        .map(|(_, start, end)| (start, end.unwrap_or(now.millis() + STEP_MS)))
        .collect();
    let mut series = forecast::running_demand(&mine, STEP_MS).ok_or(SeriesError::NoHistory)?;
    // Steps since the last build are steps of no demand.
    let t = (now.millis() - series.start_ms).div_euclid(STEP_MS).max(0) as usize;
    if series.values.len() <= t {
        series.values.resize(t + 1, 0.0);
    }
    series.values.truncate(t + 1);
    Ok(series)
}
