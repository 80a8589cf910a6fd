//! Process-wide log output (once, at start-up, before any shard runs): `[log] level` as an
//! `EnvFilter` directive, overridden by `SKEIN_LOG`; `[log] format` text or JSON lines, on
//! stderr (journald or a log shipper picks them up there).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The environment variable that overrides `[log] level` (handy for one debugging run).
const LEVEL_ENV: &str = "SKEIN_LOG";

pub fn init(log: &LogConfig) {
    let from_env = std::env::var(LEVEL_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let env_filter = from_env.as_deref().map(|v| EnvFilter::builder().parse(v));
    let (filter, bad_env) = match env_filter {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (config_filter(log), Some(e)),
        None => (config_filter(log), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        // Flattened: an event's fields sit beside `message`, where log shippers look for them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("skein: logging could not start: {e}");
    }
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, "{LEVEL_ENV} is not a valid filter; using [log] level");
    }
}

/// `[log] level` was checked when the config loaded; "info" should that ever not hold.
fn config_filter(log: &LogConfig) -> EnvFilter {
    EnvFilter::builder()
        .parse(&log.level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
}
