//! Logging: `tracing` to stderr, filtered by `JITGATE_LOG` (default `info`), as JSON lines when
//! `JITGATE_LOG_FORMAT=json`. Tokens, keys and request bodies are never logged.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_env("JITGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("JITGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
