//! `molt-web`: the entries a molt app registers with [`molt_worker::App`], served over HTTP
//! on axum, hyper and tower, for services that run natively on their own. One registration,
//! two doors: the same typed functions answer Django over the worker's rings and HTTP
//! clients here, with the same deadlines, cancellation and limits.
//!
//! - [`Web::entry`] mounts an entry as a `POST` route in one line; everything else is an
//!   ordinary axum [`Router`] (path parameters, method routing, nesting, your own handlers;
//!   [`Path`] and [`Query`] extract typed parameters with a JSON 400 naming the one at fault).
//!   The body is the entry's request, JSON or MsgPack by `Content-Type`; the reply is in the
//!   codec `Accept` asks for.
//! - Failures answer as the Django decorator does, with `{"error": {"code", "message"}}`:
//!   InvalidInput 400 (naming the field at fault), Busy 429 (or 503) with `Retry-After`,
//!   Unavailable 503 with `Retry-After`, Timeout 504, InternalError 500 with a safe message;
//!   unknown routes 404, wrong methods 405, oversize bodies 413, unknown media types 415/406.
//! - A request's deadline comes from `X-Molt-Timeout-Ms`, else the entry's manifest
//!   `default_timeout_ms`, else [`WebConfig::default_timeout`], bounded by
//!   [`WebConfig::max_timeout`]. The entry's [`Ctx`](molt_worker::Ctx) carries it, so a
//!   molt-db query is bounded by it too.
//! - When the client goes away, hyper drops the request; the entry's token fires, an async
//!   entry's future is dropped, and molt-db cancels its running statement on the server.
//! - [`Web::finish`] adds the service's layers in one explicit order: request id, access log
//!   and metrics and the in-flight limit (Busy), route timeout; and `GET /metrics`, the Prometheus
//!   text in the worker's conventions, with the app's libraries' metrics (molt-db's).
//! - [`bind`] listens on loopback (or a unix socket) unless told otherwise; [`Bound::serve`]
//!   bounds heads, read times and connections and drains on shutdown; [`run`] is a
//!   service's whole `main`, with SIGTERM handled.
//!
//! ```
//! use axum::Router;
//! use molt_web::{Web, WebConfig};
//! use molt_worker::{App, Ctx, EntryError};
//!
//! #[derive(serde::Deserialize)]
//! struct Square { n: u64 }
//!
//! fn square(req: Square, _ctx: &Ctx) -> Result<u64, EntryError> {
//!     req.n.checked_mul(req.n).ok_or_else(|| EntryError::InvalidInput("n is too large".into()))
//! }
//!
//! # let runtime = tokio::runtime::Runtime::new().unwrap();
//! let app = App::new().entry("square", square);
//! let entries = app.into_entries(None, runtime.handle()).unwrap();
//! let web = Web::new(entries, WebConfig::default());
//! let router: Router = web.finish(Router::new().route("/square", web.entry("square")));
//! // In `main`: `molt_web::run(app, |web| Router::new().route("/square", web.entry("square")))`.
//! # drop(router);
//! ```
#![deny(missing_docs)]

mod cli;
mod codec;
mod config;
mod error;
mod extract;
mod handler;
mod metrics;
mod middleware;
mod server;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use molt_worker::embed::Entries;
use tower::ServiceBuilder;

pub use self::cli::{run, run_with_args};
pub use self::codec::{JSON, MSGPACK};
pub use self::config::{BusyStatus, Listen, WebConfig};
pub use self::error::HttpError;
pub use self::extract::{Path, Query};
pub use self::handler::TIMEOUT_HEADER;
pub use self::middleware::{RequestId, REQUEST_ID_HEADER};
pub use self::server::{bind, Bound};
pub use axum;

use self::metrics::WebMetrics;

/// An app's entries and the configuration they are served under: mounts entries as routes
/// ([`Web::entry`]) and wraps a router in the service's layers ([`Web::finish`]).
pub struct Web<S> {
    entries: Arc<Entries<S>>,
    shared: Arc<Shared>,
}

/// What every request's handling shares.
pub(crate) struct Shared {
    config: WebConfig,
    metrics: WebMetrics,
    /// The next [`RequestId::number`].
    next_request_id: AtomicU64,
}

impl<S: Send + Sync + 'static> Web<S> {
    /// Serves `entries` (from [`App::into_entries`](molt_worker::App::into_entries)) under
    /// `config`.
    pub fn new(entries: Entries<S>, config: WebConfig) -> Self {
        let metrics = WebMetrics::new(entries.metrics_sources().to_vec());
        Self {
            entries: Arc::new(entries),
            shared: Arc::new(Shared {
                config,
                metrics,
                next_request_id: AtomicU64::new(1),
            }),
        }
    }

    /// A `POST` route that calls entry `name` with the request body; mount it with
    /// `router.route("/path", web.entry("name"))`. An empty body is the request `null`
    /// (an entry over `()` or an `Option`).
    ///
    /// # Panics
    ///
    /// If the manifest enables no entry `name`: a route to nothing is a wiring mistake, found
    /// at start-up.
    pub fn entry(&self, name: &str) -> MethodRouter {
        let entry = Arc::clone(
            self.entries
                .get(name)
                .unwrap_or_else(|| panic!("no enabled entry {name:?} to mount")),
        );
        let shared = Arc::clone(&self.shared);
        post(move |request: axum::extract::Request| {
            handler::call_entry(Arc::clone(&shared), Arc::clone(&entry), request)
        })
    }

    /// Every enabled entry at `POST /{name}`, for a router to [`nest`](Router::nest) (under
    /// `/entries`, say); a name no entry has is 404.
    pub fn entries_router(&self) -> Router {
        self.entries.iter().fold(Router::new(), |router, entry| {
            router.route(&format!("/{}", entry.name()), self.entry(entry.name()))
        })
    }

    /// The app's state, for handlers of your own (`axum::extract::State`).
    pub fn state(&self) -> &Arc<S> {
        self.entries.state()
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.shared.config
    }

    /// `routes` with the service's layers, outermost first: request id (`X-Request-Id`),
    /// access log, metrics and the in-flight limit (Busy past
    /// [`WebConfig::max_in_flight`]), the route timeout ([`WebConfig::max_timeout`], 504);
    /// plus the metrics route, a JSON 404 fallback and a JSON 405. Add routes before, layers
    /// of your own (auth) to `routes` before or to the result after.
    pub fn finish(&self, routes: Router) -> Router {
        let config = &self.shared.config;
        let mut routes = routes;
        if let Some(path) = &config.metrics_path {
            let shared = Arc::clone(&self.shared);
            routes = routes.route(
                path,
                get(move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        )],
                        shared.metrics.prometheus_text(),
                    )
                        .into_response()
                }),
            );
        }
        let layers = ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self.shared),
                middleware::observe,
            ))
            .layer(HandleErrorLayer::new(middleware::tower_error))
            .timeout(config.max_timeout);
        routes
            .fallback(middleware::not_found)
            .method_not_allowed_fallback(middleware::method_not_allowed)
            .layer(layers)
    }
}
