//! `echo`: returns the payload unchanged, in any codec. The cheapest possible call, used to
//! measure transport overhead.

use super::{CallContext, Entry, EntryResult};

/// Returns the payload bytes unchanged.
pub struct Echo;

impl Entry for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn runs_inline(&self) -> bool {
        true
    }

    fn call(&self, ctx: &CallContext<'_>) -> EntryResult {
        Ok(ctx.payload.to_vec())
    }
}
