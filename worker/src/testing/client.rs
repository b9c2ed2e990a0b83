//! [`TestClient`]: an app's entries called in-process, through the worker's own decoding and
//! encoding, without a transport.

use std::sync::Arc;

use molt_ipc_ring::frame::Codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::detached_scope;
use crate::app::{App, BoxError};
use crate::dispatcher::EnabledEntry;
use crate::entry::{self, Handler};
use crate::manifest::Manifest;
use crate::payload::{Payload, Reply};
use crate::serve;
use crate::{CancelToken, EntryError};

/// An app's state and enabled entries, callable from a test: sync entries run on the calling
/// thread, async ones on a runtime of the client's own. Calls have no deadline and are not
/// cancelled; Busy, Timeout and the transports are the worker binary's to test.
///
/// ```
/// use molt_worker::{App, Codec, Ctx, EntryError, Payload, Reply};
///
/// fn shout(payload: Payload, _ctx: &Ctx) -> Result<Reply, EntryError> {
///     Ok(Reply::raw(payload.bytes().to_ascii_uppercase()))
/// }
///
/// let client = App::new().entry("shout", shout).test_client().unwrap();
/// let reply = client.call("shout", Payload::new(Codec::Raw, b"hi".to_vec())).unwrap();
/// assert_eq!(reply.bytes(), b"HI");
/// ```
pub struct TestClient<S> {
    state: Arc<S>,
    entries: Vec<EnabledEntry>,
    runtime: tokio::runtime::Runtime,
}

impl<S: Send + Sync + 'static> App<S> {
    /// Builds the app's state and entries for in-process calls: with its embedded manifest
    /// if it has one (settings and enabled entries as a worker would see them), else with
    /// every registered entry enabled and no settings.
    pub fn test_client(self) -> Result<TestClient<S>, BoxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (init, registrations, embedded) = self.into_parts();
        let known: Vec<&str> = registrations.iter().map(|entry| entry.name).collect();
        let mut manifest = match embedded {
            Some(text) => Manifest::parse(&text, &known)?,
            None => Manifest {
                entries: known
                    .iter()
                    .map(|&name| (name.to_owned(), Default::default()))
                    .collect(),
                settings: Default::default(),
            },
        };
        let (state, _metrics) = serve::build_state(init, &manifest, runtime.handle())
            .map_err(|err| BoxError::from(err.to_string()))?;
        let entries = serve::enabled_entries(registrations, &mut manifest, &state);
        Ok(TestClient {
            state,
            entries,
            runtime,
        })
    }
}

impl<S> TestClient<S> {
    /// The state the app built.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Calls `entry` with `payload`; its reply, or the error it answered with.
    ///
    /// # Panics
    ///
    /// If no enabled entry is called `entry`: a test that names one should know it.
    pub fn call(&self, entry: &str, payload: Payload) -> Result<Reply, EntryError> {
        self.call_with_token(entry, payload, CancelToken::new())
    }

    /// As [`TestClient::call`], with `cancel` as the call's token: fire it (before, or from
    /// another thread) to see how the entry stops. An async entry's future is dropped when it
    /// fires, and the call answers [`EntryError::Cancelled`], as the worker would.
    ///
    /// ```
    /// use molt_worker::{App, CancelToken, Codec, EntryError, Payload};
    /// let client = molt_worker::testing::with_test_entries(App::new()).test_client().unwrap();
    /// let cancelled = CancelToken::new();
    /// cancelled.cancel();
    /// let payload = Payload::new(Codec::Json, br#"{"ms": 60000}"#.to_vec());
    /// assert_eq!(client.call_with_token("sleep_async", payload, cancelled), Err(EntryError::Cancelled));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`TestClient::call`].
    pub fn call_with_token(
        &self,
        entry: &str,
        payload: Payload,
        cancel: CancelToken,
    ) -> Result<Reply, EntryError> {
        let enabled = self
            .entries
            .iter()
            .find(|enabled| enabled.name() == entry)
            .unwrap_or_else(|| panic!("no entry {entry:?} is enabled in this app"));
        let scope = detached_scope(enabled.name(), payload.codec(), cancel);
        match enabled.handler() {
            Handler::Inline(f) | Handler::Pooled(f) => entry::run_sync(f, payload, scope),
            Handler::Async(f) => {
                let future = entry::run_async(f(payload, Arc::clone(&scope)), 0, enabled.name());
                self.runtime.block_on(async {
                    tokio::select! {
                        biased;
                        () = scope.cancel.cancelled() => Err(EntryError::Cancelled),
                        outcome = future => outcome,
                    }
                })
            }
        }
    }

    /// Calls `entry` with `request` in JSON and decodes its JSON reply.
    ///
    /// # Panics
    ///
    /// As [`TestClient::call`], and if the reply is not JSON that decodes as `Res`.
    pub fn call_json<Req: Serialize, Res: DeserializeOwned>(
        &self,
        entry: &str,
        request: &Req,
    ) -> Result<Res, EntryError> {
        let bytes = serde_json::to_vec(request).expect("the request encodes as JSON");
        let reply = self.call(entry, Payload::new(Codec::Json, bytes))?;
        assert_eq!(
            reply.codec_for(Codec::Json),
            Codec::Json,
            "{entry} replied in another codec"
        );
        Ok(serde_json::from_slice(reply.bytes()).expect("the reply decodes"))
    }

    /// Calls `entry` with `request` in MsgPack and decodes its MsgPack reply.
    ///
    /// # Panics
    ///
    /// As [`TestClient::call_json`].
    pub fn call_msgpack<Req: Serialize, Res: DeserializeOwned>(
        &self,
        entry: &str,
        request: &Req,
    ) -> Result<Res, EntryError> {
        let bytes = rmp_serde::to_vec_named(request).expect("the request encodes as MsgPack");
        let reply = self.call(entry, Payload::new(Codec::MsgPack, bytes))?;
        assert_eq!(
            reply.codec_for(Codec::MsgPack),
            Codec::MsgPack,
            "{entry} replied in another codec"
        );
        Ok(rmp_serde::from_slice(reply.bytes()).expect("the reply decodes"))
    }
}
