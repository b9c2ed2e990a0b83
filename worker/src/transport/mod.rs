//! Transports: how frames reach the dispatcher and replies reach the peer. A transport knows
//! framing and connection lifetime; what a frame means is the dispatcher's business.

pub mod shm;
pub mod stdio;

/// How a transport's run ended, which decides the process's exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed its end, or SIGTERM arrived; in-flight calls were answered. Exit 0.
    Cleanly,
    /// The stream broke (reported to the peer and on stderr). Exit non-zero.
    Broken,
}
