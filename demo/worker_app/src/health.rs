//! `health`: `{"status": "ok", "version": ..., "uptime_s": ...}` in the call's codec.

use molt_worker::{Codec, Ctx, EntryError, Payload};
use serde::Serialize;

use crate::DemoState;

/// The reply.
#[derive(Serialize)]
pub struct Report {
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
}

/// Reports that the worker is up, its version and its uptime.
pub fn health(payload: Payload, ctx: &Ctx<DemoState>) -> Result<Report, EntryError> {
    if !matches!(payload.codec(), Codec::MsgPack | Codec::Json) {
        return Err(EntryError::InvalidInput(
            "health replies in msgpack or json: set the call's codec".into(),
        ));
    }
    Ok(Report {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: ctx.state().started.elapsed().as_secs(),
    })
}
