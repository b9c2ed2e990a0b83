//! Entries as the dispatcher holds them: the app's typed functions, erased into one of three
//! shapes by where they run. Everything typed (decoding the request, building the context,
//! encoding the result) happens inside these closures, so the dispatcher sees only payloads
//! and replies.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;

use crate::ctx::{CallScope, Ctx};
use crate::error::EntryError;
use crate::payload::{FromPayload, IntoReply, Payload, Reply};

/// What an entry produced: the reply (its codec resolved against the call's later) or why not.
pub(crate) type Outcome = Result<Reply, EntryError>;

/// A sync entry: decodes, runs and encodes on the calling thread.
pub(crate) type SyncFn = Box<dyn Fn(Payload, Arc<CallScope>) -> Outcome + Send + Sync>;

/// An async entry: builds the call's future, which the dispatcher spawns.
pub(crate) type AsyncFn = Box<
    dyn Fn(Payload, Arc<CallScope>) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync,
>;

/// An entry and where it runs.
pub(crate) enum Handler {
    /// On the transport's thread as the call arrives: no hop, no queue, no deadline timer.
    Inline(SyncFn),
    /// On the bounded compute pool.
    Pooled(SyncFn),
    /// As a task on the tokio runtime.
    Async(AsyncFn),
}

/// Message of the InternalError a panicking entry is answered with.
pub(crate) const PANIC_MESSAGE: &str = "internal error";

/// Erases a sync entry `f` over the app state `state`.
pub(crate) fn sync_fn<S, F, Req, Res>(f: F, state: Arc<S>) -> SyncFn
where
    S: Send + Sync + 'static,
    F: Fn(Req, &Ctx<S>) -> Result<Res, EntryError> + Send + Sync + 'static,
    Req: FromPayload,
    Res: IntoReply,
{
    Box::new(move |payload, scope| {
        let codec = scope.codec;
        let request = Req::from_payload(scope.entry, payload)?;
        let ctx = Ctx::new(scope, Arc::clone(&state));
        f(request, &ctx)?.into_reply(codec)
    })
}

/// Erases an async entry `f` over the app state `state`. The request is decoded inside the
/// future, on the runtime, so the transport's thread only copies bytes.
pub(crate) fn async_fn<S, F, Fut, Req, Res>(f: F, state: Arc<S>) -> AsyncFn
where
    S: Send + Sync + 'static,
    F: Fn(Req, Ctx<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Res, EntryError>> + Send + 'static,
    Req: FromPayload + Send + 'static,
    Res: IntoReply,
{
    let f = Arc::new(f);
    Box::new(move |payload, scope| {
        let f = Arc::clone(&f);
        let state = Arc::clone(&state);
        Box::pin(async move {
            let codec = scope.codec;
            let request = Req::from_payload(scope.entry, payload)?;
            f(request, Ctx::new(scope, state)).await?.into_reply(codec)
        })
    })
}

/// Runs a sync entry, turning a panic into InternalError with a message safe to show. The
/// panic hook has already logged the panic's message and location.
pub(crate) fn run_sync(f: &SyncFn, payload: Payload, scope: Arc<CallScope>) -> Outcome {
    let request_id = scope.request_id;
    let entry = scope.entry;
    catch_unwind(AssertUnwindSafe(|| f(payload, scope))).unwrap_or_else(|_| {
        log::error!(request_id, entry; "entry {entry} panicked; answered InternalError");
        Err(EntryError::Internal(PANIC_MESSAGE.to_owned()))
    })
}

/// An async entry's future with a panic turned into InternalError, as [`run_sync`] does.
pub(crate) async fn run_async(
    future: Pin<Box<dyn Future<Output = Outcome> + Send>>,
    request_id: u64,
    entry: &'static str,
) -> Outcome {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            log::error!(request_id, entry; "entry {entry} panicked; answered InternalError");
            Err(EntryError::Internal(PANIC_MESSAGE.to_owned()))
        })
}
