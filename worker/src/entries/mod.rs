//! The entries a client can call. One file per entry; [`registry`] is the one place that
//! lists them. Entries know nothing of transports: they get a codec, payload bytes and a
//! cancellation token, and return payload bytes in the same codec or an [`EntryError`].

use molt_ipc_ring::frame::Codec;

use crate::cancel::CancelToken;

mod compute;
#[cfg(test)]
mod contract_golden;
mod echo;
mod fakedb;
mod fields;
mod health;
mod list_items;
mod panic;
pub mod payload;
mod sleep;
mod spin;

/// What an entry gets for one call.
pub struct CallContext<'a> {
    /// The codec of `payload`; the result must use the same one.
    pub codec: Codec,
    /// The request payload, not yet decoded.
    pub payload: &'a [u8],
    /// Fires on cancel, on the deadline, or when the client goes away. Long loops check it.
    pub cancel: &'a CancelToken,
}

/// Why an entry produced no result. Messages are shown to end users: name the field at
/// fault, never a path or a backtrace.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The payload could not be decoded or breaks the entry's contract.
    InvalidInput(String),
    /// The entry saw its token fire and stopped.
    Cancelled,
    /// The entry failed through no fault of the caller.
    Internal(String),
}

/// The result of one call: encoded payload bytes (in the call's codec) or an error.
pub type EntryResult = Result<Vec<u8>, EntryError>;

/// One callable entry.
pub trait Entry: Send + Sync + 'static {
    /// The name clients call it by.
    fn name(&self) -> &'static str;

    /// True for entries cheap enough (a few microseconds, bounded by the payload size) to run
    /// on the transport's own thread instead of hopping to the compute pool.
    fn runs_inline(&self) -> bool {
        false
    }

    /// True for entries that exist for tests and demos (`sleep`, `spin`): enabled only when a
    /// manifest lists them by name.
    fn test_only(&self) -> bool {
        false
    }

    /// Runs the entry.
    fn call(&self, ctx: &CallContext<'_>) -> EntryResult;
}

/// Longest `ms` the test-only `sleep` and `spin` entries accept, so a typo cannot tie up a
/// compute thread for hours.
pub const MAX_TEST_MS: u64 = 60_000;

/// The payload of the test-only `sleep` and `spin` entries.
#[derive(serde::Deserialize)]
struct TestDuration {
    ms: u64,
}

/// Decodes a `{ms}` payload for the test-only entry `entry` and refuses more than
/// [`MAX_TEST_MS`].
fn test_duration_ms(entry: &str, ctx: &CallContext<'_>) -> Result<u64, EntryError> {
    let TestDuration { ms } = payload::decode(entry, ctx.codec, ctx.payload)?;
    if ms > MAX_TEST_MS {
        return Err(EntryError::InvalidInput(format!(
            "ms must be at most {MAX_TEST_MS}"
        )));
    }
    Ok(ms)
}

/// Every entry this worker knows, enabled or not.
pub fn registry() -> Vec<Box<dyn Entry>> {
    vec![
        Box::new(echo::Echo),
        Box::new(health::Health::new()),
        Box::new(list_items::ListItems),
        Box::new(compute::Compute),
        Box::new(sleep::Sleep),
        Box::new(spin::Spin),
        Box::new(panic::Panic),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_and_spin_refuse_more_than_the_test_bound_before_starting() {
        let cancel = CancelToken::new();
        let payload = format!(r#"{{"ms": {}}}"#, MAX_TEST_MS + 1);
        let ctx = CallContext {
            codec: Codec::Json,
            payload: payload.as_bytes(),
            cancel: &cancel,
        };
        for entry in [&sleep::Sleep as &dyn Entry, &spin::Spin] {
            assert_eq!(
                entry.call(&ctx),
                Err(EntryError::InvalidInput(format!(
                    "ms must be at most {MAX_TEST_MS}"
                ))),
                "{}",
                entry.name()
            );
        }
    }
}
