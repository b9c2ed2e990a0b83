//! What [`App::run`](crate::App::run) does: read the command line and the manifest, build
//! the state, start metrics, dispatcher and transports, and serve until the end.

use std::process::ExitCode;
use std::sync::Arc;

use crate::app::{App, Init, Registration, Startup};
use crate::config::{self, Command, Config, Transport};
use crate::dispatcher::{Dispatcher, EnabledEntry, Limits, ReplyObserver};
use crate::logging;
use crate::manifest::Manifest;
use crate::metrics::{self, MetricsSource, WorkerMetrics};
use crate::observe;
use crate::transport::shm::Shm;
use crate::transport::stdio::Stdio;
use crate::transport::Ended;

type Failure = Box<dyn std::error::Error>;

/// The app's state, and the metrics its libraries registered while building it.
pub(crate) type BuiltState<S> = (Arc<S>, Vec<Arc<dyn MetricsSource>>);

/// Exit codes: 0 after EOF on stdin (with `--stdio`) or SIGTERM, 1 when start-up fails
/// (unreadable or invalid exports manifest, state that cannot be built, ...), 2 on a usage
/// error, 3 after a broken input stream.
pub(crate) fn main<S: Send + Sync + 'static>(
    app: App<S>,
    args: impl IntoIterator<Item = String>,
) -> ExitCode {
    let outcome = match config::parse(args) {
        Ok(Command::Help) => {
            println!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::PrintExports {
            exports,
            log_format,
        }) => {
            logging::init(log_format);
            print_exports(app, exports.as_deref())
        }
        Ok(Command::Run(config)) => {
            logging::init(config.log_format);
            run(app, &config)
        }
        Err(err) => {
            eprintln!("molt_worker: {err} (see --help)");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(Ended::Cleanly) => ExitCode::SUCCESS,
        Ok(Ended::Broken) => ExitCode::from(3),
        Err(err) => {
            // Not through the logger: a start-up failure must show even with RUST_LOG=off.
            eprintln!("molt_worker: {err}");
            ExitCode::from(1)
        }
    }
}

/// `--print-exports`: the manifest this worker would run with, checked against its entries,
/// on stdout as JSON.
fn print_exports<S: Send + Sync + 'static>(
    app: App<S>,
    path: Option<&std::path::Path>,
) -> Result<Ended, Failure> {
    let (_, registrations, embedded) = app.into_parts();
    let manifest = load_manifest(path, embedded.as_deref(), &registrations)?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(Ended::Cleanly)
}

fn load_manifest<S>(
    path: Option<&std::path::Path>,
    embedded: Option<&str>,
    registrations: &[Registration<S>],
) -> Result<Manifest, Failure> {
    let known: Vec<&str> = registrations.iter().map(|entry| entry.name).collect();
    Ok(Manifest::load(path, embedded, &known)?)
}

/// The registered entries the manifest enables, built over `state`, in registration order.
pub(crate) fn enabled_entries<S>(
    registrations: Vec<Registration<S>>,
    manifest: &mut Manifest,
    state: &Arc<S>,
) -> Vec<EnabledEntry> {
    registrations
        .into_iter()
        .filter_map(|registration| {
            let options = manifest.entries.remove(registration.name)?;
            log::info!("entry {} enabled: {options}", registration.name);
            let handler = (registration.build)(Arc::clone(state));
            Some(EnabledEntry::new(registration.name, handler, options))
        })
        .collect()
}

/// Builds the app's state: runs its `init` with the manifest's settings, and refuses
/// settings sections nothing read.
pub(crate) fn build_state<S>(
    init: Init<S>,
    manifest: &Manifest,
    runtime: &tokio::runtime::Handle,
) -> Result<BuiltState<S>, Failure> {
    let enabled: Vec<&str> = manifest.entries.keys().map(String::as_str).collect();
    let startup = Startup::new(&manifest.settings, &enabled, runtime);
    let state = init(&startup).map_err(|err| format!("cannot build the worker's state: {err}"))?;
    if let Some(section) = startup.unread_sections().first() {
        return Err(format!(
            "exports manifest: settings section {section:?} is not used by this worker"
        )
        .into());
    }
    Ok((Arc::new(state), startup.into_metrics()))
}

fn run<S: Send + Sync + 'static>(app: App<S>, config: &Config) -> Result<Ended, Failure> {
    let (init, registrations, embedded) = app.into_parts();
    let mut manifest = load_manifest(
        config.exports.as_deref(),
        embedded.as_deref(),
        &registrations,
    )?;
    // Entries run on the compute pool and here; this runtime drives async entries, timers,
    // signals and the metrics endpoint.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.async_threads)
        .thread_name("molt-async")
        .enable_time()
        .enable_io()
        .build()?;
    let (state, metrics_sources) = build_state(init, &manifest, runtime.handle())?;
    let mut enabled = enabled_entries(registrations, &mut manifest, &state);
    let names = enabled
        .iter()
        .map(EnabledEntry::name)
        .chain([metrics::entry::NAME])
        .collect();
    let metrics = WorkerMetrics::start(&config.metrics, names, config.max_queue, metrics_sources)?;
    if let Some(path) = metrics.log_path() {
        log::info!("metrics: interval log {}", path.display());
    }
    enabled.push(metrics::entry::enabled(Arc::clone(&metrics)));
    let limits = Limits {
        max_queue: config.max_queue,
        compute_threads: config.compute_threads,
        max_async: config.max_async,
        max_frame_bytes: config.max_frame_bytes,
    };
    let observer: Box<dyn ReplyObserver> = if config.metrics.record {
        Box::new(observe::Tee(observe::TraceReplies, Arc::clone(&metrics)))
    } else {
        Box::new(observe::TraceReplies)
    };
    let dispatcher = Dispatcher::start(enabled, limits, runtime.handle().clone(), observer)?;
    let queue = Arc::downgrade(&dispatcher);
    metrics.watch_queue_depth(Box::new(move || {
        queue
            .upgrade()
            .map_or(0, |dispatcher| dispatcher.queue_depth())
    }));
    serve_metrics(config, &runtime, &metrics)?;
    log::info!(
        "ready: max_queue={} compute_threads={} async_threads={} max_async={} max_frame_bytes={}",
        limits.max_queue,
        limits.compute_threads,
        config.async_threads,
        limits.max_async,
        limits.max_frame_bytes
    );
    let ended = match &config.transport {
        Transport::Stdio => {
            let stdio = Arc::new(Stdio::start(&dispatcher, config.max_frame_bytes)?);
            let on_terminate = Arc::clone(&stdio);
            let metrics_at_exit = Arc::clone(&metrics);
            on_sigterm(&runtime, move || {
                on_terminate.finish();
                metrics_at_exit.finish();
                // The reader thread is blocked in read(2) on stdin; the process ends here.
                std::process::exit(0);
            })?;
            stdio.run()?
        }
        Transport::Socket(socket) => {
            let shm = Arc::new(Shm::bind(socket, &dispatcher, config.max_frame_bytes)?);
            log::info!("shared memory: listening on {}", shm.path().display());
            let on_terminate = Arc::clone(&shm);
            on_sigterm(&runtime, move || on_terminate.stop())?;
            shm.run();
            Ended::Cleanly
        }
        Transport::StdioAndSocket(socket) => {
            let shm = Arc::new(Shm::bind(socket, &dispatcher, config.max_frame_bytes)?);
            log::info!("shared memory: listening on {}", shm.path().display());
            let accepting = {
                let shm = Arc::clone(&shm);
                std::thread::Builder::new()
                    .name("molt-shm-accept".into())
                    .spawn(move || shm.run())?
            };
            let stdio = Arc::new(Stdio::start(&dispatcher, config.max_frame_bytes)?);
            let (stdio_at_exit, shm_at_exit) = (Arc::clone(&stdio), Arc::clone(&shm));
            let metrics_at_exit = Arc::clone(&metrics);
            on_sigterm(&runtime, move || {
                stdio_at_exit.finish();
                shm_at_exit.stop();
                metrics_at_exit.finish();
                // As with stdio alone: the reader thread is blocked on stdin.
                std::process::exit(0);
            })?;
            let ended = stdio.run()?;
            shm.stop();
            // The accept thread only ends by returning.
            let _ = accepting.join();
            ended
        }
    };
    dispatcher.stop();
    metrics.finish();
    Ok(ended)
}

/// Runs `finish` when SIGTERM arrives: answer calls in flight, let go of clients, and end
/// the process (or let `run` end it). It runs on a thread of its own, not the runtime's:
/// it waits for connection threads, while the timer and async calls keep running.
fn on_sigterm(
    runtime: &tokio::runtime::Runtime,
    finish: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut terminate = {
        let _context = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    runtime.spawn(async move {
        if terminate.recv().await.is_some() {
            log::info!("SIGTERM: cancelling calls in flight and exiting");
            let _ = tokio::task::spawn_blocking(finish).await;
        }
    });
    Ok(())
}

/// SIGUSR1 logs an interval now; `--metrics-listen` serves `GET /metrics`. Binds before
/// returning, so a taken or refused port fails start-up.
fn serve_metrics(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    metrics: &Arc<WorkerMetrics>,
) -> std::io::Result<()> {
    let _context = runtime.enter();
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let on_usr1 = Arc::clone(metrics);
    runtime.spawn(async move {
        while usr1.recv().await.is_some() {
            if !on_usr1.request_dump() {
                log::info!("SIGUSR1: no --metrics-dir, so there is no interval log to write");
            }
        }
    });
    if let Some(addr) = config.metrics_listen {
        let listener = metrics::http::bind(addr)?;
        log::info!(
            "metrics: serving GET /metrics on http://{}",
            listener.local_addr()?
        );
        runtime.spawn(metrics::http::serve(listener, Arc::clone(metrics)));
    }
    Ok(())
}
