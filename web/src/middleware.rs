//! The service's own layers, in the order a request meets them (see
//! [`Web::finish`](crate::Web::finish)): request id with access log, metrics and the
//! in-flight limit, then the route timeout (tower's), then the routes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::BoxError;

use crate::error::{ErrorCode, HttpError};
use crate::Shared;

/// The header a request id comes in and goes out with.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a client; a longer (or non-printable) one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's id: a number unique in this process (what the entry's
/// [`Ctx::request_id`](molt_worker::Ctx::request_id) shows), and the text in the
/// `X-Request-Id` response header (the client's own if it sent a usable one, else the
/// number). Handlers read it as an extension.
#[derive(Clone, Debug)]
pub struct RequestId {
    /// Unique in this process.
    pub number: u64,
    /// As sent back to the client.
    pub header: HeaderValue,
}

/// Layer 1: gives the request its [`RequestId`] (echoed on the response), answers Busy past
/// [`WebConfig::max_in_flight`](crate::WebConfig::max_in_flight) requests, and writes one
/// access-log line and one metrics sample per request, answered or not. One layer rather than
/// several: each `from_fn` layer boxes a future per request, and the in-flight count is the
/// metrics' gauge (tower's load-shed over a concurrency limit cost a semaphore round trip and
/// two layers' futures per request).
pub(crate) async fn observe(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Relaxed: a counter handing out unique numbers; it orders nothing.
    let number = shared.next_request_id.fetch_add(1, Ordering::Relaxed);
    let header = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|value| {
            value.len() <= MAX_REQUEST_ID_LEN
                && value.as_bytes().iter().all(|byte| byte.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(number));
    request.extensions_mut().insert(RequestId {
        number,
        header: header.clone(),
    });
    let over_limit = shared.metrics.started() > shared.config.max_in_flight.max(1) as i64;
    let busy = over_limit.then(|| {
        HttpError::busy(
            &shared.config,
            "busy: the service is at its limit of requests in flight",
        )
    });
    let mut in_flight = InFlight {
        route: request.extensions().get::<MatchedPath>().cloned(),
        // Copied only when it will be logged.
        request_line: log::log_enabled!(log::Level::Info)
            .then(|| (request.method().clone(), request.uri().path().to_owned())),
        request_id: header.clone(),
        arrived: Instant::now(),
        answered: None,
        shared,
    };
    let mut response = match busy {
        Some(busy) => busy.into_response(),
        None => next.run(request).await,
    };
    let code = response.extensions().get::<ErrorCode>().map(|code| code.0);
    in_flight.answered = Some((response.status(), code));
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

/// What the access log needs of a request that may never be answered.
struct InFlight {
    shared: Arc<Shared>,
    /// `None` for a request no route matched.
    route: Option<MatchedPath>,
    /// Method and path, when the access log is on.
    request_line: Option<(Method, String)>,
    request_id: HeaderValue,
    arrived: Instant,
    /// Set once the response exists; still `None` on drop means the client went away.
    answered: Option<(StatusCode, Option<&'static str>)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.arrived.elapsed();
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let status = self.answered.map(|(status, _)| status);
        self.shared.metrics.ended(route, status, elapsed);
        let Some((method, path)) = &self.request_line else {
            return;
        };
        let id = self.request_id.to_str().unwrap_or("");
        let ms = elapsed.as_secs_f64() * 1e3;
        match self.answered {
            Some((status, code)) => log::info!(
                "{method} {path} {} {} {ms:.3}ms request_id={id}",
                status.as_u16(),
                code.unwrap_or("")
            ),
            None => log::info!(
                "{method} {path} client closed the connection after {ms:.3}ms; its call was cancelled request_id={id}"
            ),
        }
    }
}

/// What tower's route timeout fails with, as an answer.
pub(crate) async fn tower_error(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        return HttpError::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", "deadline exceeded")
            .into_response();
    }
    log::error!("unexpected middleware error: {error}");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "internal error",
    )
    .into_response()
}

/// The fallback: no route has this path.
pub(crate) async fn not_found(request: Request) -> Response {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no route for {}", request.uri().path()),
    )
    .into_response()
}

/// A route exists but not for this method.
pub(crate) async fn method_not_allowed(request: Request) -> Response {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}
