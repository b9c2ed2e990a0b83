//! How large a table a call may send: the manifest's `settings.data`.

use serde::Deserialize;

/// The bounds on the tables of one call, from the manifest's `settings.data` section. Every
/// table a client sends is checked against them before any of it is decoded; past one, the
/// call is `InvalidInput` naming the limit. Decoding reads the columns in place from the
/// payload, so a call holds about `max_bytes` of table, plus what the entry computes.
///
/// ```
/// let limits: molt_data::TableLimits =
///     serde_json::from_str(r#"{"max_bytes": 1048576, "max_rows": 10000}"#).unwrap();
/// assert_eq!(limits.max_rows, 10_000);
/// assert_eq!(limits.max_columns, molt_data::TableLimits::default().max_columns);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableLimits {
    /// Largest payload, all its tables together, in bytes.
    pub max_bytes: usize,
    /// Most rows in one table.
    pub max_rows: u64,
    /// Most columns in one table (nested fields counted).
    pub max_columns: usize,
}

impl TableLimits {
    /// The manifest's settings section these limits are read from.
    pub const SECTION: &'static str = "data";
}

impl Default for TableLimits {
    /// 64 MiB, 2 million rows, 64 columns: a table the size data teams send from a view,
    /// well under what one worker's memory holds at its compute pool's concurrency.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_rows: 2_000_000,
            max_columns: 64,
        }
    }
}
