//! Logging setup.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// Log output.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggingSettings {
    /// `json` or `pretty`.
    pub format: LogFormat,
    /// tracing filter directives.
    pub filter: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LoggingSettings {
    /// Every bad field, as (path below `logging`, reason).
    pub fn check(&self) -> Vec<(&'static str, String)> {
        match parse_filter(&self.filter) {
            Ok(_) => Vec::new(),
            Err(e) => vec![("filter", e.to_string())],
        }
    }
}

/// Longest filter accepted.
const MAX_FILTER: usize = 4096;

/// A tracing filter (`info,jenkins_autopilot=debug`), or why not. Target and level
/// directives only, printable ASCII, each trimmed; a parser panic is an error. Both found
/// by fuzzing the settings: the filter parser slices the untrimmed text at the trimmed
/// text's offsets (a panic on a space before a multi-byte character), and span and field
/// filters (`[span{field=value}]`) compile their values as patterns, which a hostile value
/// makes take longer than any start-up should.
pub fn parse_filter(raw: &str) -> Result<EnvFilter, FilterError> {
    if raw.len() > MAX_FILTER || !raw.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(FilterError::Text);
    }
    if raw.contains(['[', ']', '{', '}']) {
        return Err(FilterError::SpanOrField);
    }
    let directives: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let text = directives.join(",");
    std::panic::catch_unwind(|| text.parse::<EnvFilter>())
        .map_err(|_| FilterError::Panicked)?
        .map_err(FilterError::Invalid)
}

/// Why a log filter was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("must be printable ASCII, at most {MAX_FILTER} bytes")]
    Text,
    #[error("takes target=level directives only (no span or field filters)")]
    SpanOrField,
    #[error("is not a valid tracing filter")]
    Panicked,
    #[error("is not a valid tracing filter: {0}")]
    Invalid(#[source] tracing_subscriber::filter::ParseError),
}

/// Installs the global subscriber once; later calls are ignored (tests start many apps).
pub fn init(settings: &LoggingSettings) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| parse_filter(&v).ok());
    let filter = from_env.unwrap_or_else(|| {
        parse_filter(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_filters_are_refused_and_never_panic() {
        assert!(parse_filter("info,jenkins_autopilot=debug").is_ok());
        assert!(
            parse_filter(" info , sqlx=warn ").is_ok(),
            "directives are trimmed"
        );
        // The fuzzer's find: a leading space before a multi-byte character.
        assert!(parse_filter(" \u{00ea}acservice").is_err());
        assert!(parse_filter("a,  b\u{2028}c=info").is_err());
        assert!(parse_filter(&"x".repeat(5000)).is_err());
        // Every one-byte change of a valid filter answers, never panics.
        // Span and field filters compile their values as patterns: refused.
        assert!(parse_filter("[oacjen{insli %%%%=%%.....}]").is_err());
        let base = " info, jenkins_autopilot=debug,sqlx=warn";
        for i in 0..base.len() {
            for b in [b' ', b'[', b']', b'{', b'=', b',', 0xC3] {
                let mut v = base.as_bytes().to_vec();
                v[i] = b;
                let _ = parse_filter(&String::from_utf8_lossy(&v));
            }
        }
    }
}
