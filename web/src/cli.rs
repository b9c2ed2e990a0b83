//! [`run`]: a service's whole `main`. Reads its command line, builds the app's entries,
//! serves them on the routes the service lays out, and drains on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use molt_worker::App;

use crate::config::{BusyStatus, WebConfig};
use crate::Web;

const USAGE: &str = "\
usage: SERVICE [options]

  --listen ADDR             HOST:PORT or unix:PATH (default 127.0.0.1:8000)
  --allow-non-loopback      allow a TCP address other than loopback
  --exports PATH            exports manifest (default: the one the service embeds)
  --max-body-bytes N        largest request body (default 1048576)
  --max-in-flight N         requests handled at once; more are Busy (default 1024)
  --max-connections N       connections open at once (default 1024)
  --busy-status 429|503     status of a Busy answer (default 429)
  --default-timeout-ms N    deadline when neither the request nor the manifest sets one
  --max-timeout-ms N        longest deadline, and the bound on every route (default 60000)
  --shutdown-grace-ms N     how long SIGTERM waits for requests in flight (default 10000)
  --threads N               async runtime threads (default: one per CPU)
  --no-metrics-route        serve no GET /metrics
  --help                    this text

Logs go to stderr; RUST_LOG=error|warn|info|debug|off sets the level (default info).";

/// What the command line asks for.
struct Args {
    config: WebConfig,
    exports: Option<PathBuf>,
    threads: Option<usize>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        config: WebConfig::default(),
        exports: None,
        threads: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let config = &mut parsed.config;
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--listen" => config.listen = value("--listen")?.parse()?,
            "--allow-non-loopback" => config.allow_non_loopback = true,
            "--exports" => parsed.exports = Some(value("--exports")?.into()),
            "--max-body-bytes" => config.max_body_bytes = number(&arg, &value(&arg)?)?,
            "--max-in-flight" => config.max_in_flight = number(&arg, &value(&arg)?)?,
            "--max-connections" => config.max_connections = number(&arg, &value(&arg)?)?,
            "--busy-status" => {
                config.busy_status = match value(&arg)?.as_str() {
                    "429" => BusyStatus::TooManyRequests,
                    "503" => BusyStatus::ServiceUnavailable,
                    other => {
                        return Err(format!("--busy-status must be 429 or 503, not {other:?}"))
                    }
                }
            }
            "--default-timeout-ms" => {
                config.default_timeout = Some(millis(&arg, &value(&arg)?)?);
            }
            "--max-timeout-ms" => config.max_timeout = millis(&arg, &value(&arg)?)?,
            "--shutdown-grace-ms" => config.shutdown_grace = millis(&arg, &value(&arg)?)?,
            "--threads" => parsed.threads = Some(number(&arg, &value(&arg)?)?),
            "--no-metrics-route" => config.metrics_path = None,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Some(parsed))
}

fn number(name: &str, text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{name} must be a positive whole number, not {text:?}"))
}

fn millis(name: &str, text: &str) -> Result<Duration, String> {
    number(name, text).map(|ms| Duration::from_millis(ms as u64))
}

/// Runs a service with the process's command line (`--help` lists it): builds `app`'s state
/// and entries, serves the router `routes` lays out (wrapped in [`Web::finish`]) and drains
/// on SIGTERM or Ctrl-C. Returns 0 after a clean shutdown, 1 when start-up fails (the
/// manifest, the state, the address), 2 on a usage error.
///
/// ```no_run
/// use axum::Router;
/// use molt_worker::{App, Ctx, EntryError};
///
/// fn hello(name: String, _ctx: &Ctx) -> Result<String, EntryError> {
///     Ok(format!("hello, {name}"))
/// }
///
/// fn main() -> std::process::ExitCode {
///     molt_web::run(App::new().entry("hello", hello), |web| {
///         Router::new().route("/hello", web.entry("hello"))
///     })
/// }
/// ```
pub fn run<S, F>(app: App<S>, routes: F) -> ExitCode
where
    S: Send + Sync + 'static,
    F: FnOnce(&Web<S>) -> Router,
{
    run_with_args(app, std::env::args().skip(1), routes)
}

/// As [`run`], with `args` as the command line (without the program name).
pub fn run_with_args<S, F>(
    app: App<S>,
    args: impl IntoIterator<Item = String>,
    routes: F,
) -> ExitCode
where
    S: Send + Sync + 'static,
    F: FnOnce(&Web<S>) -> Router,
{
    let args = match parse(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("molt-web: {err} (see --help)");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match serve(app, args, routes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not through the logger: a start-up failure must show even with RUST_LOG=off.
            eprintln!("molt-web: {err}");
            ExitCode::from(1)
        }
    }
}

fn serve<S, F>(app: App<S>, args: Args, routes: F) -> Result<(), molt_worker::BoxError>
where
    S: Send + Sync + 'static,
    F: FnOnce(&Web<S>) -> Router,
{
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("molt-web");
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.build()?;
    let entries = app.into_entries(args.exports.as_deref(), runtime.handle())?;
    let web = Web::new(entries, args.config.clone());
    let router = web.finish(routes(&web));
    runtime.block_on(async move {
        let bound = crate::bind(args.config.clone()).await?;
        let shown = match bound.local_addr() {
            Some(addr) => format!("http://{addr}"),
            None => args.config.listen.to_string(),
        };
        // The ready line, on stderr whatever the log level: tests and scripts wait for it.
        eprintln!("molt-web: listening on {shown}");
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => log::info!("SIGTERM: draining"),
                _ = tokio::signal::ctrl_c() => log::info!("interrupted: draining"),
            }
        };
        bound.serve(router, shutdown).await?;
        Ok::<_, molt_worker::BoxError>(())
    })?;
    // Sync entries still running on blocking threads have seen their tokens fire; do not
    // wait for one that ignores it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Logs to stderr at the level `RUST_LOG` names (info by default), one line per record.
fn init_logging() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::max_level()
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                eprintln!(
                    "molt-web {} {}: {}",
                    record.level(),
                    record.target(),
                    record.args()
                );
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("RUST_LOG").as_deref().map(str::trim) {
        Ok("off") => log::LevelFilter::Off,
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse(list.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn options_set_the_config() {
        let parsed = args(&[
            "--listen",
            "unix:/tmp/x.sock",
            "--busy-status",
            "503",
            "--max-body-bytes",
            "10",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.config.listen,
            crate::Listen::Unix("/tmp/x.sock".into())
        );
        assert_eq!(parsed.config.busy_status, BusyStatus::ServiceUnavailable);
        assert_eq!(parsed.config.max_body_bytes, 10);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--max-in-flight", "0"]).is_err());
        assert!(args(&["--busy-status", "500"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }
}
