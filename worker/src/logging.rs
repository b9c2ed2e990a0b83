//! A stderr logger for the `log` facade: one line per record, level from `RUST_LOG`.
//! stdout carries frames only, so nothing here may ever write there.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write_fmt per line under the stderr lock, so lines from threads never mix.
            // A failed write to stderr has nowhere to be reported.
            let _ = writeln!(
                std::io::stderr().lock(),
                "molt_worker {}: {}",
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The level `RUST_LOG` asks for. Accepts a bare level (`debug`) and, so that a value set for
/// a whole Rust stack still works, `target=level` directives, of which the most verbose wins.
pub fn level_from_env(value: Option<&str>) -> LevelFilter {
    let Some(value) = value else {
        return LevelFilter::Info;
    };
    value
        .split(',')
        .filter_map(|directive| {
            directive
                .rsplit('=')
                .next()?
                .trim()
                .parse::<LevelFilter>()
                .ok()
        })
        .max()
        .unwrap_or(LevelFilter::Info)
}

/// Installs the logger and a panic hook that logs panics as one line instead of the default
/// multi-line report. Call once, first thing in `main`.
pub fn init() {
    let level = level_from_env(std::env::var("RUST_LOG").ok().as_deref());
    log::set_max_level(level);
    // Fails only if a logger is already set, which `main` calling this once rules out.
    let _ = log::set_logger(&StderrLogger);
    std::panic::set_hook(Box::new(|info| log::error!("{info}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_and_directives_parse() {
        assert_eq!(level_from_env(None), LevelFilter::Info);
        assert_eq!(level_from_env(Some("debug")), LevelFilter::Debug);
        assert_eq!(
            level_from_env(Some("warn,molt_worker=trace")),
            LevelFilter::Trace
        );
        assert_eq!(level_from_env(Some("off")), LevelFilter::Off);
        assert_eq!(level_from_env(Some("nonsense")), LevelFilter::Info);
    }
}
