//! `molt_worker`: runs exported entries for molt clients.
//!
//! Exit codes: 0 after EOF on stdin (with `--stdio`) or SIGTERM, 1 when start-up fails (unreadable or invalid
//! exports manifest, ...), 2 on a usage error, 3 after a broken input stream.

mod clock;
mod config;
mod dispatcher;
mod logging;
mod metrics;
mod observe;
mod transport;

// Entries, manifest and cancellation live in the library half of the crate (src/lib.rs), so
// the fuzz targets run the same code; importing them here keeps `crate::entries` etc. valid.
use molt_worker::{cancel, entries, manifest};

use std::process::ExitCode;
use std::sync::Arc;

use config::{Command, Config, Transport};
use dispatcher::{Dispatcher, Limits, ReplyObserver};
use entries::Entry;
use manifest::{EntryOptions, Manifest};
use metrics::entry::MetricsEntry;
use metrics::WorkerMetrics;
use transport::shm::Shm;
use transport::stdio::Stdio;
use transport::Ended;

fn main() -> ExitCode {
    logging::init();
    let config = match config::parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            println!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("molt_worker: {err} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(Ended::Cleanly) => ExitCode::SUCCESS,
        Ok(Ended::Broken) => ExitCode::from(3),
        Err(err) => {
            // Not through the logger: a start-up failure must show even with RUST_LOG=off.
            eprintln!("molt_worker: {err}");
            ExitCode::from(1)
        }
    }
}

fn run(config: &Config) -> Result<Ended, Box<dyn std::error::Error>> {
    let mut enabled = enabled_entries(config)?;
    let names = enabled
        .iter()
        .map(|(entry, _)| entry.name())
        .chain([metrics::entry::NAME])
        .collect();
    let metrics = WorkerMetrics::start(&config.metrics, names, config.max_queue)?;
    if let Some(path) = metrics.log_path() {
        log::info!("metrics: interval log {}", path.display());
    }
    enabled.push(MetricsEntry::enabled(Arc::clone(&metrics)));
    // One runtime thread: it only drives timers and signals; entries run on the compute pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("molt-timers")
        .enable_time()
        .enable_io()
        .build()?;
    let limits = Limits {
        max_queue: config.max_queue,
        compute_threads: config.compute_threads,
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
        "ready: max_queue={} compute_threads={} max_frame_bytes={}",
        limits.max_queue,
        limits.compute_threads,
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

/// Runs `finish` on the runtime's thread when SIGTERM arrives: answer calls in flight, let go
/// of clients, and end the process (or let `main` end it).
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
            finish();
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

/// An entry the manifest enables, with its options.
type EnabledEntry = (Box<dyn Entry>, EntryOptions);

/// The registry's entries that the manifest enables. Refuses a manifest naming an entry the
/// registry does not have.
fn enabled_entries(config: &Config) -> Result<Vec<EnabledEntry>, manifest::ManifestError> {
    let registry = entries::registry();
    let known: Vec<&'static str> = registry.iter().map(|entry| entry.name()).collect();
    let mut manifest = Manifest::load(&config.exports, &known)?;
    let enabled: Vec<_> = registry
        .into_iter()
        .filter_map(|entry| {
            manifest
                .entries
                .remove(entry.name())
                .map(|options| (entry, options))
        })
        .collect();
    for (entry, options) in &enabled {
        if entry.test_only() {
            log::warn!(
                "test-only entry {} is enabled by the exports manifest",
                entry.name()
            );
        }
        log::info!("entry {} enabled: {options}", entry.name());
    }
    Ok(enabled)
}
