//! Command-line configuration. A small hand parser: the worker has few options and every one
//! of them is a flag with at most one value, so a parser crate would be most of the binary's
//! dependency tree for little gain.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use molt_ipc_ring::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};
use molt_ipc_ring::ring;
use molt_ipc_ring::segment::SegmentConfig;
use molt_ipc_ring::wait::WaitConfig;

use crate::logging::LogFormat;
use crate::metrics::MetricsConfig;

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: molt_worker (--stdio | --socket PATH | --stdio --socket PATH) [--exports PATH] [options]
       molt_worker --print-exports [--exports PATH]

transports (one or both):
  --stdio                   frames on stdin/stdout, each preceded by a u32 LE length
  --socket PATH             shared memory: clients connect to this unix socket and get a
                            segment each; the directory is created 0700 if missing
  --ring-bytes N            data area of each ring, a power of two (default 1048576); the
                            largest frame a ring carries is N/2 - 8 bytes
  --spin-us N               microseconds a connection polls its ring before sleeping (default 20)

options:
  --exports PATH            exports manifest (JSON): which entries are enabled; required
                            unless the worker embeds a default one
  --print-exports           print the manifest this worker runs with (after checking it
                            against its entries) and exit
  --max-queue N             admission queue length; a full queue answers Busy (default 64)
  --max-frame-bytes N       largest frame accepted, header included (default 16777216, or
                            what a ring carries with --socket; more than that is refused)
  --compute-threads N       threads running sync entries (default: number of cores)
  --async-threads N         threads of the async runtime: async entries, timers (default 1)
  --max-async N             async calls in flight at once; one more is answered Busy
                            (default 1024)

metrics (docs/operations.md):
  --metrics-dir DIR         append HdrHistogram interval logs (.hlog) to a file in DIR
  --metrics-interval SECS   seconds between logged intervals (default 10); SIGUSR1 logs one now
  --metrics-listen ADDR     serve GET /metrics (Prometheus text) on a loopback ADDR:PORT
  --no-metrics              record nothing (to measure what recording costs)
  --log-format FORMAT       text (default) or json: one JSON object a line
  -h, --help                this text

Logs go to stderr; RUST_LOG sets the level (error, warn, info, debug, trace; default info).";

/// How clients reach the worker: stdio, shared memory, or both at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One client on stdin/stdout.
    Stdio,
    /// Clients connect to a unix socket and get a shared-memory segment each.
    Socket(SocketConfig),
    /// Both: the stdio client and any number of socket clients, one dispatcher.
    StdioAndSocket(SocketConfig),
}

/// Settings of the shared-memory transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Where the control socket listens.
    pub path: PathBuf,
    /// Data area of each ring, both ways; a valid ring capacity.
    pub ring_bytes: usize,
    /// How long a connection thread polls its empty request ring before sleeping.
    pub spin: Duration,
}

/// Everything the command line sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How clients reach the worker.
    pub transport: Transport,
    /// Path of the exports manifest; `None` runs with the one the app embeds.
    pub exports: Option<PathBuf>,
    /// Admission queue length (calls waiting for a compute thread).
    pub max_queue: usize,
    /// Largest frame accepted, header included.
    pub max_frame_bytes: usize,
    /// Threads running sync entries.
    pub compute_threads: usize,
    /// Threads of the tokio runtime (async entries, timers, signals).
    pub async_threads: usize,
    /// Async calls in flight at once, beyond which calls are answered Busy.
    pub max_async: usize,
    /// How log lines are written.
    pub log_format: LogFormat,
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
    /// Print the effective exports manifest and exit 0.
    PrintExports {
        /// The manifest given with `--exports`, else the embedded one.
        exports: Option<PathBuf>,
        /// How log lines are written.
        log_format: LogFormat,
    },
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
    let mut stdio = false;
    let mut socket = None;
    let mut ring_bytes = SegmentConfig::DEFAULT_RING_CAPACITY;
    let mut spin = WaitConfig::DEFAULT_SPIN;
    let mut exports = None;
    let mut max_queue = 64;
    let mut max_frame_bytes = None;
    let mut compute_threads = None;
    let mut async_threads = 1;
    let mut max_async = 1024;
    let mut log_format = LogFormat::Text;
    let mut print_exports = false;
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
            "--stdio" => stdio = true,
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--ring-bytes" => {
                ring_bytes = positive("--ring-bytes", &value("--ring-bytes")?)?;
                if !ring::is_valid_capacity(ring_bytes) {
                    return Err(usage_error(format!(
                        "--ring-bytes must be a power of two between {} and {}, got {ring_bytes}",
                        ring::MIN_CAPACITY,
                        ring::MAX_CAPACITY
                    )));
                }
            }
            "--spin-us" => spin = spin_window(&value("--spin-us")?)?,
            "--exports" => exports = Some(PathBuf::from(value("--exports")?)),
            "--max-queue" => max_queue = positive("--max-queue", &value("--max-queue")?)?,
            "--max-frame-bytes" => {
                let bytes = positive("--max-frame-bytes", &value("--max-frame-bytes")?)?;
                if bytes < HEADER_LEN || bytes > u32::MAX as usize {
                    return Err(usage_error(format!(
                        "--max-frame-bytes must be between {HEADER_LEN} and {}",
                        u32::MAX
                    )));
                }
                max_frame_bytes = Some(bytes);
            }
            "--compute-threads" => {
                compute_threads = Some(positive("--compute-threads", &value("--compute-threads")?)?)
            }
            "--async-threads" => {
                async_threads = positive("--async-threads", &value("--async-threads")?)?
            }
            "--max-async" => max_async = positive("--max-async", &value("--max-async")?)?,
            "--log-format" => {
                log_format = LogFormat::parse(&value("--log-format")?)
                    .ok_or_else(|| usage_error("--log-format takes text or json"))?
            }
            "--print-exports" => print_exports = true,
            "--metrics-dir" => metrics.dir = Some(PathBuf::from(value("--metrics-dir")?)),
            "--metrics-interval" => metrics.interval = interval(&value("--metrics-interval")?)?,
            "--metrics-listen" => metrics_listen = Some(loopback(&value("--metrics-listen")?)?),
            "--no-metrics" => metrics.record = false,
            other => return Err(usage_error(format!("unknown argument: {other}"))),
        }
    }
    if print_exports {
        return Ok(Command::PrintExports {
            exports,
            log_format,
        });
    }
    let socket = socket.map(|path| SocketConfig {
        path,
        ring_bytes,
        spin,
    });
    let max_frame_bytes = frame_limit(max_frame_bytes, socket.as_ref())?;
    let transport = match (stdio, socket) {
        (true, None) => Transport::Stdio,
        (false, Some(socket)) => Transport::Socket(socket),
        (true, Some(socket)) => Transport::StdioAndSocket(socket),
        (false, None) => {
            return Err(usage_error(
                "choose a transport: --stdio, --socket PATH or both",
            ))
        }
    };
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
        async_threads,
        max_async,
        log_format,
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
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| usage_error(format!("--metrics-listen takes IP:PORT, got {value:?}")))?;
    if !addr.ip().is_loopback() {
        return Err(usage_error(format!(
            "--metrics-listen must be a loopback address (127.0.0.1 or [::1]), got {addr}"
        )));
    }
    Ok(addr)
}

/// The largest frame the worker accepts: one limit for every transport. A ring record holds
/// one whole frame, so with `--socket` the limit is at most what a ring carries: an explicit
/// larger `--max-frame-bytes` is refused rather than silently lowered, and the default
/// shrinks to fit.
fn frame_limit(
    requested: Option<usize>,
    socket: Option<&SocketConfig>,
) -> Result<usize, UsageError> {
    let Some(socket) = socket else {
        return Ok(requested.unwrap_or(DEFAULT_MAX_FRAME_BYTES));
    };
    let ring_max = ring::max_record_len(socket.ring_bytes);
    if ring_max < HEADER_LEN {
        return Err(usage_error(format!(
            "--ring-bytes {} carries no frame; the smallest frame is {HEADER_LEN} bytes",
            socket.ring_bytes
        )));
    }
    match requested {
        None => Ok(DEFAULT_MAX_FRAME_BYTES.min(ring_max)),
        Some(bytes) if bytes <= ring_max => Ok(bytes),
        Some(bytes) => Err(usage_error(format!(
            "--max-frame-bytes {bytes} exceeds the {ring_max} bytes a ring of --ring-bytes {} \
             carries; raise --ring-bytes",
            socket.ring_bytes
        ))),
    }
}

/// A spin window in whole microseconds; 0 sleeps at once, and more than
/// [`WaitConfig::MAX_SPIN`] would burn a core for nothing on a small machine.
fn spin_window(value: &str) -> Result<Duration, UsageError> {
    match value.parse::<u64>() {
        Ok(micros) if Duration::from_micros(micros) <= WaitConfig::MAX_SPIN => {
            Ok(Duration::from_micros(micros))
        }
        _ => Err(usage_error(format!(
            "--spin-us takes microseconds between 0 and {}, got {value:?}",
            WaitConfig::MAX_SPIN.as_micros()
        ))),
    }
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
        assert_eq!(config.exports, Some(PathBuf::from("m.json")));
        assert_eq!((config.async_threads, config.max_async), (1, 1024));
        assert_eq!(config.log_format, LogFormat::Text);
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
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse(args("--stdio --exports m --metrics-listen [::1]:0")).is_ok());
    }

    #[test]
    fn a_non_loopback_metrics_address_is_refused() {
        for addr in [
            "0.0.0.0:9464",
            "192.168.1.2:9464",
            "[::]:9464",
            "localhost:9464",
        ] {
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
        assert!(parse(args(
            "--stdio --exports m --no-metrics --metrics-listen 127.0.0.1:1"
        ))
        .is_err());
    }

    #[test]
    fn a_socket_alone_or_with_stdio_is_a_transport() {
        let Command::Run(config) = parse(args("--socket /run/m/w.sock --exports m")).unwrap()
        else {
            panic!("not run")
        };
        let socket = SocketConfig {
            path: PathBuf::from("/run/m/w.sock"),
            ring_bytes: SegmentConfig::DEFAULT_RING_CAPACITY,
            spin: WaitConfig::DEFAULT_SPIN,
        };
        assert_eq!(config.transport, Transport::Socket(socket.clone()));
        let Command::Run(config) =
            parse(args("--stdio --exports m --socket /run/m/w.sock")).unwrap()
        else {
            panic!("not run")
        };
        assert_eq!(config.transport, Transport::StdioAndSocket(socket));
    }

    #[test]
    fn with_a_socket_the_default_frame_limit_is_what_a_ring_carries() {
        let Command::Run(config) = parse(args(
            "--socket s --exports m --ring-bytes 65536 --spin-us 0",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.max_frame_bytes, ring::max_record_len(65536));
        let Transport::Socket(socket) = config.transport else {
            panic!("not a socket")
        };
        assert_eq!(socket.spin, Duration::ZERO);
    }

    #[test]
    fn a_frame_limit_beyond_the_ring_is_refused() {
        let err = parse(args(
            "--socket s --exports m --ring-bytes 65536 --max-frame-bytes 65536",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("raise --ring-bytes"), "{err}");
        assert!(parse(args(
            "--socket s --exports m --ring-bytes 65536 --max-frame-bytes 4096"
        ))
        .is_ok());
    }

    #[test]
    fn bad_ring_sizes_and_spin_windows_are_refused() {
        for extra in [
            "--ring-bytes 1000",
            "--ring-bytes 32",
            "--ring-bytes 64",
            "--spin-us 20000",
            "--spin-us x",
        ] {
            let line = format!("--socket s --exports m {extra}");
            assert!(parse(args(&line)).is_err(), "{extra}");
        }
    }

    #[test]
    fn the_usage_text_states_the_default_spin_window() {
        let stated = format!(
            "before sleeping (default {})",
            WaitConfig::DEFAULT_SPIN.as_micros()
        );
        assert!(USAGE.contains(&stated), "{USAGE}");
    }

    #[test]
    fn the_usage_text_states_the_default_ring_size() {
        let stated = format!(
            "a power of two (default {})",
            SegmentConfig::DEFAULT_RING_CAPACITY
        );
        assert!(USAGE.contains(&stated), "{USAGE}");
    }

    #[test]
    fn exports_may_be_left_to_the_embedded_manifest() {
        let Command::Run(config) = parse(args("--stdio")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.exports, None);
    }

    #[test]
    fn print_exports_needs_no_transport() {
        assert_eq!(
            parse(args("--print-exports --exports m.json")).unwrap(),
            Command::PrintExports {
                exports: Some(PathBuf::from("m.json")),
                log_format: LogFormat::Text
            }
        );
    }

    #[test]
    fn log_formats_parse() {
        let Command::Run(config) = parse(args("--stdio --log-format json")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(parse(args("--stdio --log-format xml")).is_err());
    }

    #[test]
    fn unknown_arguments_are_named() {
        assert_eq!(
            parse(args("--stdio --bogus")).unwrap_err().to_string(),
            "unknown argument: --bogus"
        );
    }
}
