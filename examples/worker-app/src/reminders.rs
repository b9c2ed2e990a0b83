//! `remind {after_ms, note}` → `{note, waited_ms}` once the time has passed, and `stats {}` →
//! `{reminders_sent}`. A reminder is counted only when it is delivered: a call that times
//! out or is cancelled has its future dropped at the await, so it is never counted — which
//! is how the tests show that the future really was dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use molt_worker::{Ctx, EntryError};
use serde::{Deserialize, Serialize};

use crate::AppState;

/// Longest wait accepted.
const AFTER_MS_MAX: u64 = 60_000;
/// Longest note accepted, in characters.
const NOTE_MAX_CHARS: usize = 200;

/// Delivered reminders.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

/// The request of `remind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remind {
    after_ms: u64,
    note: String,
}

/// The reply of `remind`.
#[derive(Debug, Serialize)]
pub struct Reminder {
    note: String,
    waited_ms: u64,
}

/// Waits `after_ms` on the runtime's timer, then delivers the note.
pub async fn remind(req: Remind, ctx: Ctx<AppState>) -> Result<Reminder, EntryError> {
    if req.after_ms > AFTER_MS_MAX {
        return Err(EntryError::InvalidInput(format!(
            "after_ms must be at most {AFTER_MS_MAX}"
        )));
    }
    if req.note.chars().count() > NOTE_MAX_CHARS {
        return Err(EntryError::InvalidInput(format!(
            "note must be at most {NOTE_MAX_CHARS} characters"
        )));
    }
    tokio::time::sleep(Duration::from_millis(req.after_ms)).await;
    // Relaxed: a counter read by `stats`; it orders nothing else.
    ctx.state().reminders.0.fetch_add(1, Ordering::Relaxed);
    Ok(Reminder {
        note: req.note,
        waited_ms: req.after_ms,
    })
}

/// The request of `stats`: an empty map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// The reply of `stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    reminders_sent: u64,
}

/// What the state has counted so far.
pub fn stats(_req: NoFields, ctx: &Ctx<AppState>) -> Result<Stats, EntryError> {
    Ok(Stats {
        // Relaxed: see `remind`.
        reminders_sent: ctx.state().reminders.0.load(Ordering::Relaxed),
    })
}
