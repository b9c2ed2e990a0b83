//! `panic` (test-only): panics, so tests can check that a panicking entry becomes one
//! InternalError reply and the worker goes on.

use super::{CallContext, Entry, EntryResult};

/// Panics on every call.
pub struct Panic;

impl Entry for Panic {
    fn name(&self) -> &'static str {
        "panic"
    }

    fn test_only(&self) -> bool {
        true
    }

    fn call(&self, _ctx: &CallContext<'_>) -> EntryResult {
        panic!("the panic entry was called")
    }
}
