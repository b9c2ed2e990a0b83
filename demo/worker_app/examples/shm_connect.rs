//! Connects to a worker's shared-memory socket as a client would, reports the handshake's
//! outcome on one line, then holds the connection until standard input closes (or the process
//! is killed). Used by `tests/shm.rs` to connect from another process: as another user
//! (`setpriv`), or as a client to kill with SIGKILL.
//!
//! `cargo run -p molt-demo-worker --example shm_connect -- /run/molt/worker.sock`
//!
//! Prints `attached` and exits 0 when stdin closes, or prints `refused: REASON` and exits 1.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use molt_ipc_ring::handshake;

fn main() {
    let Some(path) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: shm_connect SOCKET_PATH");
        std::process::exit(2);
    };
    match handshake::connect(&path, Duration::from_secs(5)) {
        Ok(connection) => {
            println!("attached");
            let mut rest = Vec::new();
            // Holds the socket and the mapping until stdin closes.
            let _ = std::io::stdin().read_to_end(&mut rest);
            drop(connection);
        }
        Err(err) => {
            println!("refused: {err}");
            std::process::exit(1);
        }
    }
}
