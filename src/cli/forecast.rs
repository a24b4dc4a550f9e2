//! `forecast`: train a demand model, backtest it against the simple forecasts, or predict.

use super::Output;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SeriesArgs {
    /// Series CSV: a `timestamp` column (RFC 3339 or epoch seconds) and numeric columns.
    #[arg(long)]
    series: PathBuf,
    /// The numeric column to forecast (default: the second column).
    #[arg(long)]
    column: Option<String>,
    /// How far ahead, e.g. 1h or 10m; rounded up to whole steps.
    #[arg(long, default_value = "1h")]
    horizon: humantime::Duration,
    /// Step of the series; samples within a step are averaged.
    #[arg(long, default_value = "5m")]
    step: humantime::Duration,
    /// Trees in the forest.
    #[arg(long, default_value_t = 100)]
    trees: usize,
    /// Depth limit of each tree.
    #[arg(long, default_value_t = 12)]
    max_depth: u16,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Rolling-origin backtest against the last value and the seasonal naive.
    Backtest {
        #[command(flatten)]
        args: SeriesArgs,
        /// Folds (one refit each), each a block of --fold steps.
        #[arg(long, default_value_t = 8)]
        folds: usize,
        /// Steps per fold (default: one week of steps).
        #[arg(long)]
        fold: Option<usize>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
    },
    /// Backtest, then train on everything and save the model with its scores.
    Train {
        #[command(flatten)]
        args: SeriesArgs,
        /// Where to save the model.
        #[arg(long, default_value = "data/forecast-model.json")]
        model: PathBuf,
    },
    /// Forecast the value one horizon after the series' last step with a saved model.
    Predict {
        /// Series CSV.
        #[arg(long)]
        series: PathBuf,
        #[arg(long)]
        column: Option<String>,
        /// The saved model.
        #[arg(long, default_value = "data/forecast-model.json")]
        model: PathBuf,
    },
}

/// Runs the command.
pub fn run(action: Action) -> anyhow::Result<()> {
    use crate::forecast::{self, Model, ModelParams, Series};
    use anyhow::Context;
    let load = |a: &SeriesArgs| -> anyhow::Result<(Series, usize, ModelParams)> {
        let step_ms = a.step.as_millis() as i64;
        anyhow::ensure!(step_ms > 0, "--step must be positive");
        let series = Series::read_csv(&a.series, a.column.as_deref(), step_ms)?;
        let h = (a.horizon.as_millis() as u64)
            .div_ceil(step_ms as u64)
            .max(1) as usize;
        Ok((
            series,
            h,
            ModelParams {
                trees: a.trees,
                max_depth: a.max_depth,
                seed: 42,
            },
        ))
    };
    match action {
        Action::Backtest {
            args,
            folds,
            fold,
            format,
        } => {
            let (series, h, params) = load(&args)?;
            let fold = fold.unwrap_or(series.steps_per_day() * 7);
            let b = forecast::backtest(&series, h, params, folds, fold)?;
            if format == Output::Json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!(
                    "{} steps of {}, horizon {h} step(s), {} folds, {} points",
                    series.values.len(),
                    args.step,
                    b.folds,
                    b.points
                );
                println!("{:<16} {:>10} {:>10}", "", "MAE", "RMSE");
                for (name, mae, rmse) in [
                    ("model", b.mae.model, b.rmse.model),
                    ("last value", b.mae.last_value, b.rmse.last_value),
                    (
                        "seasonal naive",
                        b.mae.seasonal_naive,
                        b.rmse.seasonal_naive,
                    ),
                ] {
                    println!("{name:<16} {mae:>10.3} {rmse:>10.3}");
                }
            }
        }
        Action::Train { args, model } => {
            let (series, h, params) = load(&args)?;
            let scores = forecast::backtest(&series, h, params, 4, series.steps_per_day() * 7).ok();
            let mut trained = Model::train(&series, h, params, series.values.len())?;
            trained.backtest = scores;
            if let Some(dir) = model.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&model, serde_json::to_vec(&trained)?)
                .with_context(|| format!("writing {}", model.display()))?;
            println!(
                "trained on {} rows ({} .. {}); saved to {}{}",
                trained.rows,
                crate::domain::Timestamp::from_millis(trained.trained_from_ms)?.to_rfc3339(),
                crate::domain::Timestamp::from_millis(trained.trained_to_ms)?.to_rfc3339(),
                model.display(),
                trained
                    .backtest
                    .as_ref()
                    .map(|b| format!(
                        "; backtest MAE {:.3} (last value {:.3}, seasonal naive {:.3})",
                        b.mae.model, b.mae.last_value, b.mae.seasonal_naive
                    ))
                    .unwrap_or_default()
            );
        }
        Action::Predict {
            series,
            column,
            model,
        } => {
            let text =
                std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            let trained: Model = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a saved model", model.display()))?;
            let series = Series::read_csv(&series, column.as_deref(), trained.step_ms)?;
            let t = series.values.len() - 1;
            let value = trained.predict(&series, t).context(
                "the series is too short to forecast from (a week of history is needed)",
            )?;
            let at = series.start_ms + (t + trained.horizon_steps) as i64 * trained.step_ms;
            println!(
                "{}",
                serde_json::json!({"at": crate::domain::Timestamp::from_millis(at)?.to_rfc3339(), "forecast": value, "last": series.values[t]})
            );
        }
    }
    Ok(())
}
