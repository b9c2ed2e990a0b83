//! A molt-web router called in-process, without a socket: how a service tests its handlers
//! (tower's `ServiceExt::oneshot` over the router `Web::finish` returns).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use molt_web::{Web, WebConfig};
use molt_worker::{App, Ctx, EntryError};
use tower::ServiceExt;

fn double(n: i64, _ctx: &Ctx) -> Result<i64, EntryError> {
    n.checked_mul(2)
        .ok_or_else(|| EntryError::InvalidInput("n is too large".into()))
}

fn router(runtime: &tokio::runtime::Runtime) -> Router {
    let entries = App::new()
        .entry("double", double)
        .into_entries(None, runtime.handle())
        .unwrap();
    let web = Web::new(entries, WebConfig::default());
    web.finish(Router::new().route("/double", web.entry("double")))
}

async fn call(router: Router, body: &'static str) -> (StatusCode, Vec<u8>) {
    let request = Request::post("/double")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

#[test]
fn handlers_answer_without_a_socket() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let router = router(&runtime);
    assert_eq!(
        runtime.block_on(call(router.clone(), "21")),
        (StatusCode::OK, b"42".to_vec())
    );
    let (status, body) = runtime.block_on(call(router, "9223372036854775807"));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["message"], "n is too large");
}
