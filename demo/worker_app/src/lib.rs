//! The demo's worker: the entries behind the demo site's `/offload` endpoints, written on
//! `molt-worker`'s public API like any user's crate. `docs/demo-contract.md` specifies them;
//! `demo/django_app/demoapp/contract.py` is their pure-Python twin.
//!
//! - `echo`, `health`: inline, for transport overhead and liveness.
//! - `list_items`: the typical list endpoint, over a deterministic fake database.
//! - `compute`: a CPU-bound kernel.
//! - `items_page`: a page of items from PostgreSQL, on molt-db (the `/db/entry` endpoint);
//!   `querysets`: molt-db's entry for the Django queryset adapter (`/db/offload`).
//! - `table_summary`, `table_transform`: the data path, Polars over Arrow tables, on
//!   molt-data.
//!
//! The `molt_worker` binary runs [`app`] with the repository's `molt_exports.json`;
//! `molt_worker_test` adds molt-worker's test entries (`sleep`, `spin`, `panic`, ...) and
//! `molt_exports.test.json`, for the test suites only.
//!
//! ```
//! let client = molt_demo_worker::app().test_client().unwrap();
//! let stats: serde_json::Value =
//!     client.call_json("compute", &serde_json::json!({"n": 10})).unwrap();
//! assert_eq!(stats["n"], 10);
//! ```

mod compute;
#[cfg(test)]
mod contract_golden;
mod data_path;
mod echo;
mod fakedb;
mod fields;
mod health;
mod items_page;
mod list_items;

use std::time::Instant;

use molt_data::TableLimits;
#[cfg(test)]
use molt_db::DbSettings;
use molt_db::{Db, Query};
use molt_worker::{App, Ctx, EntryError};

use crate::fakedb::CostKnobs;

/// The manifest the production binary runs with unless `--exports` says otherwise.
pub const EXPORTS: &str = include_str!("../../../molt_exports.json");

/// The manifest of the test binary: the production entries and the test ones.
pub const TEST_EXPORTS: &str = include_str!("../../../molt_exports.test.json");

/// What the demo's entries share: built once at start-up.
pub struct DemoState {
    /// When the worker started, for `health`.
    started: Instant,
    /// The fake database's simulated cost (`MOLT_FAKE_DB_*`), read from the environment.
    cost: CostKnobs,
    /// The demo's PostgreSQL (the manifest's `settings.database`; the DSN in `MOLT_PG_DSN`).
    db: Db,
    /// How large the tables of the data path's entries may be (`settings.data`).
    data_limits: TableLimits,
}

impl DemoState {
    fn new(cost: CostKnobs, db: Db, data_limits: TableLimits) -> Self {
        Self {
            started: Instant::now(),
            cost,
            db,
            data_limits,
        }
    }

    /// A state for unit tests of the entries that use no database.
    #[cfg(test)]
    fn with_cost(cost: CostKnobs) -> Self {
        let no_database = DbSettings {
            dsn_env: "MOLT_DEMO_TEST_NO_DATABASE".into(),
            ..DbSettings::default()
        };
        Self::new(
            cost,
            Db::new(no_database).expect("a database without a DSN builds"),
            TableLimits::default(),
        )
    }
}

impl AsRef<Db> for DemoState {
    fn as_ref(&self) -> &Db {
        &self.db
    }
}

/// The demo worker: its state, its entries and its default manifest.
pub fn app() -> App<DemoState> {
    App::with_state(|startup| {
        let db = Db::new(startup.settings("database")?.unwrap_or_default())?;
        startup.add_metrics(db.metrics());
        let data_limits = startup.settings(TableLimits::SECTION)?.unwrap_or_default();
        Ok(DemoState::new(CostKnobs::from_env(), db, data_limits))
    })
    .inline_entry("echo", echo::echo)
    .inline_entry("health", health::health)
    .entry("list_items", list_items::list_items)
    .entry("compute", compute::compute)
    .async_entry("items_page", items_page::items_page)
    .async_entry("querysets", molt_db::queryset::run_queryset::<DemoState>)
    .entry("table_summary", data_path::table_summary)
    .entry("table_transform", data_path::table_transform)
    .exports(EXPORTS)
}

/// The test binary's app: [`app`] with molt-worker's test entries, `db_sleep` and
/// [`TEST_EXPORTS`].
pub fn test_app() -> App<DemoState> {
    molt_worker::testing::with_test_entries(app())
        .async_entry("db_sleep", db_sleep)
        .exports(TEST_EXPORTS)
}

/// The request of `db_sleep`.
#[derive(serde::Deserialize)]
struct DbSleep {
    seconds: f64,
}

static PG_SLEEP: Query = Query::new("db_sleep", "SELECT pg_sleep($1)");

/// `db_sleep {seconds}` (test binary only): runs `pg_sleep` on the server, so tests can see a
/// cancelled call's statement cancelled there (`pg_stat_activity`).
async fn db_sleep(request: DbSleep, ctx: Ctx<DemoState>) -> Result<f64, EntryError> {
    if !(0.0..=60.0).contains(&request.seconds) {
        return Err(EntryError::InvalidInput(
            "seconds must be between 0 and 60".into(),
        ));
    }
    let mut conn = ctx.state().db.conn(&ctx).await?;
    conn.rows(&PG_SLEEP, &[&request.seconds]).await?;
    Ok(request.seconds)
}

/// Calls `entry` in-process as a client would, for the unit tests.
#[cfg(test)]
fn call(
    entry: &str,
    codec: molt_worker::Codec,
    payload: &[u8],
) -> Result<Vec<u8>, molt_worker::EntryError> {
    use std::sync::OnceLock;
    static CLIENT: OnceLock<molt_worker::testing::TestClient<DemoState>> = OnceLock::new();
    let client = CLIENT.get_or_init(|| app().test_client().expect("the demo app builds"));
    client
        .call(entry, molt_worker::Payload::new(codec, payload.to_vec()))
        .map(|reply| reply.bytes().to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_manifests_name_only_the_entries_of_their_binaries() {
        // Each builds only if its embedded manifest names registered entries.
        super::app().test_client().unwrap();
        super::test_app().test_client().unwrap();
    }
}
