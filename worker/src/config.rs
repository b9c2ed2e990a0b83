//! Command-line configuration. A small hand parser: the worker has few options and every one
//! of them is a flag with at most one value, so a parser crate would be most of the binary's
//! dependency tree for little gain.

use std::fmt;
use std::path::PathBuf;

use molt_ipc_ring::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: molt_worker --stdio --exports PATH [options]

transport (exactly one):
  --stdio                   frames on stdin/stdout, each preceded by a u32 LE length

options:
  --exports PATH            exports manifest (JSON): which entries are enabled
  --max-queue N             admission queue length; a full queue answers Busy (default 64)
  --max-frame-bytes N       largest frame accepted, header included (default 16777216)
  --compute-threads N       threads running non-inline entries (default: number of cores)
  -h, --help                this text

Logs go to stderr; RUST_LOG sets the level (error, warn, info, debug, trace; default info).";

/// How clients reach the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One client on stdin/stdout.
    Stdio,
}

/// Everything the command line sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How clients reach the worker.
    pub transport: Transport,
    /// Path of the exports manifest.
    pub exports: PathBuf,
    /// Admission queue length (calls waiting for a compute thread).
    pub max_queue: usize,
    /// Largest frame accepted, header included.
    pub max_frame_bytes: usize,
    /// Threads running non-inline entries.
    pub compute_threads: usize,
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the worker.
    Run(Config),
    /// Print usage and exit 0.
    Help,
}

/// A usage error, shown as one line followed by the usage text.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage_error(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let mut transport = None;
    let mut exports = None;
    let mut max_queue = 64;
    let mut max_frame_bytes = DEFAULT_MAX_FRAME_BYTES;
    let mut compute_threads = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage_error(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--stdio" => set_transport(&mut transport, Transport::Stdio)?,
            "--exports" => exports = Some(PathBuf::from(value("--exports")?)),
            "--max-queue" => max_queue = positive("--max-queue", &value("--max-queue")?)?,
            "--max-frame-bytes" => {
                max_frame_bytes = positive("--max-frame-bytes", &value("--max-frame-bytes")?)?;
                if max_frame_bytes < HEADER_LEN || max_frame_bytes > u32::MAX as usize {
                    return Err(usage_error(format!(
                        "--max-frame-bytes must be between {HEADER_LEN} and {}",
                        u32::MAX
                    )));
                }
            }
            "--compute-threads" => {
                compute_threads = Some(positive("--compute-threads", &value("--compute-threads")?)?)
            }
            other => return Err(usage_error(format!("unknown argument: {other}"))),
        }
    }
    let transport = transport.ok_or_else(|| usage_error("choose a transport: --stdio"))?;
    let exports = exports.ok_or_else(|| usage_error("--exports PATH is required"))?;
    let compute_threads = compute_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()));
    Ok(Command::Run(Config {
        transport,
        exports,
        max_queue,
        max_frame_bytes,
        compute_threads,
    }))
}

fn set_transport(slot: &mut Option<Transport>, transport: Transport) -> Result<(), UsageError> {
    if slot.replace(transport).is_some() {
        return Err(usage_error("choose exactly one transport"));
    }
    Ok(())
}

fn positive(name: &str, value: &str) -> Result<usize, UsageError> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage_error(format!(
            "{name} takes a positive integer, got {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_apply_when_only_the_required_flags_are_given() {
        let Command::Run(config) = parse(args("--stdio --exports m.json")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(config.exports, PathBuf::from("m.json"));
        assert_eq!(config.max_queue, 64);
        assert_eq!(config.max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
        assert!(config.compute_threads >= 1);
    }

    #[test]
    fn values_may_follow_an_equals_sign_or_a_space() {
        let Command::Run(config) = parse(args(
            "--stdio --exports=m.json --max-queue 3 --max-frame-bytes=4096 --compute-threads 2",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(
            (
                config.max_queue,
                config.max_frame_bytes,
                config.compute_threads
            ),
            (3, 4096, 2)
        );
    }

    #[test]
    fn a_transport_is_required() {
        assert!(parse(args("--exports m.json"))
            .unwrap_err()
            .to_string()
            .contains("transport"));
    }

    #[test]
    fn zero_and_garbage_numbers_are_refused() {
        assert!(parse(args("--stdio --exports m --max-queue 0")).is_err());
        assert!(parse(args("--stdio --exports m --compute-threads x")).is_err());
        assert!(parse(args("--stdio --exports m --max-frame-bytes 10")).is_err());
    }

    #[test]
    fn unknown_arguments_are_named() {
        assert_eq!(
            parse(args("--stdio --bogus")).unwrap_err().to_string(),
            "unknown argument: --bogus"
        );
    }
}
