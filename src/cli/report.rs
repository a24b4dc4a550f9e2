//! `report`: the performance report of a range, from the service's store.

use super::{Service, config_dir, range_arg, settings_for, with_store};
use std::path::PathBuf;

/// `report`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// 24h, 7d, 30d (any span ending now) or FROM..TO (RFC 3339 or epoch ms).
    #[arg(long, default_value = "7d")]
    range: String,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    #[arg(long)]
    controller: Option<String>,
    #[arg(long)]
    job: Option<String>,
    #[arg(long)]
    label: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    service: Service,
}

/// A report's format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
    #[value(alias = "markdown")]
    Md,
    Html,
}

impl From<Format> for crate::domain::ReportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Json => Self::Json,
            Format::Csv => Self::Csv,
            Format::Md => Self::Md,
            Format::Html => Self::Html,
        }
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    use crate::analytics::{performance, render};
    let filter = performance::Filter {
        controller: args.controller,
        job: args.job,
        label: args.label,
    };
    let output = args.output;
    let (settings, data_dir) = settings_for(
        config_dir(args.service.config).as_deref(),
        args.service.data_dir,
    )?;
    let range = range_arg(&args.range)?;
    let format = crate::domain::ReportFormat::from(args.format);
    let text = with_store(&settings, &data_dir, async |store| {
        let r = performance::performance_report(store, &settings, range, filter).await?;
        let frontiers = render::frontiers_drawn(
            store,
            std::sync::Arc::new(settings.clone()),
            range,
            format,
            &crate::metrics::Metrics::new(),
            (),
        )
        .await?;
        Ok(render::render(&r, format, &frontiers))
    })?;
    match output {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
