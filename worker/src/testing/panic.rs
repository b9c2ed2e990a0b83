//! `panic`: panics, so tests can check that a panicking entry becomes one InternalError reply
//! and the worker goes on.

use crate::{Ctx, EntryError, Payload, Reply};

/// Panics on every call.
pub fn panic<S>(_payload: Payload, _ctx: &Ctx<S>) -> Result<Reply, EntryError> {
    panic!("the panic entry was called")
}
