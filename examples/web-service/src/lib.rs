//! The example molt-web service: the demo worker's entries (`list_items`, `compute`,
//! `items_page` on PostgreSQL through molt-db, `health`) served over HTTP as one binary. The
//! very functions `molt_worker` serves Django over shared memory answer HTTP clients here:
//! one registration, two doors.
//!
//! - `POST /items`: `list_items` (docs/demo-contract.md), JSON or MsgPack.
//! - `POST /compute`: `compute`.
//! - `POST /db/items`: `items_page`, one page of a user's items from PostgreSQL.
//! - `POST /health`: the `health` entry; `GET /healthz`: a plain axum handler.
//! - `GET /metrics`: Prometheus text (molt-web's per-route metrics, then molt-db's).
//!
//! `molt-web-service --help` lists the command line; docs/web.md puts it behind nginx next to
//! Django.

use molt_demo_worker::DemoState;
use molt_web::axum::routing::get;
use molt_web::axum::Router;
use molt_web::Web;

/// The manifest the service runs with unless `--exports` says otherwise.
pub const EXPORTS: &str = include_str!("../exports.json");

/// The manifest of the test binary: the service's entries and the test ones.
pub const TEST_EXPORTS: &str = include_str!("../exports.test.json");

/// The service's routes over the entries `web` serves.
pub fn routes(web: &Web<DemoState>) -> Router {
    Router::new()
        .route("/items", web.entry("list_items"))
        .route("/compute", web.entry("compute"))
        .route("/db/items", web.entry("items_page"))
        .route("/health", web.entry("health"))
        .route("/healthz", get(|| async { "ok\n" }))
}
