//! [`App`]: the entries a worker binary runs, its state, and its embedded manifest; and
//! [`Startup`], what the state is built from.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use molt_ipc_ring::frame::MAX_ENTRY_LEN;
use molt_ipc_ring::lock::Mutex;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::entry::{self, Handler};
use crate::error::EntryError;
use crate::metrics::MetricsSource;
use crate::payload::{FromPayload, IntoReply};

/// An error from building an app's state; shown on stderr when the worker fails to start.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an app builds its state at start-up.
pub(crate) type Init<S> = Box<dyn FnOnce(&Startup<'_>) -> Result<S, BoxError>>;

/// A worker: its entries, the state they share, and the manifest it runs with by default.
/// [`App::run`] is the whole `main` of a worker binary, with molt_worker's command line
/// (`--stdio`, `--socket PATH`, `--exports PATH`, ...; `--help` lists it).
///
/// An entry is a plain function over your own types: its request is any serde type (decoded
/// in the call's codec) or a [`Payload`](crate::Payload), its result any serde type (encoded
/// in the call's codec) or a [`Reply`](crate::Reply), and it gets the call's [`Ctx`]. Sync
/// entries run on the bounded compute pool, async ones on the tokio runtime.
///
/// ```no_run
/// use molt_worker::{App, Ctx, EntryError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Square { n: u64 }
///
/// #[derive(Serialize)]
/// struct Squared { n2: u64 }
///
/// fn square(req: Square, _ctx: &Ctx) -> Result<Squared, EntryError> {
///     Ok(Squared { n2: req.n * req.n })
/// }
///
/// async fn pause(ms: u64, ctx: Ctx) -> Result<u64, EntryError> {
///     // Dropped at once if the call is cancelled or times out.
///     tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
///     Ok(ms)
/// }
///
/// fn main() -> std::process::ExitCode {
///     App::new()
///         .entry("square", square)
///         .async_entry("pause", pause)
///         .exports(r#"{"entries": {"square": {}, "pause": {"default_timeout_ms": 1000}}}"#)
///         .run()
/// }
/// ```
pub struct App<S = ()> {
    init: Init<S>,
    entries: Vec<Registration<S>>,
    exports: Option<Cow<'static, str>>,
}

/// One registered entry, waiting for the state to exist.
pub(crate) struct Registration<S> {
    pub name: &'static str,
    pub build: Box<dyn FnOnce(Arc<S>) -> Handler>,
}

impl App<()> {
    /// An app without state and without entries.
    pub fn new() -> Self {
        Self::with_state(|_| Ok(()))
    }
}

impl Default for App<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static> App<S> {
    /// An app whose entries share the state `init` builds once at start-up, after the
    /// command line and the manifest are read and inside the async runtime (so it may create
    /// a connection pool, or [`Startup::block_on`] an async set-up). An error stops the
    /// worker from starting, with the message on stderr.
    ///
    /// ```
    /// use molt_worker::{App, Ctx, EntryError};
    ///
    /// struct Prices { euro_cents: Vec<u64> }
    ///
    /// fn price(index: usize, ctx: &Ctx<Prices>) -> Result<u64, EntryError> {
    ///     ctx.state().euro_cents.get(index).copied()
    ///         .ok_or_else(|| EntryError::InvalidInput(format!("no price {index}")))
    /// }
    ///
    /// let app = App::with_state(|_startup| Ok(Prices { euro_cents: vec![120, 250] }))
    ///     .entry("price", price);
    /// # let client = app.test_client().unwrap();
    /// # assert_eq!(client.call_json::<_, u64>("price", &1).unwrap(), 250);
    /// ```
    pub fn with_state<F>(init: F) -> Self
    where
        F: FnOnce(&Startup<'_>) -> Result<S, BoxError> + 'static,
    {
        Self {
            init: Box::new(init),
            entries: Vec::new(),
            exports: None,
        }
    }

    /// Registers a sync entry, run on the bounded compute pool. It should look at its
    /// context in long loops ([`Ctx::check`]): the call's Timeout or Cancelled reply goes out
    /// at once, but the compute thread stays taken until the entry returns.
    ///
    /// # Panics
    ///
    /// If `name` is taken, empty, longer than a frame's entry field, or starts with `__`
    /// (reserved for the runtime's own entries).
    pub fn entry<F, Req, Res>(self, name: &'static str, f: F) -> Self
    where
        F: Fn(Req, &Ctx<S>) -> Result<Res, EntryError> + Send + Sync + 'static,
        Req: FromPayload + 'static,
        Res: IntoReply + 'static,
    {
        self.register(name, move |state| Handler::Pooled(entry::sync_fn(f, state)))
    }

    /// Registers a sync entry that runs on the transport's own thread as the call arrives:
    /// for work of a few microseconds, bounded by the payload's size (an echo, a lookup in
    /// memory). No hop to the compute pool, but while it runs that connection reads nothing,
    /// and it cannot be interrupted: anything longer belongs in [`App::entry`].
    ///
    /// # Panics
    ///
    /// As [`App::entry`].
    pub fn inline_entry<F, Req, Res>(self, name: &'static str, f: F) -> Self
    where
        F: Fn(Req, &Ctx<S>) -> Result<Res, EntryError> + Send + Sync + 'static,
        Req: FromPayload + 'static,
        Res: IntoReply + 'static,
    {
        self.register(name, move |state| Handler::Inline(entry::sync_fn(f, state)))
    }

    /// Registers an async entry, run as a task on the tokio runtime. It must not block the
    /// runtime's threads (move CPU-heavy work to a sync entry). On a Cancel frame, at the
    /// deadline and when the client goes away, its future is dropped and the reply goes out
    /// at once.
    ///
    /// # Panics
    ///
    /// As [`App::entry`].
    pub fn async_entry<F, Fut, Req, Res>(self, name: &'static str, f: F) -> Self
    where
        F: Fn(Req, Ctx<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, EntryError>> + Send + 'static,
        Req: FromPayload + Send + 'static,
        Res: IntoReply + 'static,
    {
        self.register(name, move |state| Handler::Async(entry::async_fn(f, state)))
    }

    /// Embeds the manifest (JSON, the format of `molt_exports.json`; usually an
    /// `include_str!`) the worker runs with when no `--exports` is given; `--print-exports`
    /// shows the one in effect. Checked at start-up like a manifest file.
    ///
    /// ```no_run
    /// # fn echo(p: molt_worker::Payload, _: &molt_worker::Ctx) -> Result<molt_worker::Reply, molt_worker::EntryError> { Ok(molt_worker::Reply::encoded(p.into_bytes())) }
    /// molt_worker::App::new()
    ///     .inline_entry("echo", echo)
    ///     .exports(r#"{"entries": {"echo": {"idempotent": true}}}"#)
    ///     .run();
    /// ```
    pub fn exports(mut self, manifest_json: impl Into<Cow<'static, str>>) -> Self {
        self.exports = Some(manifest_json.into());
        self
    }

    /// Runs the worker with the process's command line; returns its exit code (0 after a
    /// clean end or SIGTERM, 1 when start-up fails, 2 on a usage error, 3 after a broken
    /// input stream).
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args().skip(1))
    }

    /// Runs the worker with `args` as its command line (without the program name).
    pub fn run_with_args<I: IntoIterator<Item = String>>(self, args: I) -> ExitCode {
        crate::serve::main(self, args)
    }

    fn register(
        mut self,
        name: &'static str,
        build: impl FnOnce(Arc<S>) -> Handler + 'static,
    ) -> Self {
        assert!(
            !name.is_empty() && name.len() <= MAX_ENTRY_LEN,
            "entry name {name:?} must be 1 to {MAX_ENTRY_LEN} bytes"
        );
        assert!(
            !name.starts_with("__"),
            "entry name {name:?}: names starting with __ are the runtime's own"
        );
        assert!(
            self.entries.iter().all(|entry| entry.name != name),
            "entry {name:?} is registered twice"
        );
        self.entries.push(Registration {
            name,
            build: Box::new(build),
        });
        self
    }

    /// The parts [`serve`](crate::serve) and the test client start from.
    pub(crate) fn into_parts(self) -> (Init<S>, Vec<Registration<S>>, Option<Cow<'static, str>>) {
        (self.init, self.entries, self.exports)
    }
}

/// What an app's state is built from at start-up: the manifest's settings sections and the
/// async runtime.
pub struct Startup<'a> {
    settings: &'a BTreeMap<String, serde_json::Value>,
    enabled: &'a [&'a str],
    runtime: &'a tokio::runtime::Handle,
    /// Sections `settings` was asked for; any other one in the manifest is refused.
    read: Mutex<Vec<String>>,
    metrics: Mutex<Vec<Arc<dyn MetricsSource>>>,
}

impl<'a> Startup<'a> {
    pub(crate) fn new(
        settings: &'a BTreeMap<String, serde_json::Value>,
        enabled: &'a [&'a str],
        runtime: &'a tokio::runtime::Handle,
    ) -> Self {
        Self {
            settings,
            enabled,
            runtime,
            read: Mutex::new(Vec::new()),
            metrics: Mutex::new(Vec::new()),
        }
    }

    /// The manifest's settings section `name` (`"settings": {name: {...}}`), decoded as `T`;
    /// `None` when the manifest has none. A section no app asks for is refused at start-up,
    /// so a misspelled one cannot be silently ignored.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Limits { max_rows: u64 }
    ///
    /// let app = molt_worker::App::with_state(|startup| {
    ///     let limits: Option<Limits> = startup.settings("limits")?;
    ///     Ok(limits.map_or(1_000, |limits| limits.max_rows))
    /// })
    /// .exports(r#"{"entries": {}, "settings": {"limits": {"max_rows": 5}}}"#);
    /// # assert_eq!(*app.test_client().unwrap().state(), 5);
    /// ```
    pub fn settings<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, BoxError> {
        self.read.lock().push(name.to_owned());
        let Some(value) = self.settings.get(name) else {
            return Ok(None);
        };
        serde_path_to_error::deserialize(value)
            .map(Some)
            .map_err(|err| format!("exports manifest: settings.{name}: {err}").into())
    }

    /// Whether the manifest enables `entry`: state only some entries need (a database pool)
    /// can be left out when none of them is enabled.
    pub fn is_enabled(&self, entry: &str) -> bool {
        self.enabled.contains(&entry)
    }

    /// The async runtime the worker's async entries and timers run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime
    }

    /// Runs an async set-up to completion on the runtime (connecting to a service, say).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Adds the metrics of a library the app uses (a database pool, say) to the worker's:
    /// shown in its Prometheus text and logged in its interval log.
    pub fn add_metrics(&self, source: Arc<dyn MetricsSource>) {
        self.metrics.lock().push(source);
    }

    pub(crate) fn into_metrics(self) -> Vec<Arc<dyn MetricsSource>> {
        self.metrics.into_inner()
    }

    /// The manifest's settings sections nobody asked for.
    pub(crate) fn unread_sections(&self) -> Vec<String> {
        let read = self.read.lock();
        self.settings
            .keys()
            .filter(|name| !read.contains(name))
            .cloned()
            .collect()
    }
}
