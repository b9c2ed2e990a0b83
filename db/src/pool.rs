//! [`Db`]: the bounded pool, and checking a connection out for a call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use molt_worker::{BoxError, Ctx};
use tokio_postgres::NoTls;

use crate::conn::Conn;
use crate::error::DbError;
use crate::metrics::DbMetrics;
use crate::queryset::ExportedQuery;
use crate::settings::DbSettings;

/// A Postgres database for a worker's entries: a bounded pool of connections (opened on first
/// use, so a database that is down at start-up does not stop the worker), with the settings'
/// limits. Cheap to clone; keep one in the app state.
///
/// ```no_run
/// use molt_db::{Db, DbSettings, Query};
/// use molt_worker::{App, Ctx, EntryError};
///
/// static TITLE: Query = Query::new("title", "SELECT title FROM items WHERE id = $1");
///
/// async fn title(id: i64, ctx: Ctx<Db>) -> Result<String, EntryError> {
///     let mut conn = ctx.state().conn(&ctx).await?;
///     let (title,): (String,) = conn.query_one(&TITLE, &[&id]).await?;
///     Ok(title)
/// }
///
/// App::with_state(|startup| Ok(Db::new(startup.settings("database")?.unwrap_or_default())?))
///     .async_entry("title", title)
///     .run();
/// ```
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

/// What a database's connections share.
pub(crate) struct Shared {
    /// `None` when no DSN is configured: every call is answered Unavailable.
    pool: Option<Pool>,
    pub query_timeout: Duration,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    writers: Vec<String>,
    pub queries: BTreeMap<String, ExportedQuery>,
    pub metrics: Arc<DbMetrics>,
}

impl Shared {
    pub fn may_write(&self, entry: &str) -> bool {
        self.writers.iter().any(|writer| writer == entry)
    }
}

/// The pool's state now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open (idle or checked out).
    pub size: usize,
    /// Connections open and idle.
    pub idle: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
    /// The most connections the pool opens.
    pub max_size: usize,
}

impl Db {
    /// A pool over the DSN the settings give (their `dsn`, else the environment variable
    /// `dsn_env` names). Every connection starts read-only (`default_transaction_read_only`)
    /// with the server-side `statement_timeout` backstop. Without a DSN the worker still
    /// starts (with a warning) and calls that need the database are answered Unavailable;
    /// a DSN that does not parse fails start-up, with a message that never repeats it.
    pub fn new(settings: DbSettings) -> Result<Self, BoxError> {
        let Some(dsn) = settings.resolve_dsn() else {
            log::warn!(
                "no database configured ({} is not set): calls that need it answer Unavailable",
                settings.dsn_env
            );
            return Ok(Self::with_pool(None, &settings));
        };
        let mut config: tokio_postgres::Config = dsn
            .parse()
            .map_err(|_| format!("the DSN in {} does not parse", settings.dsn_env))?;
        let options = format!(
            "{} -c default_transaction_read_only=on -c statement_timeout={}",
            config.get_options().unwrap_or(""),
            settings.statement_timeout_ms()
        );
        config.options(options.trim_start());
        if config.get_application_name().is_none() {
            config.application_name("molt_worker");
        }
        config.connect_timeout(settings.connect_timeout());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection comes back from molt-db idle and clean or not at all (conn.rs),
                // so checking that it is still open is enough.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| format!("cannot build the database pool: {err}"))?;
        Ok(Self::with_pool(Some(pool), &settings))
    }

    fn with_pool(pool: Option<Pool>, settings: &DbSettings) -> Self {
        let metrics = Arc::new(DbMetrics::new(pool.clone()));
        Self {
            shared: Arc::new(Shared {
                pool,
                query_timeout: settings.query_timeout(),
                acquire_timeout: settings.acquire_timeout(),
                connect_timeout: settings.connect_timeout(),
                writers: settings.writes.clone(),
                queries: settings.queries.clone(),
                metrics,
            }),
        }
    }

    /// A connection for the call `ctx` belongs to. The wait is bounded by the earlier of the
    /// call's deadline and the settings' `acquire_timeout_ms`: Busy when no connection frees
    /// up by then, Unavailable when a new one cannot be opened, Cancelled when the call is.
    pub async fn conn<S>(&self, ctx: &Ctx<S>) -> Result<Conn, DbError> {
        let shared = &self.shared;
        let Some(pool) = &shared.pool else {
            return Err(DbError::Unavailable);
        };
        let remaining = ctx.remaining().unwrap_or(Duration::MAX);
        let wait = remaining.min(shared.acquire_timeout);
        let connect = remaining
            .min(shared.connect_timeout)
            .max(Duration::from_millis(1));
        let timeouts = Timeouts {
            wait: Some(wait),
            create: Some(connect),
            recycle: Some(connect),
        };
        let started = Instant::now();
        let acquired = tokio::select! {
            biased;
            () = ctx.cancelled() => return Err(DbError::Cancelled),
            acquired = pool.timeout_get(&timeouts) => acquired,
        };
        shared.metrics.record_wait(started.elapsed());
        match acquired {
            Ok(client) => Ok(Conn::new(
                client,
                Arc::clone(shared),
                ctx.entry(),
                ctx.deadline(),
                ctx.cancel_token().clone(),
            )),
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                shared.metrics.record_acquire_timeout();
                // Bounded by the call's own deadline, the runtime answers Timeout; only the
                // pool's own limit makes it Busy.
                if wait < shared.acquire_timeout {
                    Err(DbError::Cancelled)
                } else {
                    Err(DbError::Busy)
                }
            }
            Err(PoolError::Timeout(_)) => {
                log::warn!("postgres: opening a connection took longer than {connect:?}");
                Err(DbError::Unavailable)
            }
            Err(PoolError::Backend(err)) => Err(DbError::from_connect(err)),
            Err(err) => {
                log::warn!("postgres: no connection: {err}");
                Err(DbError::Unavailable)
            }
        }
    }

    /// The pool's state now.
    pub fn status(&self) -> PoolStatus {
        pool_status(self.shared.pool.as_ref())
    }

    /// What the database recorded: statements, waits, cancels. Register it with the
    /// worker's metrics ([`Startup::add_metrics`](molt_worker::Startup::add_metrics)) to
    /// see it in the Prometheus text and the interval log.
    pub fn metrics(&self) -> Arc<DbMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// The state of `pool`; all zeros without one.
pub(crate) fn pool_status(pool: Option<&Pool>) -> PoolStatus {
    pool.map_or(
        PoolStatus {
            size: 0,
            idle: 0,
            waiting: 0,
            max_size: 0,
        },
        |pool| {
            let status = pool.status();
            PoolStatus {
                size: status.size,
                idle: status.available,
                waiting: status.waiting,
                max_size: status.max_size,
            }
        },
    )
}
