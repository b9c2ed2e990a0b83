//! What a deployment configures: the manifest's `settings.database` section, and the
//! environment variable that holds the DSN. Nothing of it ever comes from a client.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::queryset::ExportedQuery;

/// The `database` settings section of the exports manifest; every key is optional.
///
/// ```
/// let settings: molt_db::DbSettings = serde_json::from_str(r#"{
///     "dsn_env": "MOLT_PG_DSN",
///     "pool_size": 4,
///     "query_timeout_ms": 2000
/// }"#).unwrap();
/// assert_eq!(settings.pool_size, 4);
/// assert_eq!(settings.acquire_timeout_ms, 1000);
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DbSettings {
    /// The DSN (`host=/run/postgresql dbname=app user=app`, or a `postgresql://` URL). Better
    /// left out, so the manifest holds no credentials: the environment variable `dsn_env`
    /// names is read instead.
    pub dsn: Option<String>,
    /// The environment variable holding the DSN when `dsn` is absent.
    pub dsn_env: String,
    /// Connections at most; a call finding none free waits (bounded) and then gets Busy.
    pub pool_size: usize,
    /// Longest wait for a free connection, whatever the call's deadline (which bounds it
    /// too): past it the call is answered Busy.
    pub acquire_timeout_ms: u64,
    /// Longest a statement may run, whatever the call's deadline (which bounds it too).
    pub query_timeout_ms: u64,
    /// The server's own `statement_timeout`, the backstop should a cancel request be lost.
    /// Default: `query_timeout_ms` plus one second.
    pub statement_timeout_ms: Option<u64>,
    /// Longest a new connection may take to open.
    pub connect_timeout_ms: u64,
    /// Entries that may open read-write transactions; every other statement runs read-only.
    pub writes: Vec<String>,
    /// The SQL the Django queryset adapter may run, by name (`manage.py molt_queries`
    /// writes it); nothing else is run for the adapter.
    pub queries: BTreeMap<String, ExportedQuery>,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            dsn: None,
            dsn_env: "MOLT_DB_DSN".to_owned(),
            pool_size: 8,
            acquire_timeout_ms: 1_000,
            query_timeout_ms: 5_000,
            statement_timeout_ms: None,
            connect_timeout_ms: 2_000,
            writes: Vec::new(),
            queries: BTreeMap::new(),
        }
    }
}

impl DbSettings {
    pub(crate) fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub(crate) fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
            .unwrap_or(self.query_timeout_ms.saturating_add(1_000))
    }

    /// The DSN: `dsn`, else the environment variable; `None` when neither is set.
    pub(crate) fn resolve_dsn(&self) -> Option<String> {
        self.dsn
            .clone()
            .or_else(|| std::env::var(&self.dsn_env).ok())
            .filter(|dsn| !dsn.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelled_keys_are_refused() {
        assert!(serde_json::from_str::<DbSettings>(r#"{"pool_sise": 3}"#).is_err());
    }

    #[test]
    fn the_backstop_defaults_to_a_second_past_the_query_limit() {
        let settings = DbSettings {
            query_timeout_ms: 2_000,
            ..DbSettings::default()
        };
        assert_eq!(settings.statement_timeout_ms(), 3_000);
    }

    #[test]
    fn an_explicit_dsn_wins_over_the_environment() {
        let settings = DbSettings {
            dsn: Some("host=/tmp dbname=x".into()),
            dsn_env: "MOLT_DB_TEST_UNSET_VARIABLE".into(),
            ..DbSettings::default()
        };
        assert_eq!(
            settings.resolve_dsn().as_deref(),
            Some("host=/tmp dbname=x")
        );
        let unset = DbSettings {
            dsn_env: "MOLT_DB_TEST_UNSET_VARIABLE".into(),
            ..DbSettings::default()
        };
        assert_eq!(unset.resolve_dsn(), None);
    }
}
