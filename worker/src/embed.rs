//! An app's entries served by a front end other than the worker's transports (molt-web's
//! HTTP): the same registrations, state and manifest, built once and called in-process with
//! the runtime's own semantics.
//!
//! [`App::into_entries`] builds the state and the entries the manifest enables, as
//! [`App::run`](crate::App::run) does; [`Entry::call`] runs one call to completion:
//!
//! - an inline entry runs on the polling thread, a sync one on tokio's blocking pool, an
//!   async one in the returned future;
//! - the entry's `max_concurrency` and `max_payload_bytes` are checked first (Busy,
//!   InvalidInput), as the dispatcher does;
//! - the call answers Timeout at its deadline (its own, else the manifest's
//!   `default_timeout_ms`) and Cancelled when its token fires, firing the token either way
//!   so the entry (and molt-db's running statement) stops;
//! - dropping the call's future before it resolves fires the token too: a front end that
//!   drops a request whose client went away cancels the entry with it.
//!
//! The front end bounds how many calls it makes at once; the worker's admission queue and
//! compute pool are not involved.
//!
//! ```
//! use molt_worker::embed::CallOptions;
//! use molt_worker::{App, Codec, Ctx, EntryError, Payload};
//!
//! fn double(n: i64, _ctx: &Ctx) -> Result<i64, EntryError> {
//!     Ok(n * 2)
//! }
//!
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! let entries = App::new().entry("double", double).into_entries(None, runtime.handle()).unwrap();
//! let entry = entries.get("double").unwrap();
//! let call = entry.call(Payload::new(Codec::Json, b"21".to_vec()), CallOptions::new(Codec::Json));
//! let reply = runtime.block_on(call).unwrap();
//! assert_eq!(reply.bytes(), b"42");
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::Codec;

use crate::app::{App, BoxError};
use crate::cancel::CancelToken;
use crate::ctx::CallScope;
use crate::entry::{self, Handler};
use crate::error::EntryError;
use crate::manifest::{EntryOptions, Manifest};
use crate::metrics::MetricsSource;
use crate::payload::{Payload, Reply};
use crate::serve;

/// Message of the Timeout a call answers at its deadline (the dispatcher's own).
const TIMEOUT_MESSAGE: &str = "deadline exceeded";

/// The state an app built and the entries its manifest enables, ready to be called.
pub struct Entries<S> {
    state: Arc<S>,
    entries: Vec<Arc<Entry>>,
    metrics: Vec<Arc<dyn MetricsSource>>,
}

impl<S: Send + Sync + 'static> App<S> {
    /// Builds the app's state and the entries its manifest enables, for a front end of your
    /// own: the manifest at `exports` if given, else the embedded one, else every registered
    /// entry with default options and no settings. `init` runs inside `runtime`, as in the
    /// worker. Fails as the worker's start-up would (an unknown entry in the manifest, a
    /// settings section nothing reads, a state that cannot be built).
    pub fn into_entries(
        self,
        exports: Option<&Path>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Entries<S>, BoxError> {
        let (init, registrations, embedded) = self.into_parts();
        let known: Vec<&str> = registrations.iter().map(|entry| entry.name).collect();
        let mut manifest = match (exports, embedded) {
            (None, None) => Manifest {
                entries: known
                    .iter()
                    .map(|&name| (name.to_owned(), EntryOptions::default()))
                    .collect(),
                settings: Default::default(),
            },
            (path, embedded) => Manifest::load(path, embedded.as_deref(), &known)?,
        };
        let (state, metrics) = serve::build_state(init, &manifest, runtime)
            .map_err(|err| BoxError::from(err.to_string()))?;
        let entries = serve::enabled_entries(registrations, &mut manifest, &state)
            .into_iter()
            .map(|enabled| {
                let (name, handler, options) = enabled.into_parts();
                Arc::new(Entry {
                    name,
                    handler,
                    options,
                    admitted: AtomicU32::new(0),
                })
            })
            .collect();
        Ok(Entries {
            state,
            entries,
            metrics,
        })
    }
}

impl<S> Entries<S> {
    /// The state the app built.
    pub fn state(&self) -> &Arc<S> {
        &self.state
    }

    /// The enabled entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Every enabled entry, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter()
    }

    /// The metrics the app's libraries registered with
    /// [`Startup::add_metrics`](crate::Startup::add_metrics) (molt-db's pool, ...), for the
    /// front end to expose with its own.
    pub fn metrics_sources(&self) -> &[Arc<dyn MetricsSource>] {
        &self.metrics
    }
}

/// Where an entry runs, as registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// [`App::inline_entry`](crate::App::inline_entry): on the caller's thread.
    Inline,
    /// [`App::entry`](crate::App::entry): on a blocking thread.
    Pooled,
    /// [`App::async_entry`](crate::App::async_entry): a future.
    Async,
}

/// One enabled entry and its manifest options.
pub struct Entry {
    name: &'static str,
    handler: Handler,
    options: EntryOptions,
    /// Calls started and not yet done with the entry; at most `options.max_concurrency`.
    admitted: AtomicU32,
}

/// How one call is made: the codec its reply is encoded in (what [`Ctx::codec`] reports),
/// its request id and deadline, and its token.
///
/// [`Ctx::codec`]: crate::Ctx::codec
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// The codec a serde result is encoded in (the request's own codec is the payload's).
    pub reply_codec: Codec,
    /// Shown to the entry as [`Ctx::request_id`](crate::Ctx::request_id) and in its logs.
    pub request_id: u64,
    /// When the call's time is up; `None` takes the manifest's `default_timeout_ms`.
    pub deadline: Option<Instant>,
    /// The call's token: fire it to cancel the call (a client that went away).
    pub cancel: CancelToken,
}

impl CallOptions {
    /// A call whose reply is in `reply_codec`, request id 0, no deadline of its own, a fresh
    /// token.
    pub fn new(reply_codec: Codec) -> Self {
        Self {
            reply_codec,
            request_id: 0,
            deadline: None,
            cancel: CancelToken::new(),
        }
    }
}

impl Entry {
    /// The entry's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where the entry runs.
    pub fn kind(&self) -> EntryKind {
        match self.handler {
            Handler::Inline(_) => EntryKind::Inline,
            Handler::Pooled(_) => EntryKind::Pooled,
            Handler::Async(_) => EntryKind::Async,
        }
    }

    /// The manifest's `default_timeout_ms`, if any.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.options.default_timeout()
    }

    /// The manifest's `max_concurrency`, if any.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.options.max_concurrency
    }

    /// The manifest's `max_payload_bytes`, if any.
    pub fn max_payload_bytes(&self) -> Option<u64> {
        self.options.max_payload_bytes
    }

    /// Whether the manifest marks the entry idempotent.
    pub fn idempotent(&self) -> bool {
        self.options.idempotent
    }

    /// Calls the entry with `payload` (see the module docs for where it runs and how it
    /// ends). Resolves to the entry's reply or the error the call is answered with; a
    /// reply's codec is resolved against `options.reply_codec` ([`Reply::codec_for`]).
    pub fn call(
        self: &Arc<Self>,
        payload: Payload,
        options: CallOptions,
    ) -> impl Future<Output = Result<Reply, EntryError>> + Send + 'static {
        let entry = Arc::clone(self);
        let cancel = options.cancel.clone();
        let fire_on_drop = FireOnDrop(options.cancel.clone());
        async move {
            let _fire_on_drop = fire_on_drop;
            let deadline = options
                .deadline
                .or_else(|| entry.default_timeout().map(|after| Instant::now() + after));
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return Err(EntryError::Timeout(TIMEOUT_MESSAGE.into()));
            }
            if let Some(max) = entry.options.max_payload_bytes {
                if payload.bytes().len() as u64 > max {
                    return Err(EntryError::InvalidInput(format!(
                        "the payload of {} bytes exceeds {}'s max_payload_bytes ({max})",
                        payload.bytes().len(),
                        entry.name
                    )));
                }
            }
            let Some(admitted) = Admitted::try_new(&entry) else {
                return Err(EntryError::Busy(
                    "busy: the entry is at its concurrency limit".into(),
                ));
            };
            let scope = Arc::new(CallScope {
                request_id: options.request_id,
                entry: entry.name,
                codec: options.reply_codec,
                deadline,
                cancel: options.cancel,
            });
            let run = entry.run(payload, scope, admitted);
            let timer = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(EntryError::Cancelled),
                () = timer => Err(EntryError::Timeout(TIMEOUT_MESSAGE.into())),
                outcome = run => outcome,
            };
            // Whatever ended the call, the entry should stop: a sync entry still running on
            // its blocking thread sees the token.
            cancel.cancel();
            outcome
        }
    }

    /// The entry's outcome, wherever it runs. `admitted` is held until the entry is done
    /// with: a sync entry keeps its slot until it returns, even after its call was answered,
    /// so one that ignores its token cannot pile up threads past `max_concurrency`.
    async fn run(
        &self,
        payload: Payload,
        scope: Arc<CallScope>,
        admitted: Admitted,
    ) -> Result<Reply, EntryError> {
        match &self.handler {
            Handler::Inline(f) => entry::run_sync(f, payload, scope),
            Handler::Pooled(_) => {
                let ran = tokio::task::spawn_blocking(move || {
                    let Handler::Pooled(f) = &admitted.0.handler else {
                        unreachable!("matched above");
                    };
                    entry::run_sync(f, payload, scope)
                });
                // run_sync catches panics: the task fails only when the runtime shuts down.
                ran.await.unwrap_or(Err(EntryError::Cancelled))
            }
            Handler::Async(f) => {
                let (request_id, name) = (scope.request_id, scope.entry);
                let outcome = entry::run_async(f(payload, scope), request_id, name).await;
                drop(admitted);
                outcome
            }
        }
    }
}

/// A slot among the entry's concurrent calls, given back on drop.
struct Admitted(Arc<Entry>);

impl Admitted {
    fn try_new(entry: &Arc<Entry>) -> Option<Self> {
        let limit = entry.options.max_concurrency.unwrap_or(u32::MAX);
        // Relaxed: a counter; the slot it grants guards no data.
        entry
            .admitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(entry)))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Relaxed: as in `try_new`.
        self.0.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Fires the call's token if the call's future is dropped before it resolved (and, harmlessly,
/// after: the token has fired by then).
struct FireOnDrop(CancelToken);

impl Drop for FireOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
