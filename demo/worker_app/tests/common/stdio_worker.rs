//! The real `molt_worker_test` binary on stdio, driven through real pipes as a client would.
// Shared by several test binaries, each of which uses a part.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;

use molt_ipc_ring::frame::{Codec, Frame, Kind};

use super::process::{repo_file, wait_for_exit, HANG_BOUND};
use super::reply::Reply;
use super::stdio_frames::{read_frame, write_frame};

/// A worker on stdio, its replies read by a thread of their own.
pub struct Worker {
    pub child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Reply>,
    stdout_reader: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(manifest: &PathBuf, extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_molt_worker_test"))
            .arg("--stdio")
            .arg("--exports")
            .arg(manifest)
            .args(extra_args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start molt_worker");
        let mut stdout = child.stdout.take().unwrap();
        let (sender, replies) = mpsc::channel();
        let stdout_reader = std::thread::spawn(move || {
            while let Ok(bytes) = read_frame(&mut stdout) {
                if sender.send(Reply::decode(&bytes)).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            replies,
            stdout_reader: Some(stdout_reader),
        }
    }

    pub fn test_manifest(extra_args: &[&str]) -> Self {
        Self::start(&repo_file("molt_exports.test.json"), extra_args)
    }

    pub fn send(&mut self, frame: &Frame<'_>) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        write_frame(stdin, frame).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn call(&mut self, request_id: u64, entry: &str, codec: Codec, payload: &[u8]) {
        self.send(&Frame::call(request_id, entry, codec, payload));
    }

    pub fn recv(&self) -> Reply {
        self.replies
            .recv_timeout(HANG_BOUND)
            .expect("a reply before the hang bound")
    }

    /// Replies until the pong for a ping sent now: the worker handles frames in order, so
    /// every reply it decided before reading the ping comes first.
    pub fn replies_until_pong(&mut self, ping_id: u64) -> Vec<Reply> {
        self.send(&Frame::ping(ping_id));
        let mut replies = Vec::new();
        loop {
            let reply = self.recv();
            if reply.kind == Kind::Pong && reply.request_id == ping_id {
                return replies;
            }
            replies.push(reply);
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Closes stdin, waits for exit, and returns the exit status, every reply not yet read,
    /// and stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<Reply>, String) {
        self.close_stdin();
        let status = wait_for_exit(&mut self.child);
        self.stdout_reader.take().unwrap().join().unwrap();
        let rest = self.replies.try_iter().collect();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, rest, stderr)
    }
}
