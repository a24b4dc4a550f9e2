//! Logging setup.

use crate::config::{LogFormat, LoggingSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored (tests start many apps).
pub fn init(settings: &LoggingSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
