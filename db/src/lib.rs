//! `molt-db`: Postgres for molt workers, async (tokio-postgres, deadpool-postgres).
//!
//! - [`Db`]: a bounded pool; checking out a connection ([`Db::conn`]) waits at most until the
//!   call's deadline or the configured limit, then answers Busy; a database that is down is
//!   Unavailable, and the pool reconnects once it is back.
//! - [`Conn`]: statements ([`Query`], prepared once per connection and cached) with typed
//!   parameters, rows into your types ([`FromRow`]) or as a [`ResultSet`] for JSON
//!   ([`django_json`]) and Arrow; transactions that roll back unless committed; read-only
//!   unless an entry is allowed to write.
//! - Every statement is bounded by the earlier of the call's deadline and the configured
//!   query limit, with the server's `statement_timeout` as the backstop. When a call is
//!   cancelled (Cancel frame, deadline, client gone) its running statement is cancelled **on
//!   the server**, and the connection goes back to the pool idle and clean, or is closed.
//! - [`DbMetrics`]: per-statement HDR histograms (execution, rows), the wait for a
//!   connection, pool gauges, in the worker's Prometheus text and interval log.
//! - [`queryset`]: the worker's half of the Django queryset adapter.
//!
//! Every error converts into the call's [`EntryError`](molt_worker::EntryError), with a
//! message safe for clients (never the DSN; what Postgres said goes to the worker's log).
//!
//! ```no_run
//! use molt_db::{Db, Query};
//! use molt_worker::{App, Ctx, EntryError};
//!
//! static OPEN_ITEMS: Query = Query::new(
//!     "open_items",
//!     "SELECT id, title FROM items WHERE user_id = $1 AND status = 'open' ORDER BY id LIMIT 50",
//! );
//!
//! #[derive(serde::Deserialize)]
//! struct ForUser { user_id: i32 }
//!
//! async fn open_items(req: ForUser, ctx: Ctx<Db>) -> Result<Vec<(i64, String)>, EntryError> {
//!     let mut conn = ctx.state().conn(&ctx).await?;
//!     Ok(conn.query(&OPEN_ITEMS, &[&req.user_id]).await?)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     App::with_state(|startup| {
//!         let db = Db::new(startup.settings("database")?.unwrap_or_default())?;
//!         startup.add_metrics(db.metrics());
//!         Ok(db)
//!     })
//!     .async_entry("open_items", open_items)
//!     .run()
//! }
//! ```
#![deny(missing_docs)]

mod arrow;
mod conn;
pub mod django_json;
mod error;
mod metrics;
mod pool;
pub mod queryset;
mod row;
mod settings;
mod statement;
mod value;

pub use conn::{Access, Conn, Param, ResultSet, Transaction};
pub use error::DbError;
pub use metrics::DbMetrics;
pub use pool::{Db, PoolStatus};
pub use queryset::ExportedQuery;
pub use row::{column, FromRow};
pub use settings::DbSettings;
pub use statement::Query;
pub use tokio_postgres::Row;
pub use value::{SqlValue, TextParam};
