//! The cancellation token a running call checks in its loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Fired by a cancel frame, by the call's deadline, or by its client going away. Cheap to
/// clone; every clone sees the same state.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token. Idempotent.
    pub fn cancel(&self) {
        // Relaxed: the flag carries no data with it; whoever fires it sends the reply itself.
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the token has fired. Entries call this in their loops: it is one load.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
