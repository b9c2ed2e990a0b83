//! The demo's worker: the entries behind the demo site's `/offload` endpoints, written on
//! `molt-worker`'s public API like any user's crate. `docs/demo-contract.md` specifies them;
//! `demo/django_app/demoapp/contract.py` is their pure-Python twin.
//!
//! - `echo`, `health`: inline, for transport overhead and liveness.
//! - `list_items`: the typical list endpoint, over a deterministic fake database.
//! - `compute`: a CPU-bound kernel.
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
mod echo;
mod fakedb;
mod fields;
mod health;
mod list_items;

use std::time::Instant;

use molt_worker::App;

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
}

impl DemoState {
    fn with_cost(cost: CostKnobs) -> Self {
        Self {
            started: Instant::now(),
            cost,
        }
    }
}

/// The demo worker: its state, its entries and its default manifest.
pub fn app() -> App<DemoState> {
    App::with_state(|_startup| Ok(DemoState::with_cost(CostKnobs::from_env())))
        .inline_entry("echo", echo::echo)
        .inline_entry("health", health::health)
        .entry("list_items", list_items::list_items)
        .entry("compute", compute::compute)
        .exports(EXPORTS)
}

/// The test binary's app: [`app`] with molt-worker's test entries and [`TEST_EXPORTS`].
pub fn test_app() -> App<DemoState> {
    molt_worker::testing::with_test_entries(app()).exports(TEST_EXPORTS)
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
