//! The stdio transport: one client, frames on stdin, replies on stdout, each preceded by its
//! length as a u32 LE.
//!
//! A reader thread reads a frame and hands it to the dispatcher, so inline entries answer
//! without any thread hop on the way in. Replies are appended to one shared buffer; a writer
//! thread writes whatever has gathered in one `write` and sleeps when there is nothing left,
//! so a lone reply goes out at once and a burst goes out in few syscalls. A client that
//! sends without reading stalls the reader once its unread replies pass a limit, instead of
//! letting them pile up in memory.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use molt_ipc_ring::frame::{self, DecodeError, Frame, HEADER_LEN};
use molt_ipc_ring::lock::{Condvar, Mutex, MutexGuard};

use super::Ended;
use crate::dispatcher::{Dispatcher, ReplySink, Session};

/// Unread replies (bytes) beyond which the reader stops reading calls until the writer has
/// caught up: the larger of this and `--max-frame-bytes`.
const MIN_PENDING_REPLY_BYTES: usize = 4 << 20;

/// Size of the reader's buffer: many small frames per `read`.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// The stdio transport of one worker process. Shared between the reader (the thread calling
/// [`Stdio::run`]) and whoever handles SIGTERM ([`Stdio::finish`]).
pub struct Stdio {
    session: Session,
    replies: Arc<ReplyBuffer>,
    /// Taken by the first `finish`; held while joining, so a second `finish` returns only
    /// once every reply is written.
    writer: Mutex<Option<JoinHandle<()>>>,
    max_frame_bytes: usize,
}

impl Stdio {
    /// Opens the session and starts the writer thread.
    pub fn start(dispatcher: &Arc<Dispatcher>, max_frame_bytes: usize) -> std::io::Result<Self> {
        // Our own handles on fds 0 and 1: std's Stdout is line-buffered, which would split
        // binary frames at every 0x0a byte, and Stdin adds a second buffer of its own.
        let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        let replies = Arc::new(ReplyBuffer::new(
            max_frame_bytes.max(MIN_PENDING_REPLY_BYTES),
        ));
        let writer = {
            let replies = Arc::clone(&replies);
            std::thread::Builder::new()
                .name("molt-stdio-writer".into())
                .spawn(move || replies.write_until_closed(stdout))?
        };
        let sink: Arc<dyn ReplySink> = Arc::clone(&replies) as Arc<dyn ReplySink>;
        Ok(Self {
            session: dispatcher.connect(sink),
            replies,
            writer: Mutex::new(Some(writer)),
            max_frame_bytes,
        })
    }

    /// Reads frames until EOF or a broken stream, answers what is in flight, and flushes every
    /// reply before returning.
    pub fn run(&self) -> std::io::Result<Ended> {
        let stdin = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let input = BufReader::with_capacity(READ_BUFFER_BYTES, stdin);
        let ended = match read_frames(input, &self.session, &self.replies, self.max_frame_bytes) {
            Ok(()) => {
                log::debug!("stdin closed; cancelling calls in flight");
                Ended::Cleanly
            }
            Err(err) => {
                log::error!("broken stream on stdin: {err}");
                self.session.fail_stream(&err.to_string());
                Ended::Broken
            }
        };
        self.finish();
        Ok(ended)
    }

    /// Answers every call in flight Cancelled, writes every reply gathered so far and stops
    /// the writer. Idempotent.
    pub fn finish(&self) {
        self.session.shutdown();
        self.replies.close();
        let mut writer = self.writer.lock();
        if let Some(writer) = writer.take() {
            // The writer only ends by returning; a write error was already logged there.
            let _ = writer.join();
        }
    }
}

/// Why the input stream can no longer be read.
enum StreamError {
    /// The frame itself is malformed.
    Frame(DecodeError),
    /// EOF in the middle of a length prefix or a frame.
    TruncatedAtEof { had: usize, wanted: usize },
    /// Reading stdin failed.
    Io(std::io::Error),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(err) => write!(f, "{err}"),
            Self::TruncatedAtEof { had, wanted } => {
                write!(f, "truncated frame: EOF after {had} of {wanted} bytes")
            }
            Self::Io(err) => write!(f, "cannot read stdin: {err}"),
        }
    }
}

/// Reads length-prefixed frames and submits them until a clean EOF (between frames).
fn read_frames(
    mut input: impl Read,
    session: &Session,
    replies: &ReplyBuffer,
    max_frame_bytes: usize,
) -> Result<(), StreamError> {
    let mut frame_buf = Vec::new();
    loop {
        let mut prefix = [0u8; 4];
        match read_full(&mut input, &mut prefix)? {
            0 => return Ok(()),
            4 => {}
            had => return Err(StreamError::TruncatedAtEof { had, wanted: 4 }),
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > max_frame_bytes {
            return Err(StreamError::Frame(DecodeError::TooLarge {
                len,
                max: max_frame_bytes,
            }));
        }
        frame_buf.resize(len, 0);
        // Check the header before waiting for the rest, so garbage is reported at once
        // instead of waiting for bytes that a confused peer will never send.
        let head = len.min(HEADER_LEN);
        read_exactly(&mut input, &mut frame_buf[..head])?;
        if len >= HEADER_LEN {
            let declared =
                frame::declared_len(&frame_buf[..HEADER_LEN]).map_err(StreamError::Frame)?;
            if declared != len as u64 {
                return Err(StreamError::Frame(DecodeError::LengthMismatch {
                    declared,
                    actual: len,
                }));
            }
        }
        read_exactly(&mut input, &mut frame_buf[head..])?;
        replies.wait_for_room();
        session.submit(&frame_buf).map_err(StreamError::Frame)?;
    }
}

/// Fills `buf` unless EOF comes first; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(StreamError::Io(err)),
        }
    }
    Ok(filled)
}

fn read_exactly(input: &mut impl Read, buf: &mut [u8]) -> Result<(), StreamError> {
    let had = read_full(input, buf)?;
    if had < buf.len() {
        return Err(StreamError::TruncatedAtEof {
            had,
            wanted: buf.len(),
        });
    }
    Ok(())
}

/// Replies waiting for the writer thread, already length-prefixed and encoded.
struct ReplyBuffer {
    state: Mutex<Pending>,
    /// Signalled when replies arrive in an empty buffer, and on close.
    ready: Condvar,
    /// Signalled when the writer takes a batch, and on close.
    drained: Condvar,
    /// See [`MIN_PENDING_REPLY_BYTES`].
    pending_limit: usize,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// No more replies will be accepted; the writer drains `bytes` and ends.
    closed: bool,
}

impl ReplyBuffer {
    fn new(pending_limit: usize) -> Self {
        Self {
            state: Mutex::new(Pending::default()),
            ready: Condvar::new(),
            drained: Condvar::new(),
            pending_limit,
        }
    }

    /// Waits while more than the limit of replies is unread: the client is not reading.
    fn wait_for_room(&self) {
        let mut pending = self.lock();
        if pending.bytes.len() >= self.pending_limit && !pending.closed {
            log::debug!("the client is not reading its replies; pausing input");
        }
        while pending.bytes.len() >= self.pending_limit && !pending.closed {
            pending = self.drained.wait(pending);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state.lock()
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.drained.notify_all();
    }

    fn write_until_closed(&self, mut out: File) {
        let mut batch = Vec::new();
        loop {
            {
                let mut pending = self.lock();
                while pending.bytes.is_empty() && !pending.closed {
                    pending = self.ready.wait(pending);
                }
                if pending.bytes.is_empty() {
                    return;
                }
                // Swap, so the next replies gather in the spare buffer while this batch is written.
                std::mem::swap(&mut pending.bytes, &mut batch);
            }
            // The reader waits only on a buffer at the limit, which is what was just taken;
            // checking spares the common case a futex wake per batch.
            if batch.len() >= self.pending_limit {
                self.drained.notify_all();
            }
            if let Err(err) = out.write_all(&batch) {
                log::error!("cannot write replies to stdout: {err}");
                // The reader still sees EOF and ends the run; until then replies are dropped.
                let mut pending = self.lock();
                pending.closed = true;
                pending.bytes = Vec::new();
                drop(pending);
                self.drained.notify_all();
                return;
            }
            batch.clear();
        }
    }
}

impl ReplySink for ReplyBuffer {
    fn send_reply(&self, frame: &Frame<'_>) {
        let mut pending = self.lock();
        if pending.closed {
            return;
        }
        let was_empty = pending.bytes.is_empty();
        // The dispatcher sends no reply over `--max-frame-bytes`, itself at most u32::MAX.
        let len = frame.encoded_len() as u32;
        pending.bytes.extend_from_slice(&len.to_le_bytes());
        frame.encode_into(&mut pending.bytes);
        drop(pending);
        if was_empty {
            self.ready.notify_one();
        }
    }
}
