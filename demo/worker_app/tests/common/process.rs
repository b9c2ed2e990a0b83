//! Starting and stopping the real `molt_worker` binary from a test.
// Shared by several test binaries, each of which uses a part.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Generous bound that only a hung worker exceeds.
pub const HANG_BOUND: Duration = Duration::from_secs(20);

/// A file at the root of the repository (the exports manifests live there).
pub fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

/// Waits for `child` to exit; kills it and fails the test after the hang bound.
pub fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > HANG_BOUND {
            child.kill().unwrap();
            panic!("molt_worker did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to `child`.
pub fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a signal number on our own child's pid, not yet reaped (we own the
    // Child); it touches no memory of ours.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}
