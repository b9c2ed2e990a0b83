//! [`HttpError`]: a failed request as the client sees it, `{"error": {"code", "message"}}`
//! with the status the decorator would give it; and how each [`EntryError`] maps to one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use molt_worker::EntryError;
use serde::Serialize;

use crate::config::WebConfig;

/// A failed request: its HTTP status, a stable code (`InvalidInput`, `Busy`, `NotFound`, ...)
/// and a message safe to show (never a path, a DSN or a backtrace). Its body is always JSON:
/// `{"error": {"code": "...", "message": "..."}}`.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// let response = molt_web::HttpError::new(StatusCode::NOT_FOUND, "NotFound", "no such item").into_response();
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl HttpError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// With a `Retry-After` header of `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// What an entry's error is answered with, as the Django decorator maps the worker's
    /// statuses: InvalidInput 400, Busy 429 or 503 (`config.busy_status`) and Unavailable
    /// 503, both with `Retry-After`; Timeout 504; Cancelled 503 (the service is shutting
    /// down: a client that went away gets no answer at all); Internal 500.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use molt_web::{HttpError, WebConfig};
    /// use molt_worker::EntryError;
    /// let error = HttpError::from_entry(&EntryError::Timeout("deadline exceeded".into()), &WebConfig::default());
    /// assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    /// assert_eq!(error.code(), "Timeout");
    /// ```
    pub fn from_entry(error: &EntryError, config: &WebConfig) -> Self {
        let message = error.message().to_owned();
        let retry = config.retry_after_secs();
        match error {
            EntryError::InvalidInput(_) => {
                Self::new(StatusCode::BAD_REQUEST, "InvalidInput", message)
            }
            EntryError::Busy(_) => {
                Self::new(config.busy_status.status(), "Busy", message).retry_after(retry)
            }
            EntryError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message),
            EntryError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
                    .retry_after(retry)
            }
            EntryError::Cancelled => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "Cancelled", message)
            }
            EntryError::Internal(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
            // EntryError is non_exhaustive: a kind added later is a failure of the service.
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
        }
    }

    /// Busy, as a request refused at the service's own limit.
    pub(crate) fn busy(config: &WebConfig, message: &str) -> Self {
        Self::new(config.busy_status.status(), "Busy", message)
            .retry_after(config.retry_after_secs())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code in the body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message in the body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        let bytes = serde_json::to_vec(&body).expect("a string map encodes as JSON");
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error response, for the access log and metrics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorCode(pub &'static str);
