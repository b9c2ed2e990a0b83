//! Command-line configuration. A small hand parser: the worker has few options and every one
//! of them is a flag with at most one value, so a parser crate would be most of the binary's
//! dependency tree for little gain.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use molt_ipc_ring::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};

use crate::metrics::MetricsConfig;

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

metrics (docs/operations.md):
  --metrics-dir DIR         append HdrHistogram interval logs (.hlog) to a file in DIR
  --metrics-interval SECS   seconds between logged intervals (default 10); SIGUSR1 logs one now
  --metrics-listen ADDR     serve GET /metrics (Prometheus text) on a loopback ADDR:PORT
  --no-metrics              record nothing (to measure what recording costs)
  -h, --help                this text

Logs go to stderr; RUST_LOG sets the level (error, warn, info, debug, trace; default info).";

/// How clients reach the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One client on stdin/stdout.
    Stdio,
}

/// Everything the command line sets.
#[derive(Clone, Debug, PartialEq)]
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
    /// What is recorded and where it is logged.
    pub metrics: MetricsConfig,
    /// Loopback address serving `GET /metrics`, if any.
    pub metrics_listen: Option<SocketAddr>,
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
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
    let mut metrics = MetricsConfig {
        record: true,
        dir: None,
        interval: Duration::from_secs(10),
    };
    let mut metrics_listen = None;
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
            "--metrics-dir" => metrics.dir = Some(PathBuf::from(value("--metrics-dir")?)),
            "--metrics-interval" => metrics.interval = interval(&value("--metrics-interval")?)?,
            "--metrics-listen" => metrics_listen = Some(loopback(&value("--metrics-listen")?)?),
            "--no-metrics" => metrics.record = false,
            other => return Err(usage_error(format!("unknown argument: {other}"))),
        }
    }
    let transport = transport.ok_or_else(|| usage_error("choose a transport: --stdio"))?;
    let exports = exports.ok_or_else(|| usage_error("--exports PATH is required"))?;
    let compute_threads = compute_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()));
    if !metrics.record && (metrics.dir.is_some() || metrics_listen.is_some()) {
        return Err(usage_error(
            "--no-metrics records nothing to log or serve: drop --metrics-dir and --metrics-listen",
        ));
    }
    Ok(Command::Run(Config {
        transport,
        exports,
        max_queue,
        max_frame_bytes,
        compute_threads,
        metrics,
        metrics_listen,
    }))
}

/// A logging interval: seconds, fractions allowed, from 0.1 s to a day.
fn interval(value: &str) -> Result<Duration, UsageError> {
    match value.parse::<f64>() {
        Ok(secs) if (0.1..=86_400.0).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(usage_error(format!(
            "--metrics-interval takes seconds between 0.1 and 86400, got {value:?}"
        ))),
    }
}

/// A loopback socket address: the endpoint has no authentication, so it never faces a network.
fn loopback(value: &str) -> Result<SocketAddr, UsageError> {
    let addr: SocketAddr = value.parse().map_err(|_| {
        usage_error(format!("--metrics-listen takes IP:PORT, got {value:?}"))
    })?;
    if !addr.ip().is_loopback() {
        return Err(usage_error(format!(
            "--metrics-listen must be a loopback address (127.0.0.1 or [::1]), got {addr}"
        )));
    }
    Ok(addr)
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
    fn metrics_default_to_recording_without_a_log_or_a_port() {
        let Command::Run(config) = parse(args("--stdio --exports m.json")).unwrap() else {
            panic!("not run")
        };
        assert!(config.metrics.record);
        assert_eq!(config.metrics.dir, None);
        assert_eq!(config.metrics.interval, Duration::from_secs(10));
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn metrics_flags_parse() {
        let Command::Run(config) = parse(args(
            "--stdio --exports m --metrics-dir /tmp/m --metrics-interval 0.5 --metrics-listen 127.0.0.1:9464",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.metrics.dir, Some(PathBuf::from("/tmp/m")));
        assert_eq!(config.metrics.interval, Duration::from_millis(500));
        assert_eq!(config.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(parse(args("--stdio --exports m --metrics-listen [::1]:0")).is_ok());
    }

    #[test]
    fn a_non_loopback_metrics_address_is_refused() {
        for addr in ["0.0.0.0:9464", "192.168.1.2:9464", "[::]:9464", "localhost:9464"] {
            let line = format!("--stdio --exports m --metrics-listen {addr}");
            assert!(parse(args(&line)).is_err(), "{addr}");
        }
    }

    #[test]
    fn bad_metrics_intervals_are_refused() {
        for secs in ["0", "0.01", "-1", "x", "1e9"] {
            let line = format!("--stdio --exports m --metrics-interval {secs}");
            assert!(parse(args(&line)).is_err(), "{secs}");
        }
    }

    #[test]
    fn no_metrics_excludes_logging_and_serving_them() {
        assert!(parse(args("--stdio --exports m --no-metrics")).is_ok());
        assert!(parse(args("--stdio --exports m --no-metrics --metrics-dir d")).is_err());
        assert!(parse(args("--stdio --exports m --no-metrics --metrics-listen 127.0.0.1:1")).is_err());
    }

    #[test]
    fn unknown_arguments_are_named() {
        assert_eq!(
            parse(args("--stdio --bogus")).unwrap_err().to_string(),
            "unknown argument: --bogus"
        );
    }
}
