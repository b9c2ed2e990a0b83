//! Why a database operation failed, and the reply each failure becomes. What a client sees is
//! a short, fixed message; what Postgres said goes to the worker's log (without the DSN).

use std::fmt;

use molt_worker::EntryError;

/// A failed database operation. Converts into the [`EntryError`] a call answers with, so an
/// entry can use `?` on every molt-db call.
///
/// ```
/// use molt_worker::{EntryError, Status};
/// let busy: EntryError = molt_db::DbError::Busy.into();
/// assert_eq!(busy.status(), Status::Busy);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DbError {
    /// No connection became free in time (Busy).
    Busy,
    /// The database cannot be reached, refuses the login, or is not configured
    /// (Unavailable).
    Unavailable,
    /// The statement ran past the configured query limit; it was cancelled on the server
    /// (Timeout).
    Timeout {
        /// The limit it ran past, in milliseconds.
        limit_ms: u64,
    },
    /// The call was cancelled (Cancel frame, deadline, client gone); the statement was
    /// cancelled on the server (Cancelled).
    Cancelled,
    /// The entry tried to write without being listed in the settings' `writes` (InternalError:
    /// the deployment's mistake, not the caller's).
    WriteNotAllowed {
        /// The entry.
        entry: &'static str,
    },
    /// Postgres refused or failed the statement; `code` is its SQLSTATE (InternalError, or
    /// InvalidInput for data the caller sent that the server refused to take).
    Query {
        /// The SQLSTATE, e.g. `22P02` for a value of the wrong syntax.
        code: String,
    },
    /// A column could not be read as the type asked for (InternalError).
    Decode {
        /// The column.
        column: String,
        /// What it was to be read as.
        wanted: &'static str,
    },
    /// The request is not one this database layer runs (InvalidInput), with a message that
    /// says why.
    Refused(String),
}

impl DbError {
    /// Logs a Postgres error in full, and returns the error a client may see.
    pub(crate) fn from_postgres(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db) => {
                log::warn!(
                    "postgres: {} ({}): {}",
                    db.message(),
                    db.code().code(),
                    db.detail().unwrap_or("")
                );
                Self::Query {
                    code: db.code().code().to_owned(),
                }
            }
            None if err.is_closed() => {
                log::warn!("postgres: the connection closed: {err}");
                Self::Unavailable
            }
            None => {
                log::warn!("postgres: {err}");
                Self::Unavailable
            }
        }
    }

    /// Logs why a new connection could not be opened (unreachable, login refused, too many
    /// connections), and returns Unavailable: the database is not there for this call.
    pub(crate) fn from_connect(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db) => log::warn!(
                "postgres: cannot connect: {} ({})",
                db.message(),
                db.code().code()
            ),
            None => log::warn!("postgres: cannot connect: {err}"),
        }
        Self::Unavailable
    }

    /// SQLSTATE class 22 (data exception): a value the caller sent that the server could not
    /// take as the statement's parameter.
    fn is_data_exception(code: &str) -> bool {
        code.starts_with("22")
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("busy: no database connection became free in time"),
            Self::Unavailable => f.write_str("the database is unavailable"),
            Self::Timeout { limit_ms } => {
                write!(f, "the database query ran past its limit of {limit_ms} ms")
            }
            Self::Cancelled => f.write_str("cancelled"),
            Self::WriteNotAllowed { entry } => write!(
                f,
                "internal error: {entry} may not write (the database settings' writes do not list it)"
            ),
            Self::Query { code } if Self::is_data_exception(code) => {
                write!(f, "the database refused a value (SQLSTATE {code})")
            }
            Self::Query { code } => write!(f, "internal error: database error (SQLSTATE {code})"),
            Self::Decode { column, wanted } => {
                write!(f, "internal error: column {column} cannot be read as {wanted}")
            }
            Self::Refused(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DbError {}

impl From<DbError> for EntryError {
    fn from(err: DbError) -> Self {
        let message = err.to_string();
        match err {
            DbError::Busy => EntryError::Busy(message),
            DbError::Unavailable => EntryError::Unavailable(message),
            DbError::Timeout { .. } => EntryError::Timeout(message),
            DbError::Cancelled => EntryError::Cancelled,
            DbError::Query { ref code } if DbError::is_data_exception(code) => {
                EntryError::InvalidInput(message)
            }
            DbError::Refused(_) => EntryError::InvalidInput(message),
            DbError::WriteNotAllowed { .. } | DbError::Query { .. } | DbError::Decode { .. } => {
                EntryError::Internal(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use molt_worker::Status;

    #[test]
    fn every_error_has_its_status_and_a_message_without_internals() {
        for (error, status) in [
            (DbError::Busy, Status::Busy),
            (DbError::Unavailable, Status::Unavailable),
            (DbError::Timeout { limit_ms: 5 }, Status::Timeout),
            (DbError::Cancelled, Status::Cancelled),
            (
                DbError::WriteNotAllowed { entry: "x" },
                Status::InternalError,
            ),
            (
                DbError::Query {
                    code: "42P01".into(),
                },
                Status::InternalError,
            ),
            (
                DbError::Query {
                    code: "22P02".into(),
                },
                Status::InvalidInput,
            ),
            (
                DbError::Decode {
                    column: "id".into(),
                    wanted: "i32",
                },
                Status::InternalError,
            ),
            (DbError::Refused("no".into()), Status::InvalidInput),
        ] {
            let entry: EntryError = error.into();
            assert_eq!(entry.status(), status, "{entry:?}");
            assert!(!entry.message().contains("host="), "{entry:?}");
        }
    }
}
