//! Where the broker's `tracing` output goes and in what form: one line per event on stdout,
//! human-readable text (`log.format=text`, the default) or one JSON object per line
//! (`log.format=json`, for log collectors such as Kubernetes'), filtered by `RUST_LOG`.
//!
//! Colour (ANSI escapes) is used only when stdout is a terminal and `NO_COLOR` is unset, so a
//! file, a pipe or a container log never holds escapes. Deliberately not here: log files,
//! rotation or shipping — a container's stdout is the log.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// `log.format`: how each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text: time, level, target, message, `key=value` fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and every field of
    /// the event at the top level (`"topic":"orders"`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        }
    }
}

/// Whether to write colour: only to a terminal, and never when `NO_COLOR` is set
/// (<https://no-color.org>).
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber writing to stdout in `format`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            let ansi = use_colour(std::io::stdout().is_terminal(), no_color.as_deref());
            builder.with_ansi(ansi).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_others_are_refused() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!(" Text ".parse(), Ok(LogFormat::Text));
        assert!("logfmt".parse::<LogFormat>().is_err());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
    }
}
