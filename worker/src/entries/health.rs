//! `health`: `{"status": "ok", "version": ..., "uptime_s": ...}` in the call's codec.

use std::time::Instant;

use serde::Serialize;

use super::{payload, CallContext, Entry, EntryError, EntryResult};
use molt_ipc_ring::frame::Codec;

/// Reports that the worker is up, its version and its uptime.
pub struct Health {
    started: Instant,
}

impl Health {
    /// A health entry counting uptime from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }
}

#[derive(Serialize)]
struct Report {
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
}

impl Entry for Health {
    fn name(&self) -> &'static str {
        "health"
    }

    fn runs_inline(&self) -> bool {
        true
    }

    fn call(&self, ctx: &CallContext<'_>) -> EntryResult {
        if !matches!(ctx.codec, Codec::MsgPack | Codec::Json) {
            return Err(EntryError::InvalidInput(
                "health replies in msgpack or json: set the call's codec".into(),
            ));
        }
        let report = Report {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
        };
        payload::encode(ctx.codec, &report)
    }
}
