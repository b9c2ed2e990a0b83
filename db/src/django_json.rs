//! JSON exactly as Django's `JsonResponse` writes it: `json.dumps` with `DjangoJSONEncoder`,
//! default options. Rows encoded here are byte for byte what a view returning the same
//! `.values()` rows would send, so the worker's bytes can be the response body (pass-through)
//! and an offloaded endpoint answers the same bytes as the one it replaces.
//!
//! What `json.dumps` does by default, and so this: separators `", "` and `": "`;
//! `ensure_ascii` (every character outside U+0020..U+007E escaped, `\uXXXX` in lowercase hex,
//! UTF-16 surrogate pairs above U+FFFF, `\"` `\\` `\n` `\r` `\t` `\b` `\f` by name); floats as
//! Python's `repr` (shortest round-trip digits, exponent form below 1e-4 and from 1e16, `NaN`,
//! `Infinity`): molt-worker's [`json`](molt_worker::json) module writes those, as it does a
//! typed entry's result in the Json codec. What `DjangoJSONEncoder` adds: datetimes as ISO 8601 truncated to
//! milliseconds, `+00:00` written `Z`; dates and times likewise; decimals as strings.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use molt_worker::json;
use tokio_postgres::Row;

use crate::error::DbError;
use crate::value::SqlValue;

/// A JSON document being written the way Django writes it.
///
/// ```
/// use molt_db::django_json::DjangoJson;
/// let mut json = DjangoJson::new();
/// json.begin_object();
/// json.key("title");
/// json.string("café");
/// json.key("score");
/// json.float(1e-5);
/// json.end_object();
/// assert_eq!(json.into_bytes(), br#"{"title": "caf\u00e9", "score": 1e-05}"#);
/// ```
#[derive(Debug, Default)]
pub struct DjangoJson {
    out: String,
    /// For each open object or array, innermost last: whether it already holds an element.
    filled: Vec<bool>,
    /// A key was just written: the next value is its value, with no separator before it.
    after_key: bool,
}

impl DjangoJson {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    /// Before a value or a key: the separator from the previous element, unless the value
    /// is a key's.
    fn element(&mut self) {
        if std::mem::take(&mut self.after_key) {
            return;
        }
        if let Some(filled) = self.filled.last_mut() {
            if *filled {
                self.out.push_str(", ");
            }
            *filled = true;
        }
    }

    /// `{`.
    pub fn begin_object(&mut self) {
        self.element();
        self.out.push('{');
        self.filled.push(false);
    }

    /// `}`.
    pub fn end_object(&mut self) {
        self.filled.pop();
        self.out.push('}');
    }

    /// `[`.
    pub fn begin_array(&mut self) {
        self.element();
        self.out.push('[');
        self.filled.push(false);
    }

    /// `]`.
    pub fn end_array(&mut self) {
        self.filled.pop();
        self.out.push(']');
    }

    /// An object's key; its value follows.
    pub fn key(&mut self, key: &str) {
        self.element();
        self.write_string(key);
        self.out.push_str(": ");
        self.after_key = true;
    }

    /// `null`.
    pub fn null(&mut self) {
        self.element();
        self.out.push_str("null");
    }

    /// `true` or `false`.
    pub fn bool(&mut self, value: bool) {
        self.element();
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// An integer.
    pub fn int(&mut self, value: i64) {
        self.element();
        let _ = write!(self.out, "{value}");
    }

    /// A float, as Python's `repr`.
    pub fn float(&mut self, value: f64) {
        self.element();
        json::write_float(&mut self.out, value);
    }

    /// A string.
    pub fn string(&mut self, value: &str) {
        self.element();
        self.write_string(value);
    }

    fn write_string(&mut self, value: &str) {
        self.out.push('"');
        json::escape_into(&mut self.out, value);
        self.out.push('"');
    }

    /// A column value as `DjangoJSONEncoder` renders what psycopg returns for it.
    pub fn value(&mut self, value: &SqlValue) {
        match value {
            SqlValue::Null => self.null(),
            SqlValue::Bool(value) => self.bool(*value),
            SqlValue::Int(value) => self.int(*value),
            SqlValue::Float(value) => self.float(*value),
            SqlValue::Numeric(value) => self.string(&value.to_string()),
            SqlValue::Text(value) => self.string(value),
            SqlValue::Timestamptz(value) => self.string(&django_datetime_utc(value)),
            SqlValue::Timestamp(value) => self.string(&django_datetime_naive(value)),
            SqlValue::Date(value) => self.string(&iso_date(value)),
            SqlValue::Time(value) => self.string(&django_time(value)),
            SqlValue::Json(value) => self.json(value),
        }
    }

    /// A JSON value (a `jsonb` column, which Django decodes and `json.dumps` writes again).
    pub fn json(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::Null => self.null(),
            serde_json::Value::Bool(value) => self.bool(*value),
            serde_json::Value::Number(number) => match (number.as_i64(), number.as_u64()) {
                (Some(value), _) => self.int(value),
                (None, Some(value)) => {
                    self.element();
                    let _ = write!(self.out, "{value}");
                }
                (None, None) => self.float(number.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(value) => self.string(value),
            serde_json::Value::Array(values) => {
                self.begin_array();
                for value in values {
                    self.json(value);
                }
                self.end_array();
            }
            serde_json::Value::Object(members) => {
                self.begin_object();
                for (key, value) in members {
                    self.key(key);
                    self.json(value);
                }
                self.end_object();
            }
        }
    }

    /// `rows` as `.values(*keys)` gives them: a list of objects with `keys` in order (the
    /// columns by position).
    pub fn rows_as_objects(&mut self, rows: &[Row], keys: &[String]) -> Result<(), DbError> {
        self.begin_array();
        for row in rows {
            self.begin_object();
            for (index, key) in keys.iter().enumerate() {
                self.key(key);
                self.value(&SqlValue::from_column(row, index)?);
            }
            self.end_object();
        }
        self.end_array();
        Ok(())
    }

    /// `rows` as `.values_list()` gives them: a list of lists.
    pub fn rows_as_lists(&mut self, rows: &[Row]) -> Result<(), DbError> {
        self.begin_array();
        for row in rows {
            self.begin_array();
            for index in 0..row.len() {
                self.value(&SqlValue::from_column(row, index)?);
            }
            self.end_array();
        }
        self.end_array();
        Ok(())
    }
}

fn iso_date(date: &NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `HH:MM:SS`, then `.mmm` when the microseconds are not zero (truncated to milliseconds).
fn iso_time_millis(time: &NaiveTime) -> String {
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    let micros = time.nanosecond() / 1_000 % 1_000_000;
    if micros != 0 {
        let _ = write!(text, ".{:03}", micros / 1_000);
    }
    text
}

fn django_datetime_naive(value: &NaiveDateTime) -> String {
    format!(
        "{}T{}",
        iso_date(&value.date()),
        iso_time_millis(&value.time())
    )
}

fn django_datetime_utc(value: &DateTime<Utc>) -> String {
    format!("{}Z", django_datetime_naive(&value.naive_utc()))
}

fn django_time(value: &NaiveTime) -> String {
    iso_time_millis(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_what_ensure_ascii_escapes() {
        let mut json = DjangoJson::new();
        json.string("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀/~ ");
        assert_eq!(
            String::from_utf8(json.into_bytes()).unwrap(),
            r#""a\"b\\c\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00/~ ""#
        );
    }

    #[test]
    fn datetimes_are_truncated_to_milliseconds_and_utc_is_z() {
        let at = |micros: u32| {
            NaiveDate::from_ymd_opt(2024, 12, 13)
                .unwrap()
                .and_hms_micro_opt(5, 38, 31, micros)
                .unwrap()
                .and_utc()
        };
        assert_eq!(
            django_datetime_utc(&at(212_999)),
            "2024-12-13T05:38:31.212Z"
        );
        assert_eq!(django_datetime_utc(&at(0)), "2024-12-13T05:38:31Z");
        assert_eq!(django_datetime_utc(&at(500)), "2024-12-13T05:38:31.000Z");
        assert_eq!(
            django_datetime_naive(&at(1_000).naive_utc()),
            "2024-12-13T05:38:31.001"
        );
    }

    #[test]
    fn nesting_uses_pythons_separators() {
        let mut json = DjangoJson::new();
        json.begin_object();
        json.key("items");
        json.begin_array();
        for id in [1, 2] {
            json.begin_object();
            json.key("id");
            json.int(id);
            json.key("tags");
            json.begin_array();
            json.end_array();
            json.end_object();
        }
        json.end_array();
        json.key("next");
        json.null();
        json.end_object();
        assert_eq!(
            String::from_utf8(json.into_bytes()).unwrap(),
            r#"{"items": [{"id": 1, "tags": []}, {"id": 2, "tags": []}], "next": null}"#
        );
    }
}
