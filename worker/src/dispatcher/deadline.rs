//! The deadline timer: one task per runtime answers Timeout at every call's deadline.
//!
//! Calls with a deadline are kept in one ordered map; the task sleeps (tokio's timer wheel)
//! until the earliest, answers every call that is due and sleeps again. A call that finishes
//! first removes itself, which wakes nobody. Inserting wakes the task only when the new
//! deadline comes before the one it sleeps towards; calls arrive with deadlines of "now plus
//! a timeout", later than those already waiting, so under steady load the task wakes about
//! twice per timeout period, not once per call, and no call allocates a task or a timer of
//! its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use molt_ipc_ring::frame::Status;
use molt_ipc_ring::lock::Mutex;
use tokio::sync::Notify;

use super::call::Call;
use super::TIMEOUT_MESSAGE;

/// A call's place in the timer: its deadline, and a sequence number that keeps equal
/// deadlines apart.
pub type TimerKey = (Instant, u64);

/// Calls waiting for their deadline, and the task that answers them.
#[derive(Default)]
pub struct Deadlines {
    pending: Mutex<Pending>,
    /// Wakes the task to sleep towards an earlier deadline.
    rearm: Notify,
    next_sequence: AtomicU64,
}

#[derive(Default)]
struct Pending {
    calls: BTreeMap<TimerKey, Arc<Call>>,
    /// The instant the task sleeps towards; `None` while it waits for a first call.
    armed: Option<Instant>,
}

impl Deadlines {
    /// A fresh key for a call due at `deadline`.
    pub fn key(&self, deadline: Instant) -> TimerKey {
        // Relaxed: only uniqueness matters.
        (deadline, self.next_sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// Answers `call` Timeout at `key`'s deadline unless it is removed first.
    pub fn insert(&self, key: TimerKey, call: Arc<Call>) {
        let mut pending = self.pending.lock();
        pending.calls.insert(key, call);
        if pending.armed.is_some_and(|armed| armed <= key.0) {
            return;
        }
        pending.armed = Some(key.0);
        drop(pending);
        // Stores a permit if the task is busy expiring calls: it then re-reads the map.
        self.rearm.notify_one();
    }

    /// Forgets the call at `key` (it replied); nothing if it is already gone.
    pub fn remove(&self, key: TimerKey) {
        self.pending.lock().calls.remove(&key);
    }

    /// The timer task: runs as long as the runtime does.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (due, next) = {
                let mut pending = self.pending.lock();
                let now = Instant::now();
                let later = pending.calls.split_off(&(now, u64::MAX));
                let due = std::mem::replace(&mut pending.calls, later);
                let next = pending.calls.keys().next().map(|&(deadline, _)| deadline);
                pending.armed = next;
                (due, next)
            };
            // Outside the lock: answering takes the session's lock and removes the key.
            for call in due.into_values() {
                call.interrupt(Status::Timeout, TIMEOUT_MESSAGE);
            }
            match next {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = self.rearm.notified() => {}
                },
                None => self.rearm.notified().await,
            }
        }
    }
}
