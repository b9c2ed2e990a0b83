//! The bounded admission queue between transports and the compute pool. Pushing never
//! blocks: a full queue hands the call back so the caller can answer Busy at once.

use molt_ipc_ring::lock::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

/// A bounded multi-producer multi-consumer queue; consumers block in [`AdmissionQueue::pop`].
pub struct AdmissionQueue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    capacity: usize,
    /// Mirrors `state.items.len()` so replies can report the depth without taking the lock.
    /// Always within `0..=capacity`; may lag the queue by one push or pop.
    depth: AtomicU32,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> AdmissionQueue<T> {
    /// An empty queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            not_empty: Condvar::new(),
            capacity,
            depth: AtomicU32::new(0),
        }
    }

    /// Items waiting now.
    pub fn depth(&self) -> u32 {
        // Relaxed: a gauge for metrics; nothing is read through it.
        self.depth.load(Ordering::Relaxed)
    }

    /// Appends `item`, or hands it back if the queue is full or closed.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed || state.items.len() >= self.capacity {
            return Err(item);
        }
        state.items.push_back(item);
        self.publish_depth(&state);
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// The oldest item, waiting for one if need be; `None` once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.publish_depth(&state);
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self.not_empty.wait(state);
        }
    }

    /// Refuses further pushes and wakes every consumer; items already queued are still popped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }

    fn publish_depth(&self, state: &State<T>) {
        // Relaxed: see `depth`. The length fits: capacity is a usize from the command line,
        // saturated to u32 for the wire.
        self.depth.store(
            u32::try_from(state.items.len()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_hands_the_item_back() {
        let queue = AdmissionQueue::new(2);
        assert_eq!(queue.try_push(1), Ok(()));
        assert_eq!(queue.try_push(2), Ok(()));
        assert_eq!(queue.try_push(3), Err(3));
        assert_eq!(queue.depth(), 2);
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.depth(), 1);
    }

    #[test]
    fn close_drains_then_ends_consumers() {
        let queue = AdmissionQueue::new(4);
        queue.try_push(7).unwrap();
        queue.close();
        assert_eq!(queue.try_push(8), Err(8));
        assert_eq!(queue.pop(), Some(7));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn close_wakes_a_waiting_consumer() {
        let queue = std::sync::Arc::new(AdmissionQueue::<u8>::new(1));
        let consumer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.pop())
        };
        queue.close();
        assert_eq!(consumer.join().unwrap(), None);
    }
}
