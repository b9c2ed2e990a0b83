//! The handler an entry is mounted with: body in, entry called through
//! [`molt_worker::embed`], reply or mapped error out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use molt_worker::embed::{CallOptions, Entry};
use molt_worker::Payload;

use crate::codec;
use crate::error::HttpError;
use crate::middleware::RequestId;
use crate::Shared;

/// The header a client sets its deadline with, in milliseconds from arrival.
pub const TIMEOUT_HEADER: &str = "x-molt-timeout-ms";

/// Calls `entry` with the request's body; see [`Web::entry`](crate::Web::entry).
pub(crate) async fn call_entry(
    shared: Arc<Shared>,
    entry: Arc<Entry>,
    request: Request,
) -> Response {
    let arrived = Instant::now();
    match call(&shared, &entry, request, arrived).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn call(
    shared: &Shared,
    entry: &Arc<Entry>,
    request: Request,
    arrived: Instant,
) -> Result<Response, HttpError> {
    let config = &shared.config;
    let (parts, body) = request.into_parts();
    let request_codec = codec::request_codec(&parts.headers)?;
    let reply_codec = codec::reply_codec(&parts.headers, request_codec)?;
    let timeout = requested_timeout(&parts.headers)?
        .or_else(|| entry.default_timeout())
        .or(config.default_timeout)
        .map(|timeout| timeout.min(config.max_timeout));
    let deadline = timeout.map(|timeout| arrived + timeout);
    let limit = entry
        .max_payload_bytes()
        .map_or(config.max_body_bytes, |max| {
            usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(config.max_body_bytes)
        });
    let bytes = read_body(
        body,
        &parts.headers,
        limit,
        config.body_read_timeout,
        deadline,
    )
    .await?;
    let bytes = if bytes.is_empty() {
        codec::empty_payload(request_codec)
    } else {
        bytes
    };
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map_or(0, |id| id.number);
    let options = CallOptions {
        reply_codec,
        request_id,
        deadline,
        ..CallOptions::new(reply_codec)
    };
    let reply = entry
        .call(Payload::new(request_codec, bytes), options)
        .await
        .map_err(|error| HttpError::from_entry(&error, config))?;
    let (codec, bytes) = reply.into_parts(reply_codec);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(codec::content_type(codec)),
        )],
        bytes,
    )
        .into_response())
}

/// The deadline the client asks for, if it does.
fn requested_timeout(headers: &HeaderMap) -> Result<Option<Duration>, HttpError> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                format!("{TIMEOUT_HEADER} must be a positive whole number of milliseconds"),
            )
        })
}

/// The request body, at most `limit` bytes, read within `read_timeout` (or by `deadline` if
/// sooner).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    read_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let until = Instant::now() + read_timeout;
    let until = deadline.map_or(until, |deadline| deadline.min(until));
    let collected = tokio::time::timeout_at(until.into(), Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "the request body was not received in time",
            )
        })?;
    match collected {
        Ok(collected) => Ok(Vec::from(collected.to_bytes())),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        // The connection broke mid-body: nobody is left to read the answer.
        Err(_) => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "the request body could not be read",
        )),
    }
}
