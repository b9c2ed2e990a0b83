//! One client's segment: the thread that consumes its request ring, and the sink that writes
//! replies into its response ring.

use std::collections::VecDeque;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{
    self, Frame, Kind, ENTRY_LEN_OFFSET, HEADER_LEN, KIND_OFFSET, MAX_ENTRY_LEN, PAYLOAD_LEN_OFFSET,
};
use molt_ipc_ring::handshake::{self, HandshakeError};
use molt_ipc_ring::lock::Mutex;
use molt_ipc_ring::ring::{Consumer, PopError, Producer, PushError};
use molt_ipc_ring::segment::{SegmentConfig, SegmentState, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

use super::liveness::Liveness;
use crate::clock;
use crate::dispatcher::{Dispatcher, ReplySink, Session};

/// How long replies wait in the outbox for room in a full response ring before the connection
/// is declared broken. The client drains its ring whenever it waits for a reply, so a full
/// ring means it stopped reading; this covers a long garbage-collection pause, and bounds how
/// long a connection thread (and a worker's shutdown) waits for a client that will never read
/// again. Only that client's own connection thread waits; no other thread ever does.
const RESPONSE_RING_GRACE: Duration = Duration::from_secs(1);
/// Pause between two attempts to reply into a full response ring.
const RESPONSE_RING_RETRY: Duration = Duration::from_micros(50);

/// The settings every connection shares.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    /// Sizes of the rings of each new segment.
    pub segment: SegmentConfig,
    /// Spin window and sleep slice of the request ring's consumer.
    pub wait: WaitConfig,
    /// Largest frame accepted (at most what a ring record holds).
    pub max_frame_bytes: usize,
}

/// Why a connection ended.
enum End {
    /// The client hung up or closed the segment.
    PeerGone,
    /// The worker is shutting down.
    Stopping,
    /// The response ring stayed full past the grace, or broke; nothing more can be sent
    /// (already logged).
    RepliesBroken,
    /// The segment or a frame in it cannot be trusted.
    Corrupt(String),
}

/// Serves one accepted control connection until the client goes away or `stopping` is set:
/// handshake, then requests to the dispatcher, replies to the response ring. Everything the
/// connection held (segment mapping, socket, in-flight calls) is released on return.
pub fn serve(
    stream: UnixStream,
    dispatcher: &Arc<Dispatcher>,
    liveness: &Arc<Liveness>,
    settings: &ConnectionSettings,
    stopping: &AtomicBool,
) {
    let segment = match handshake::worker_side(&stream, &settings.segment) {
        Ok(segment) => segment,
        Err(HandshakeError::ForeignPeer { uid }) => {
            log::warn!("refused a connection from uid {uid}: only this worker's user is served");
            return;
        }
        // A client that hangs up first: the start-up probe of a launcher, or the check for a
        // live worker that every worker start makes.
        Err(HandshakeError::Io(err))
            if matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            log::debug!("a client left before its handshake: {err}");
            return;
        }
        Err(err) => {
            log::warn!("shared-memory handshake failed: {err}");
            return;
        }
    };
    let WorkerSide {
        mut requests,
        responses,
        state,
    } = segment;
    let state = Arc::new(state);
    let sink = Arc::new(RingSink::new(responses, Arc::clone(&state)));
    let session = Arc::new(dispatcher.connect(Arc::clone(&sink) as Arc<dyn ReplySink>));
    let watch = liveness.watch(&stream, Arc::clone(&state), Arc::clone(&session));
    let _watch = match watch {
        Ok(Some(watch)) => watch,
        Ok(None) => {
            state.close();
            return;
        }
        Err(err) => {
            log::error!("cannot watch a shared-memory connection: {err}; closing it");
            state.close();
            return;
        }
    };
    match consume_requests(&mut requests, &session, settings, stopping, &sink, &state) {
        End::PeerGone => {
            log::debug!("shared-memory client gone; cancelling its calls in flight");
            session.close();
        }
        End::Stopping => {
            session.shutdown();
            // The replies just chosen reach a client that still reads, within the grace.
            sink.flush();
        }
        End::RepliesBroken => session.close(),
        End::Corrupt(reason) => {
            log::warn!("closing a shared-memory connection: {reason}");
            session.fail_stream(&reason);
            sink.flush();
        }
    }
    // Tells the client at once (and wakes it if it sleeps on its response ring), instead of
    // leaving it to notice the socket's end.
    state.close();
    sink.close();
    // `requests`, `state` and `stream` drop here, and the watcher drops its references on
    // `_watch`'s release; with the sink's producer gone, nothing holds the mapping any more,
    // whatever calls may still be running.
}

/// Pops requests and submits them until the connection ends, flushing the sink's outbox
/// whenever it holds replies.
fn consume_requests(
    requests: &mut Consumer,
    session: &Session,
    settings: &ConnectionSettings,
    stopping: &AtomicBool,
    sink: &RingSink,
    state: &SegmentState,
) -> End {
    // Relaxed: a flag; `Shm::stop` wakes this thread after setting it.
    let is_closed = || stopping.load(Ordering::Relaxed) || sink.is_broken() || state.is_closed();
    // Everything that needs this thread wakes it: the liveness watcher closes the segment on
    // the client's hang-up and wakes it on shutdown, the sink closes it when it breaks and
    // wakes it when its outbox holds replies.
    let mut needs_attention = || is_closed() || sink.has_pending();
    // Header and entry name of the frame at the front of the ring: the whole frame when it is
    // small (most calls), so those are copied out of shared memory once and never allocated.
    let mut head = [0u8; HEADER_LEN + MAX_ENTRY_LEN];
    let mut large = Vec::new();
    loop {
        // Flushed before the next request is read: a client that sends without reading
        // cannot make its outbox grow past the calls it has in flight.
        if sink.has_pending() {
            if let Flushed::GaveUp = sink.flush() {
                return End::RepliesBroken;
            }
        }
        // Checked per record too, not only when the ring runs dry: a flood cannot hold off
        // shutdown, and the calls a dead client left in its ring are not run.
        if is_closed() {
            return why_closed(stopping, sink);
        }
        match requests.wait(u64::MAX, &settings.wait, &mut needs_attention) {
            Ok(WaitOutcome::Ready) => {}
            // The loop's top decides what woke us.
            Ok(WaitOutcome::Closed | WaitOutcome::TimedOut) => continue,
            Err(err) => return End::Corrupt(err.to_string()),
        }
        let record = match requests.pop() {
            Ok(record) => record,
            Err(PopError::Empty) => continue,
            Err(PopError::Corrupt(corrupt)) => return End::Corrupt(corrupt.to_string()),
        };
        // The peer may rewrite the slot at any time, so every decision below is made on the
        // copy, never on the ring; and the record is consumed before the dispatcher runs
        // anything, freeing its room for the client's next call.
        let len = record.len();
        record.copy_prefix(&mut head);
        let frame: &[u8] = if len <= head.len() {
            record.consume();
            &head[..len]
        } else if let Some(kept) = strip_expired_payload(&mut head, len, settings.max_frame_bytes) {
            record.consume();
            &head[..kept]
        } else {
            large.clear();
            record.append_to(&mut large);
            record.consume();
            &large
        };
        // `large` keeps its capacity: at most one ring record (half the ring) per connection.
        if let Err(err) = session.submit(frame) {
            return End::Corrupt(err.to_string());
        }
    }
}

/// Why `is_closed` said so: the worker stops, the sink broke, or else the client is gone.
fn why_closed(stopping: &AtomicBool, sink: &RingSink) -> End {
    // Relaxed: as in `serve`'s `is_closed`.
    if stopping.load(Ordering::Relaxed) {
        End::Stopping
    } else if sink.is_broken() {
        End::RepliesBroken
    } else {
        End::PeerGone
    }
}

/// For a call whose deadline has already passed (read from the copied header): clears the
/// payload length in `head` and returns how many bytes of it form a frame without payload,
/// so the dispatcher answers Timeout, with its usual checks and metrics, without the payload
/// ever leaving shared memory. The dispatcher looks at nothing but the header and entry name
/// of a call that arrives past its deadline. `None` (copy the whole frame and let the
/// dispatcher judge it) for anything else, including frames whose lengths disagree or exceed
/// the limit, so errors are reported exactly as for any other frame.
fn strip_expired_payload(
    head: &mut [u8; HEADER_LEN + MAX_ENTRY_LEN],
    record_len: usize,
    max_frame_bytes: usize,
) -> Option<usize> {
    let (_, deadline_ns) = frame::peek_deadline(head)?;
    let is_call = head[KIND_OFFSET] == Kind::Call as u8;
    if !is_call || deadline_ns == 0 || !clock::until(deadline_ns).is_zero() {
        return None;
    }
    if record_len > max_frame_bytes || frame::declared_len(head).ok()? != record_len as u64 {
        return None;
    }
    let entry_len = usize::from(u16::from_le_bytes([
        head[ENTRY_LEN_OFFSET],
        head[ENTRY_LEN_OFFSET + 1],
    ]));
    if entry_len > MAX_ENTRY_LEN {
        return None;
    }
    head[PAYLOAD_LEN_OFFSET..PAYLOAD_LEN_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
    Some(HEADER_LEN + entry_len)
}

/// Replies into a response ring. Compute threads, the timer task and the connection thread
/// all reply, so the producer sits behind a mutex; and since a reply is sent with its
/// session's table locked, sending never waits: a reply that finds the ring full goes to the
/// outbox, which the connection thread flushes as the client makes room.
struct RingSink {
    /// `None` once the connection ended or broke: replies are dropped, and the sink no
    /// longer holds the mapping, even while a call that will reply into it still runs.
    endpoints: Mutex<Option<Endpoints>>,
    /// Set when the outbox holds replies the connection thread has yet to flush.
    pending: AtomicBool,
    /// Set when the response ring stayed full past the grace period, or broke.
    broken: AtomicBool,
}

/// What the sink writes to, and the state it closes when it breaks (to wake the connection
/// thread); both keep the segment mapped.
struct Endpoints {
    producer: Producer,
    state: Arc<SegmentState>,
    /// Encoded replies waiting for room, oldest first. Replies go out in the order they
    /// were decided: once one waits here, every later one does too. Bounded by the calls a
    /// connection can have in flight (each replies once), plus one pong: the connection
    /// thread flushes before it reads the next request.
    outbox: VecDeque<Vec<u8>>,
}

/// What [`RingSink::flush`] achieved.
enum Flushed {
    /// The outbox is empty.
    All,
    /// The client left the ring full past the grace period, or the ring broke: the sink is
    /// broken (and already logged why).
    GaveUp,
}

impl RingSink {
    fn new(producer: Producer, state: Arc<SegmentState>) -> Self {
        Self {
            endpoints: Mutex::new(Some(Endpoints {
                producer,
                state,
                outbox: VecDeque::new(),
            })),
            pending: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        }
    }

    fn is_broken(&self) -> bool {
        // Relaxed: a flag; the connection thread acts on it, nothing is published through it.
        self.broken.load(Ordering::Relaxed)
    }

    fn has_pending(&self) -> bool {
        // Acquire: pairs with the Release in `send_reply`; the outbox itself is read under
        // the lock, so this only decides whether to take it.
        self.pending.load(Ordering::Acquire)
    }

    /// Drops the producer and state, and with them this sink's hold on the segment.
    fn close(&self) {
        self.endpoints.lock().take();
    }

    fn give_up(&self, endpoints: &mut Option<Endpoints>, why: &str) {
        log::warn!("closing a shared-memory connection: {why}");
        // Relaxed: see `is_broken`; closing the state below wakes the connection thread,
        // which then reads the flag.
        self.broken.store(true, Ordering::Relaxed);
        if let Some(endpoints) = endpoints.take() {
            endpoints.state.close();
        }
    }

    /// Writes the outbox into the ring, waiting for room as long as the client keeps
    /// reading: up to [`RESPONSE_RING_GRACE`] without progress. Only the connection thread
    /// calls it; replies decided meanwhile join the outbox and are flushed too.
    fn flush(&self) -> Flushed {
        let mut full_since = None;
        loop {
            {
                let mut guard = self.endpoints.lock();
                let Some(endpoints) = guard.as_mut() else {
                    return Flushed::All;
                };
                while let Some(frame) = endpoints.outbox.front() {
                    match endpoints.producer.reserve(frame.len()) {
                        Ok(mut slot) => {
                            slot.write(frame);
                            slot.commit();
                            endpoints.outbox.pop_front();
                            full_since = None;
                        }
                        Err(PushError::Full) => break,
                        Err(err) => {
                            self.give_up(&mut guard, &err.to_string());
                            return Flushed::GaveUp;
                        }
                    }
                }
                if endpoints.outbox.is_empty() {
                    // Relaxed: cleared under the lock that every push to the outbox holds.
                    self.pending.store(false, Ordering::Relaxed);
                    return Flushed::All;
                }
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RESPONSE_RING_GRACE {
                    let why = format!(
                        "the client left its response ring full for {RESPONSE_RING_GRACE:?}"
                    );
                    self.give_up(&mut guard, &why);
                    return Flushed::GaveUp;
                }
            }
            // Not holding the lock: other threads' replies join the outbox meanwhile.
            std::thread::sleep(RESPONSE_RING_RETRY);
        }
    }
}

impl ReplySink for RingSink {
    fn send_reply(&self, frame: &Frame<'_>) {
        let mut guard = self.endpoints.lock();
        let Some(endpoints) = guard.as_mut() else {
            return;
        };
        if endpoints.outbox.is_empty() {
            let mut header = [0u8; HEADER_LEN];
            frame.write_header(&mut header);
            match endpoints.producer.reserve(frame.encoded_len()) {
                Ok(mut slot) => {
                    slot.write(&header);
                    slot.write(frame.entry.as_bytes());
                    slot.write(frame.payload);
                    // Wakes the client only if its sleeping word says it sleeps.
                    slot.commit();
                    return;
                }
                Err(PushError::Full) => {}
                // The frame limit is at most a ring record (config.rs), so a reply the
                // dispatcher lets through always fits; this only guards that invariant.
                Err(PushError::TooLarge { len, max }) => {
                    log::error!("a reply of {len} bytes exceeds the ring's {max}; dropped");
                    return;
                }
                Err(PushError::Corrupt(corrupt)) => {
                    return self.give_up(&mut guard, &corrupt.to_string());
                }
            }
        }
        endpoints.outbox.push_back(frame.encode_to_vec());
        // Release: see `has_pending`. Then the wake: the connection thread re-checks
        // `has_pending` after announcing its sleep, so it either sees the flag or is woken.
        self.pending.store(true, Ordering::Release);
        endpoints.state.wake_request_consumer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use molt_ipc_ring::frame::Codec;

    fn head_of(bytes: &[u8]) -> [u8; HEADER_LEN + MAX_ENTRY_LEN] {
        let mut head = [0u8; HEADER_LEN + MAX_ENTRY_LEN];
        let n = bytes.len().min(head.len());
        head[..n].copy_from_slice(&bytes[..n]);
        head
    }

    #[test]
    fn an_expired_call_keeps_its_header_and_entry_and_loses_its_payload() {
        let bytes = Frame::call(9, "spin", Codec::Json, &[b'x'; 1000])
            .with_deadline_ns(1)
            .encode_to_vec();
        let mut head = head_of(&bytes);
        let kept = strip_expired_payload(&mut head, bytes.len(), 1 << 20).unwrap();
        let frame = frame::decode(&head[..kept], 1 << 20).unwrap();
        assert_eq!(
            (
                frame.request_id,
                frame.entry,
                frame.deadline_ns,
                frame.payload.len()
            ),
            (9, "spin", 1, 0)
        );
    }

    #[test]
    fn a_call_with_time_left_or_no_deadline_is_copied_whole() {
        let later = clock::monotonic_now_ns() + 60_000_000_000;
        for deadline in [0, later] {
            let bytes = Frame::call(1, "spin", Codec::Json, &[0; 1000])
                .with_deadline_ns(deadline)
                .encode_to_vec();
            assert_eq!(
                strip_expired_payload(&mut head_of(&bytes), bytes.len(), 1 << 20),
                None
            );
        }
    }

    #[test]
    fn an_expired_frame_that_breaks_the_rules_is_left_to_the_dispatcher() {
        let bytes = Frame::call(1, "spin", Codec::Json, &[0; 1000])
            .with_deadline_ns(1)
            .encode_to_vec();
        // Too large for the limit, lengths that disagree with the record, not a call.
        assert_eq!(
            strip_expired_payload(&mut head_of(&bytes), bytes.len(), 500),
            None
        );
        assert_eq!(
            strip_expired_payload(&mut head_of(&bytes), bytes.len() + 8, 1 << 20),
            None
        );
        let mut cancel = head_of(&bytes);
        cancel[5] = Kind::Cancel as u8;
        assert_eq!(
            strip_expired_payload(&mut cancel, bytes.len(), 1 << 20),
            None
        );
    }
}
