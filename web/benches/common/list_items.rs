//! The handler both benches serve: a `list_items`-shaped entry (decode a small request, build
//! a page, encode it), and the same function in a route of bare axum.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use molt_worker::{Ctx, EntryError};
use serde::{Deserialize, Serialize};

/// The request every bench sends.
pub const BODY: &str = r#"{"user_id": 7, "limit": 50}"#;

#[derive(Deserialize)]
pub struct ListItems {
    user_id: u64,
    limit: usize,
}

#[derive(Serialize)]
pub struct Page {
    user_id: u64,
    ids: Vec<u64>,
}

pub fn list_items(req: ListItems, _ctx: &Ctx) -> Result<Page, EntryError> {
    let ids = (0..req.limit.min(500) as u64)
        .map(|i| req.user_id * 1000 + i)
        .collect();
    Ok(Page {
        user_id: req.user_id,
        ids,
    })
}

/// The handler on bare axum: decode, call, encode, in the route.
pub async fn bare(body: Bytes) -> Response {
    let request: ListItems = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let page = list_items(request, &molt_worker::testing::ctx()).unwrap();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&page).unwrap(),
    )
        .into_response()
}
