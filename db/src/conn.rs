//! A connection checked out for one call: every statement bounded by the call's deadline and
//! the configured limit, cancelled on the server when the call is, and the connection given
//! back to the pool clean or not at all.
//!
//! Dropping a tokio-postgres future leaves its statement running on the server. So a
//! statement that loses its race (the call is cancelled, times out, or the entry's future is
//! dropped mid-statement) gets a cancel request sent to the server, and the connection is
//! marked as needing a *sync point* before anyone may use it again: `ROLLBACK` inside a
//! transaction, an empty query outside one. Both wait, in the connection's order, for the
//! cancelled statement's end, so the connection is idle and clean when they return. If the
//! connection is dropped in that state (the usual case: the entry ends with the call), a task
//! does the same and then puts it back in the pool, or closes it if the server does not answer
//! within [`CLEANUP_BOUND`].

use std::time::{Duration, Instant};

use std::sync::Arc;

use deadpool_postgres::Object;
use molt_worker::CancelToken;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::error::DbError;
use crate::pool::Shared;
use crate::row::FromRow;
use crate::statement::Query;

/// Longest a returned connection may take to become idle before it is closed instead.
const CLEANUP_BOUND: Duration = Duration::from_secs(2);

/// A statement parameter.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// Whether a transaction may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `BEGIN READ ONLY`: what every statement of molt-db is unless asked otherwise.
    ReadOnly,
    /// `BEGIN READ WRITE`: only for entries the settings' `writes` list.
    ReadWrite,
}

/// What the connection needs before its next statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Idle, outside any transaction.
    Idle,
    /// Inside a transaction this `Conn` began and has not ended.
    InTransaction,
    /// A statement was abandoned mid-flight, or a transaction was dropped without an end:
    /// a sync point (ROLLBACK, which is harmless outside a transaction) comes first.
    NeedsSync,
}

/// A pooled connection checked out for one call ([`Db::conn`](crate::Db::conn)).
///
/// Statements are bounded by the earlier of the call's deadline and the settings'
/// `query_timeout_ms`; they run read-only unless inside a [`Access::ReadWrite`] transaction.
/// Statements are prepared once per connection and cached.
pub struct Conn {
    /// `None` only once handed to the cleanup task on drop.
    client: Option<Object>,
    shared: Arc<Shared>,
    entry: &'static str,
    deadline: Option<Instant>,
    cancel: CancelToken,
    state: State,
}

impl Conn {
    pub(crate) fn new(
        client: Object,
        shared: Arc<Shared>,
        entry: &'static str,
        deadline: Option<Instant>,
        cancel: CancelToken,
    ) -> Self {
        Self {
            client: Some(client),
            shared,
            entry,
            deadline,
            cancel,
            state: State::Idle,
        }
    }

    /// Rows of `query`, each read into `R`.
    pub async fn query<R: FromRow>(
        &mut self,
        query: &Query,
        params: &[Param<'_>],
    ) -> Result<Vec<R>, DbError> {
        self.rows(query, params)
            .await?
            .iter()
            .map(R::from_row)
            .collect()
    }

    /// The one row of `query` (a query expected to find exactly one), read into `R`.
    pub async fn query_one<R: FromRow>(
        &mut self,
        query: &Query,
        params: &[Param<'_>],
    ) -> Result<R, DbError> {
        let rows = self.rows(query, params).await?;
        match rows.as_slice() {
            [row] => R::from_row(row),
            _ => Err(DbError::Refused(format!(
                "{} returned {} rows where one was expected",
                query.name(),
                rows.len()
            ))),
        }
    }

    /// The rows of `query` as tokio-postgres returns them.
    pub async fn rows(&mut self, query: &Query, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        Ok(self.result_set(query, params).await?.rows)
    }

    /// The rows of `query` with its columns' names and types (known even without rows), for
    /// the JSON and Arrow encoders.
    pub async fn result_set(
        &mut self,
        query: &Query,
        params: &[Param<'_>],
    ) -> Result<ResultSet, DbError> {
        match self.run(query, Op::Rows(params)).await? {
            Done::Rows(result) => {
                self.shared
                    .metrics
                    .record_rows(query.name(), result.rows.len());
                Ok(result)
            }
            Done::Count(_) => unreachable!("a query answers rows"),
        }
    }

    /// Runs `query` (an INSERT, UPDATE, ...), returning the rows it affected. Outside a
    /// read-write transaction the server refuses it.
    pub async fn execute(&mut self, query: &Query, params: &[Param<'_>]) -> Result<u64, DbError> {
        match self.run(query, Op::Execute(params)).await? {
            Done::Count(count) => Ok(count),
            Done::Rows(_) => unreachable!("an execute answers a count"),
        }
    }

    /// Begins a transaction. It rolls back unless committed: when dropped, and when the call
    /// is cancelled. `Access::ReadWrite` is refused to entries the settings' `writes` does
    /// not list.
    pub async fn transaction(&mut self, access: Access) -> Result<Transaction<'_>, DbError> {
        let begin = match access {
            Access::ReadOnly => &BEGIN_READ_ONLY,
            Access::ReadWrite if self.shared.may_write(self.entry) => &BEGIN_READ_WRITE,
            Access::ReadWrite => return Err(DbError::WriteNotAllowed { entry: self.entry }),
        };
        if self.state == State::InTransaction {
            return Err(DbError::Refused(
                "a transaction is already open on this connection".into(),
            ));
        }
        self.simple(begin).await?;
        self.state = State::InTransaction;
        Ok(Transaction {
            conn: self,
            ended: false,
        })
    }

    /// The deadline a statement starting now must meet, and whether it is the configured
    /// limit (rather than the call's own deadline) that sets it.
    fn statement_deadline(&self) -> (Instant, bool) {
        let limit = Instant::now() + self.shared.query_timeout;
        match self.deadline {
            Some(deadline) if deadline <= limit => (deadline, false),
            _ => (limit, true),
        }
    }

    /// Runs one statement with the connection's guarantees: sync point first if one is owed,
    /// the statement prepared (cached) and bounded, the server told to cancel it if it loses.
    async fn run(&mut self, query: &Query, op: Op<'_, '_>) -> Result<Done, DbError> {
        if self.state == State::NeedsSync {
            self.sync().await?;
        }
        let started = Instant::now();
        let (deadline, is_limit) = self.statement_deadline();
        let client = self.client.as_ref().expect("a live connection");
        let work = async {
            let statement = client.prepare_cached(query.sql()).await?;
            match op {
                Op::Rows(params) => {
                    let rows = client.query(&statement, params).await?;
                    let columns = statement
                        .columns()
                        .iter()
                        .map(|column| (column.name().to_owned(), column.type_().clone()))
                        .collect();
                    Ok(Done::Rows(ResultSet { columns, rows }))
                }
                Op::Execute(params) => client.execute(&statement, params).await.map(Done::Count),
            }
        };
        // From here until the statement's end is known, an early return or a drop leaves a
        // statement possibly running: the sync point is owed.
        let previous = std::mem::replace(&mut self.state, State::NeedsSync);
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(DbError::Cancelled),
            () = tokio::time::sleep_until(deadline.into()) => Err(if is_limit {
                DbError::Timeout { limit_ms: millis(self.shared.query_timeout) }
            } else {
                // The call's own deadline: the runtime answers Timeout at it.
                DbError::Cancelled
            }),
            result = work => Ok(result),
        };
        let elapsed = started.elapsed();
        match outcome {
            Ok(Ok(done)) => {
                self.state = previous;
                self.shared
                    .metrics
                    .record_statement(query.name(), elapsed, Outcome::Done);
                Ok(done)
            }
            Ok(Err(err)) => {
                // The statement ended, with an error: nothing runs now, but a transaction is
                // aborted and owes its ROLLBACK, which the sync point is.
                if previous != State::InTransaction {
                    self.state = previous;
                }
                self.shared
                    .metrics
                    .record_statement(query.name(), elapsed, Outcome::Failed);
                Err(DbError::from_postgres(err))
            }
            Err(interrupted) => {
                self.shared
                    .metrics
                    .record_statement(query.name(), elapsed, Outcome::Cancelled);
                self.cancel_on_server().await;
                Err(interrupted)
            }
        }
    }

    /// Runs a fixed statement of molt-db's own (BEGIN, COMMIT, ROLLBACK) with the same bound.
    async fn simple(&mut self, query: &'static Query) -> Result<(), DbError> {
        self.run(query, Op::Execute(&[])).await.map(drop)
    }

    /// Asks the server to cancel whatever this connection runs. Best effort: a lost request
    /// leaves the server's `statement_timeout` as the backstop.
    async fn cancel_on_server(&self) {
        let Some(client) = &self.client else { return };
        if let Err(err) = client.cancel_token().cancel_query(NoTls).await {
            log::warn!("postgres: the cancel request failed: {err}");
        }
    }

    /// The sync point: `ROLLBACK` waits, in the connection's order, for whatever was
    /// abandoned, and ends any transaction (outside one it only warns, server-side).
    async fn sync(&mut self) -> Result<(), DbError> {
        let client = self.client.as_ref().expect("a live connection");
        match tokio::time::timeout(CLEANUP_BOUND, client.batch_execute("ROLLBACK")).await {
            Ok(Ok(())) => {
                self.state = State::Idle;
                Ok(())
            }
            Ok(Err(err)) => Err(DbError::from_postgres(err)),
            Err(_) => Err(DbError::Unavailable),
        }
    }
}

/// What a statement does.
enum Op<'p, 'v> {
    Rows(&'p [Param<'v>]),
    Execute(&'p [Param<'v>]),
}

/// What it gave.
enum Done {
    Rows(ResultSet),
    Count(u64),
}

/// A query's rows and its columns.
pub struct ResultSet {
    /// Each column's name and Postgres type, in order.
    pub columns: Vec<(String, Type)>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// How a statement ended, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Failed,
    Cancelled,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if self.state == State::Idle {
            return; // back to the pool as it is
        }
        // A statement may still run, or a transaction is open: clean before anyone else
        // gets it. Needs the runtime the connection lives on, which is where it is dropped.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client));
            return;
        };
        let abandoned = self.state == State::NeedsSync;
        let shared = Arc::clone(&self.shared);
        runtime.spawn(async move {
            if abandoned {
                if let Err(err) = client.cancel_token().cancel_query(NoTls).await {
                    log::warn!("postgres: the cancel request failed: {err}");
                }
            }
            match tokio::time::timeout(CLEANUP_BOUND, client.batch_execute("ROLLBACK")).await {
                Ok(Ok(())) => drop(client), // idle and clean: back to the pool
                _ => {
                    shared.metrics.record_discard();
                    drop(Object::take(client)); // closed, and out of the pool
                }
            }
        });
    }
}

static BEGIN_READ_ONLY: Query = Query::new("molt_db.begin", "BEGIN READ ONLY");
static BEGIN_READ_WRITE: Query = Query::new("molt_db.begin", "BEGIN READ WRITE");
static COMMIT: Query = Query::new("molt_db.commit", "COMMIT");

/// A transaction on a [`Conn`]: statements run on it through `Deref` (`tx.query(...)`), and it
/// ends with [`Transaction::commit`]. Dropped or cancelled, it rolls back.
pub struct Transaction<'c> {
    conn: &'c mut Conn,
    ended: bool,
}

impl Transaction<'_> {
    /// Commits. A failed commit (or one cut short by the call's end) has rolled back.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.ended = true;
        self.conn.simple(&COMMIT).await?;
        self.conn.state = State::Idle;
        Ok(())
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.ended && self.conn.state == State::InTransaction {
            // Rolled back by the sync point before the connection's next use or return.
            self.conn.state = State::NeedsSync;
        }
    }
}
