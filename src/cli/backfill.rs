//! `backfill`: read a controller's build history from Jenkins into the store.

use super::{Service, config_dir, settings_for, with_store};

/// `backfill`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The controller, as in jenkins.controllers.
    #[arg(long)]
    controller: String,
    /// How far back (a duration).
    #[arg(long, default_value = "90d")]
    since: humantime::Duration,
    /// Only jobs whose full name matches this glob (`team/*`).
    #[arg(long)]
    jobs: Option<String>,
    /// Read and count; store nothing.
    #[arg(long)]
    dry_run: bool,
    /// Requests per second to Jenkins (default backfill.max_requests_per_second).
    #[arg(long)]
    max_requests_per_second: Option<f64>,
    #[command(flatten)]
    service: Service,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    use crate::backfill::{Options, SharedProgress};
    use crate::domain::{ControllerName, EventSource, Timestamp};
    let (settings, data_dir) = settings_for(
        config_dir(args.service.config).as_deref(),
        args.service.data_dir,
    )?;
    let name = ControllerName::parse(&args.controller)
        .map_err(|e| anyhow::anyhow!("--controller: {e}"))?;
    let since: std::time::Duration = args.since.into();
    let (jobs, dry_run, rate) = (args.jobs, args.dry_run, args.max_requests_per_second);
    let jenkins_settings = settings
        .jenkins
        .controller(name.as_str())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--controller: no {name} in jenkins.controllers"))?;
    let since = Timestamp::from_millis(Timestamp::now().millis() - since.as_millis() as i64)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let opts = Options {
        since,
        jobs,
        dry_run,
        max_requests_per_second: rate.unwrap_or(settings.backfill.max_requests_per_second),
        source: EventSource::Backfill,
        backoff: std::time::Duration::from_secs(1),
    };
    with_store(&settings, &data_dir, async |store| {
        let jenkins = crate::jenkins::JenkinsClient::new(&jenkins_settings)?;
        let progress = SharedProgress::default();
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} jobs  {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let watch = {
            let (progress, bar) = (progress.clone(), bar.clone());
            tokio::spawn(async move {
                loop {
                    let p = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    bar.set_length(p.jobs_total);
                    bar.set_position(p.jobs_done);
                    bar.set_message(format!(
                        "{} builds read, {} new, {} requests",
                        p.builds_read, p.events_stored, p.requests
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            })
        };
        let result =
            crate::backfill::run(store, &jenkins, &settings, &name, &opts, &progress).await;
        watch.abort();
        bar.finish_and_clear();
        let p = result?;
        println!(
            "backfill of {name}: {} jobs ({} resumed), {} builds read, {} new, {} refused, {} requests{}",
            p.jobs_done,
            p.jobs_resumed,
            p.builds_read,
            p.events_stored,
            p.builds_refused,
            p.requests,
            if p.dry_run {
                " (dry run: nothing stored)"
            } else {
                ""
            }
        );
        Ok(())
    })
}
