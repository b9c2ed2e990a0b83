//! Why an entry produced no result.

use std::fmt;

use molt_ipc_ring::frame::Status;

/// Why an entry produced no result; each kind is the reply's status. Messages are shown to
/// the client and from there to end users: name the field at fault, never a path, a DSN or
/// a backtrace.
///
/// ```
/// use molt_worker::EntryError;
/// fn limit(requested: u32) -> Result<u32, EntryError> {
///     if requested > 500 {
///         return Err(EntryError::InvalidInput("limit must be at most 500".into()));
///     }
///     Ok(requested)
/// }
/// assert_eq!(limit(501).unwrap_err().to_string(), "limit must be at most 500");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// The payload could not be decoded or breaks the entry's contract (status InvalidInput).
    InvalidInput(String),
    /// A resource the entry needs is exhausted (a connection pool, say): try again later
    /// (status Busy).
    Busy(String),
    /// A limit of the entry's own ran out before its work finished (a query bounded below
    /// the call's deadline, say) (status Timeout). The call's own deadline needs no error:
    /// the runtime answers Timeout at it, whatever the entry is doing.
    Timeout(String),
    /// A service the entry needs is unavailable (its database is down or refuses the login):
    /// nothing was done, a later call may succeed (status Unavailable).
    Unavailable(String),
    /// The entry saw its token fire and stopped (status Cancelled; the runtime usually has
    /// answered already with the reason the token fired).
    Cancelled,
    /// The entry failed through no fault of the caller (status InternalError).
    Internal(String),
}

impl EntryError {
    /// The reply status this error is sent with.
    ///
    /// ```
    /// use molt_worker::{EntryError, Status};
    /// assert_eq!(EntryError::Busy("pool exhausted".into()).status(), Status::Busy);
    /// ```
    pub fn status(&self) -> Status {
        match self {
            Self::InvalidInput(_) => Status::InvalidInput,
            Self::Busy(_) => Status::Busy,
            Self::Timeout(_) => Status::Timeout,
            Self::Unavailable(_) => Status::Unavailable,
            Self::Cancelled => Status::Cancelled,
            Self::Internal(_) => Status::InternalError,
        }
    }

    /// The message the reply carries.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(message)
            | Self::Busy(message)
            | Self::Timeout(message)
            | Self::Unavailable(message)
            | Self::Internal(message) => message,
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EntryError {}
