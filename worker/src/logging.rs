//! A stderr logger for the `log` facade: one line per record, level from `RUST_LOG`, as text
//! for people or as one JSON object a line for a log shipper (`--log-format json`).
//! stdout carries frames only, so nothing here may ever write there.
//!
//! Records about one call carry its fields as `log` key-values (`request_id`, `entry`,
//! `status`); the JSON format puts each in a member of its own, the text format appends them
//! as `key=value`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `molt_worker LEVEL: message key=value ...`
    #[default]
    Text,
    /// `{"ts": RFC 3339, "level": ..., "target": ..., "message": ..., key: value, ...}`
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

struct StderrLogger {
    format: LogFormat,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format {
            LogFormat::Text => text_line(record),
            LogFormat::Json => json_line(record, SystemTime::now()),
        };
        // One write of a whole line under the stderr lock, so lines from threads never mix.
        // A failed write to stderr has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn text_line(record: &Record<'_>) -> String {
    let mut line = format!("molt_worker {}: {}", record.level(), record.args());
    let mut fields = TextFields(&mut line);
    // Visiting a record's own key-values cannot fail.
    let _ = record.key_values().visit(&mut fields);
    line.push('\n');
    line
}

struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        // Writing into a String cannot fail.
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

fn json_line(record: &Record<'_>, now: SystemTime) -> String {
    let mut object = serde_json::Map::new();
    object.insert(
        "ts".into(),
        humantime::format_rfc3339_micros(now).to_string().into(),
    );
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    let mut fields = JsonFields(&mut object);
    let _ = record.key_values().visit(&mut fields);
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let value = if let Some(number) = value.to_u64() {
            number.into()
        } else if let Some(number) = value.to_i64() {
            number.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_owned(), value);
        Ok(())
    }
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

/// Installs the logger (once per process: later calls keep the first format) and a panic
/// hook that logs panics as one line instead of the default multi-line report.
pub fn init(format: LogFormat) {
    static LOGGER: OnceLock<StderrLogger> = OnceLock::new();
    let logger = LOGGER.get_or_init(|| StderrLogger { format });
    let level = level_from_env(std::env::var("RUST_LOG").ok().as_deref());
    log::set_max_level(level);
    // Fails only if a logger is already set: this one, by an earlier call.
    let _ = log::set_logger(logger);
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

    fn with_record(check: impl FnOnce(&Record<'_>)) {
        let fields: [(&str, Value<'_>); 3] = [
            ("request_id", Value::from(42u64)),
            ("entry", Value::from("list_items")),
            ("status", Value::from("Timeout")),
        ];
        let fields = &fields[..];
        check(
            &Record::builder()
                .args(format_args!("a \"quoted\" reply"))
                .level(log::Level::Warn)
                .target("molt_worker::dispatcher")
                .key_values(&fields)
                .build(),
        );
    }

    #[test]
    fn a_json_line_is_one_object_with_the_call_fields() {
        with_record(|record| {
            let line = json_line(record, SystemTime::UNIX_EPOCH);
            assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
            let object: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                object,
                serde_json::json!({
                    "ts": "1970-01-01T00:00:00.000000Z",
                    "level": "WARN",
                    "target": "molt_worker::dispatcher",
                    "message": "a \"quoted\" reply",
                    "request_id": 42,
                    "entry": "list_items",
                    "status": "Timeout",
                })
            );
        });
    }

    #[test]
    fn a_text_line_appends_the_fields() {
        with_record(|record| {
            assert_eq!(
                text_line(record),
                "molt_worker WARN: a \"quoted\" reply request_id=42 entry=list_items status=Timeout\n"
            );
        });
    }
}
