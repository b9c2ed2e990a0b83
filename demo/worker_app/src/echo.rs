//! `echo`: returns the payload unchanged, in any codec. The cheapest possible call, used to
//! measure transport overhead.

use molt_worker::{Ctx, EntryError, Payload, Reply};

/// Returns the payload bytes unchanged, in the call's codec.
pub fn echo<S>(payload: Payload, _ctx: &Ctx<S>) -> Result<Reply, EntryError> {
    Ok(Reply::encoded(payload.into_bytes()))
}
