//! Typed path and query extraction for handlers of your own, refused with molt-web's JSON
//! error (400 `InvalidInput`, naming the parameter at fault) instead of axum's plain text.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// The route's path parameters as `T` (a struct whose fields are named like the route's
/// `{params}`, a tuple, or one value): `axum::extract::Path` with a JSON 400.
///
/// ```
/// use molt_web::Path;
/// async fn user(Path(id): Path<u64>) -> String { format!("user {id}") }
/// let _ = molt_web::axum::Router::<()>::new().route("/users/{id}", molt_web::axum::routing::get(user));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

/// The query string as `T`: `axum::extract::Query` with a JSON 400 naming the field.
///
/// ```
/// use molt_web::Query;
/// #[derive(serde::Deserialize)]
/// struct Page { limit: u32 }
/// async fn items(Query(page): Query<Page>) -> String { page.limit.to_string() }
/// let _ = molt_web::axum::Router::<()>::new().route("/items", molt_web::axum::routing::get(items));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| invalid(rejection.body_text()))
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <axum::extract::Query<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| invalid(rejection.body_text()))
    }
}

impl<T, S> OptionalFromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    /// `None` without a query string; a query string that does not decode is still a 400.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.uri.query().is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

fn invalid(detail: String) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "InvalidInput", detail)
}
