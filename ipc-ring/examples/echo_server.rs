//! A minimal shared-memory echo server: the other half of the C ABI tests and of the
//! benchmarks, and a reference for wiring `molt-ipc-ring` into a server.
//!
//! `cargo run --release -p molt-ipc-ring --example echo_server -- /tmp/dir/echo.sock [spin_us]`
//!
//! Listens on the unix socket, hands every connection its own segment, and answers each Call
//! with an Ok Reply carrying the same payload and codec (Ping gets Pong). It exits when its
//! standard input reaches end of file, so it cannot outlive the process that started it.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use molt_ipc_ring::frame::{self, Frame, Kind, Status};
use molt_ipc_ring::handshake;
use molt_ipc_ring::platform::peer::peer_hung_up;
use molt_ipc_ring::ring::PushError;
use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: echo_server SOCKET_PATH [SPIN_MICROS]");
        std::process::exit(2);
    };
    let spin_us = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(WaitConfig::DEFAULT_SPIN.as_micros() as u64);
    let wait = WaitConfig {
        spin: Duration::from_micros(spin_us),
        ..WaitConfig::default()
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| {
        eprintln!("echo_server: cannot listen: {e}");
        std::process::exit(1);
    });
    let socket_path = path.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        let _ = std::fs::remove_file(&socket_path);
        std::process::exit(0);
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream, wait));
    }
}

fn serve(stream: UnixStream, wait: WaitConfig) {
    let mut segment = match handshake::worker_side(&stream, &SegmentConfig::default()) {
        Ok(segment) => segment,
        Err(e) => {
            eprintln!("echo_server: handshake: {e}");
            return;
        }
    };
    let mut request = Vec::new();
    loop {
        let state = &segment.state;
        let closed = || state.is_closed() || peer_hung_up(&stream).unwrap_or(true);
        match segment.requests.wait(u64::MAX, &wait, closed) {
            Ok(WaitOutcome::Ready) => {}
            Ok(WaitOutcome::TimedOut | WaitOutcome::Closed) => break,
            Err(e) => {
                eprintln!("echo_server: {e}");
                break;
            }
        }
        request.clear();
        match segment.requests.pop() {
            Ok(record) => {
                record.append_to(&mut request);
                record.consume();
            }
            Err(e) => {
                eprintln!("echo_server: {e}");
                break;
            }
        }
        if !answer(&request, &mut segment, &stream) {
            break;
        }
    }
    segment.state.close();
}

/// Writes the reply to one request straight into the response ring; false ends the connection.
fn answer(request: &[u8], segment: &mut WorkerSide, stream: &UnixStream) -> bool {
    let Ok(call) = frame::decode(request, frame::DEFAULT_MAX_FRAME_BYTES) else {
        return false;
    };
    let reply = match call.kind {
        Kind::Call => Frame::reply(call.request_id, Status::Ok, call.codec, call.payload),
        Kind::Ping => Frame::pong(call.request_id),
        _ => return true,
    };
    let mut header = [0u8; frame::HEADER_LEN];
    reply.write_header(&mut header);
    loop {
        match segment.responses.reserve(reply.encoded_len()) {
            Ok(mut slot) => {
                slot.write(&header);
                slot.write(reply.payload);
                slot.commit();
                return true;
            }
            // The client reads its replies one by one; a full response ring only lasts until
            // it catches up, unless it is gone.
            Err(PushError::Full)
                if !segment.state.is_closed() && !peer_hung_up(stream).unwrap_or(true) =>
            {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(_) => return false,
        }
    }
}
