//! molt-web over real HTTP on loopback: a service built in-process from an app's entries,
//! requests written on a TCP socket.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use molt_ipc_ring::lock::Mutex;
use molt_web::{BusyStatus, Web, WebConfig};
use molt_worker::{App, Ctx, EntryError};
use serde::{Deserialize, Serialize};

use common::{connect, head, post_json, read_response, request};

/// What the entries share with the test.
#[derive(Default)]
struct TestState {
    /// Where `wait` reports that it started and how it ended.
    events: Mutex<Option<mpsc::Sender<&'static str>>>,
    /// Side effects done: `wait` adds one when it runs to its end uncancelled.
    effects: AtomicU64,
}

#[derive(Deserialize)]
struct ListItems {
    user_id: u64,
    limit: usize,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Page {
    user_id: u64,
    ids: Vec<u64>,
}

fn list_items(req: ListItems, _ctx: &Ctx<TestState>) -> Result<Page, EntryError> {
    if req.limit > 100 {
        return Err(EntryError::InvalidInput("limit must be at most 100".into()));
    }
    let ids = (0..req.limit as u64)
        .map(|i| req.user_id * 1000 + i)
        .collect();
    Ok(Page {
        user_id: req.user_id,
        ids,
    })
}

#[derive(Deserialize)]
struct Wait {
    ms: u64,
}

/// Waits `ms` for its token; a side effect if it was not cancelled.
fn wait(req: Wait, ctx: &Ctx<TestState>) -> Result<u64, EntryError> {
    let report = |event| {
        if let Some(events) = ctx.state().events.lock().as_ref() {
            let _ = events.send(event);
        }
    };
    report("started");
    if ctx
        .cancel_token()
        .wait_timeout(Duration::from_millis(req.ms))
    {
        report("cancelled");
        return Err(EntryError::Cancelled);
    }
    ctx.state().effects.fetch_add(1, Ordering::SeqCst);
    report("done");
    Ok(req.ms)
}

/// Reports when its future is dropped before it finished.
async fn wait_async(req: Wait, ctx: Ctx<TestState>) -> Result<u64, EntryError> {
    struct Dropped(Ctx<TestState>, bool);
    impl Drop for Dropped {
        fn drop(&mut self) {
            if !self.1 {
                if let Some(events) = self.0.state().events.lock().as_ref() {
                    let _ = events.send("dropped");
                }
            }
        }
    }
    let mut guard = Dropped(ctx.clone(), false);
    if let Some(events) = ctx.state().events.lock().as_ref() {
        let _ = events.send("started");
    }
    tokio::time::sleep(Duration::from_millis(req.ms)).await;
    ctx.state().effects.fetch_add(1, Ordering::SeqCst);
    guard.1 = true;
    Ok(req.ms)
}

fn fail(kind: String, _ctx: &Ctx<TestState>) -> Result<(), EntryError> {
    Err(match kind.as_str() {
        "busy" => EntryError::Busy("pool exhausted".into()),
        "unavailable" => EntryError::Unavailable("the database is down".into()),
        "timeout" => EntryError::Timeout("query timed out".into()),
        "internal" => EntryError::Internal("internal error".into()),
        _ => EntryError::InvalidInput(format!("no failure {kind:?}")),
    })
}

#[derive(Deserialize)]
struct Search {
    limit: u32,
}

async fn search(molt_web::Query(search): molt_web::Query<Search>) -> String {
    search.limit.to_string()
}

fn nothing(_: (), _ctx: &Ctx<TestState>) -> Result<&'static str, EntryError> {
    Ok("nothing")
}

const MANIFEST: &str = r#"{"entries": {
    "list_items": {"max_payload_bytes": 4096},
    "wait": {"max_concurrency": 1},
    "wait_async": {},
    "fail": {},
    "nothing": {},
    "panic": {}
}}"#;

fn app() -> App<TestState> {
    App::with_state(|_| Ok(TestState::default()))
        .entry("list_items", list_items)
        .entry("wait", wait)
        .async_entry("wait_async", wait_async)
        .inline_entry("fail", fail)
        .inline_entry("nothing", nothing)
        .entry("panic", molt_worker::testing::panic)
        .exports(MANIFEST)
}

/// A service running on a runtime of its own, on 127.0.0.1 with a port of its own.
struct Service {
    addr: SocketAddr,
    state: std::sync::Arc<TestState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    runtime: tokio::runtime::Runtime,
}

impl Service {
    fn start(config: WebConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let entries = app().into_entries(None, runtime.handle()).unwrap();
        let config = WebConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let web = Web::new(entries, config.clone());
        let state = std::sync::Arc::clone(web.state());
        let routes = Router::new()
            .route("/items", web.entry("list_items"))
            .route("/wait", web.entry("wait"))
            .route("/wait_async", web.entry("wait_async"))
            .route("/fail", web.entry("fail"))
            .route("/nothing", web.entry("nothing"))
            .route("/panic", web.entry("panic"))
            .route(
                "/users/{id}",
                get(|molt_web::Path(id): molt_web::Path<u64>| async move { id.to_string() }),
            )
            .route("/search", get(search))
            .nest("/entries", web.entries_router());
        let router = web.finish(routes);
        let bound = runtime.block_on(molt_web::bind(config)).unwrap();
        let addr = bound.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(bound.serve(router, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            state,
            stop: Some(stop),
            served: Some(served),
            runtime,
        }
    }

    fn events(&self) -> mpsc::Receiver<&'static str> {
        let (sender, receiver) = mpsc::channel();
        *self.state.events.lock() = Some(sender);
        receiver
    }

    /// Asks the service to shut down; returns once it has drained.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            self.runtime.block_on(served).unwrap().unwrap();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn next(events: &mpsc::Receiver<&'static str>) -> &'static str {
    events
        .recv_timeout(Duration::from_secs(20))
        .expect("the entry reports")
}

#[test]
fn an_entry_answers_json_with_json() {
    let service = Service::start(WebConfig::default());
    let response = post_json(service.addr, "/items", r#"{"user_id": 7, "limit": 2}"#);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        serde_json::json!({"user_id": 7, "ids": [7000, 7001]})
    );
}

#[test]
fn accept_msgpack_gets_msgpack_and_msgpack_bodies_are_read() {
    let service = Service::start(WebConfig::default());
    let body = rmp_serde::to_vec_named(&serde_json::json!({"user_id": 3, "limit": 1})).unwrap();
    let response = request(
        service.addr,
        "POST",
        "/items",
        &[
            "Content-Type: application/msgpack",
            "Accept: application/msgpack",
        ],
        &body,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/msgpack"));
    let page: Page = rmp_serde::from_slice(&response.body).unwrap();
    assert_eq!(
        page,
        Page {
            user_id: 3,
            ids: vec![3000]
        }
    );
    let json_reply = request(
        service.addr,
        "POST",
        "/items",
        &[
            "Content-Type: application/msgpack",
            "Accept: application/json",
        ],
        &body,
    );
    assert_eq!(json_reply.json()["ids"], serde_json::json!([3000]));
}

#[test]
fn a_field_of_the_wrong_type_is_400_naming_the_field() {
    let service = Service::start(WebConfig::default());
    let response = post_json(service.addr, "/items", r#"{"user_id": 7, "limit": "two"}"#);
    assert_eq!(response.status, 400);
    let (code, message) = response.error();
    assert_eq!(code, "InvalidInput");
    assert!(message.contains("limit"), "{message}");
    let missing = post_json(service.addr, "/items", r#"{"limit": 2}"#);
    assert_eq!(missing.status, 400);
    assert!(
        missing.error().1.contains("user_id"),
        "{:?}",
        missing.error()
    );
}

#[test]
fn malformed_json_is_400() {
    let service = Service::start(WebConfig::default());
    let response = post_json(service.addr, "/items", r#"{"user_id": 7, "limit": "#);
    assert_eq!(response.status, 400);
    assert_eq!(response.error().0, "InvalidInput");
}

#[test]
fn an_entry_over_unit_takes_an_empty_body() {
    let service = Service::start(WebConfig::default());
    let response = request(service.addr, "POST", "/nothing", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), "nothing");
}

#[test]
fn unknown_routes_entries_and_methods_are_json_errors() {
    let service = Service::start(WebConfig::default());
    let unknown = request(service.addr, "GET", "/nope", &[], b"");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error().0, "NotFound");
    let unknown_entry = post_json(service.addr, "/entries/nope", "{}");
    assert_eq!(unknown_entry.status, 404);
    let known_entry = post_json(
        service.addr,
        "/entries/list_items",
        r#"{"user_id": 1, "limit": 1}"#,
    );
    assert_eq!(known_entry.status, 200);
    let wrong_method = request(service.addr, "GET", "/items", &[], b"");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.error().0, "MethodNotAllowed");
}

#[test]
fn path_parameters_route_to_handlers_of_your_own() {
    let service = Service::start(WebConfig::default());
    let response = request(service.addr, "GET", "/users/42", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"42");
    let bad = request(service.addr, "GET", "/users/forty-two", &[], b"");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error().0, "InvalidInput");
    assert!(bad.error().1.contains("forty-two"), "{:?}", bad.error());
}

#[test]
fn a_query_parameter_of_the_wrong_type_is_400_naming_it() {
    let service = Service::start(WebConfig::default());
    let ok = request(service.addr, "GET", "/search?limit=5", &[], b"");
    assert_eq!(ok.body, b"5");
    let bad = request(service.addr, "GET", "/search?limit=many", &[], b"");
    assert_eq!(bad.status, 400);
    let (code, message) = bad.error();
    assert_eq!(code, "InvalidInput");
    assert!(message.contains("limit"), "{message}");
    let missing = request(service.addr, "GET", "/search", &[], b"");
    assert!(missing.error().1.contains("limit"), "{:?}", missing.error());
}

#[test]
fn unsupported_media_types_are_415_and_406() {
    let service = Service::start(WebConfig::default());
    let text = request(
        service.addr,
        "POST",
        "/items",
        &["Content-Type: text/plain"],
        b"x",
    );
    assert_eq!(text.status, 415);
    let html = request(
        service.addr,
        "POST",
        "/items",
        &["Content-Type: application/json", "Accept: text/html"],
        br#"{"user_id": 1, "limit": 1}"#,
    );
    assert_eq!(html.status, 406);
}

#[test]
fn a_body_over_the_limit_is_413_declared_or_chunked() {
    let config = WebConfig {
        max_body_bytes: 64,
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let big = format!(
        r#"{{"user_id": 1, "limit": 1, "pad": "{}"}}"#,
        "x".repeat(100)
    );
    let declared = post_json(service.addr, "/items", &big);
    assert_eq!(declared.status, 413);
    assert_eq!(declared.error().0, "PayloadTooLarge");
    // Without a Content-Length: chunks past the limit.
    let mut stream = connect(service.addr);
    let mut bytes = head(
        "POST",
        "/items",
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        None,
    );
    bytes.extend_from_slice(format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes());
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_response(&mut stream).status, 413);
}

#[test]
fn the_manifest_max_payload_bytes_lowers_the_body_limit() {
    let service = Service::start(WebConfig::default());
    let big = format!(
        r#"{{"user_id": 1, "limit": 1, "pad": "{}"}}"#,
        "x".repeat(5000)
    );
    assert_eq!(post_json(service.addr, "/items", &big).status, 413);
}

#[test]
fn a_head_over_the_limit_is_refused() {
    let config = WebConfig {
        max_header_bytes: 8192,
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let huge = format!("X-Pad: {}", "y".repeat(20_000));
    let response = request(service.addr, "GET", "/users/1", &[&huge], b"");
    assert_eq!(response.status, 431);
}

#[test]
fn the_timeout_header_is_the_deadline_and_the_entry_is_cancelled_at_it() {
    let service = Service::start(WebConfig::default());
    let events = service.events();
    let response = request(
        service.addr,
        "POST",
        "/wait",
        &["Content-Type: application/json", "X-Molt-Timeout-Ms: 50"],
        br#"{"ms": 20000}"#,
    );
    assert_eq!(response.status, 504);
    assert_eq!(response.error().0, "Timeout");
    assert_eq!(next(&events), "started");
    assert_eq!(next(&events), "cancelled");
    assert_eq!(service.state.effects.load(Ordering::SeqCst), 0);
    let bad = request(
        service.addr,
        "POST",
        "/wait",
        &["X-Molt-Timeout-Ms: soon"],
        br#"{"ms": 1}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.error().1.contains("x-molt-timeout-ms"),
        "{:?}",
        bad.error()
    );
}

#[test]
fn the_config_default_timeout_applies_without_a_header() {
    let config = WebConfig {
        default_timeout: Some(Duration::from_millis(50)),
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let response = post_json(service.addr, "/wait_async", r#"{"ms": 20000}"#);
    assert_eq!(response.status, 504);
}

/// Starts a request to `path` and waits until its entry has started.
fn start_request(
    service: &Service,
    events: &mpsc::Receiver<&'static str>,
    path: &str,
    body: &str,
) -> std::net::TcpStream {
    let mut stream = connect(service.addr);
    let mut bytes = head(
        "POST",
        path,
        &["Content-Type: application/json"],
        Some(body.len()),
    );
    bytes.extend_from_slice(body.as_bytes());
    stream.write_all(&bytes).unwrap();
    assert_eq!(next(events), "started");
    stream
}

#[test]
fn a_client_that_disconnects_cancels_its_sync_entry_whose_side_effect_never_happens() {
    let service = Service::start(WebConfig::default());
    let events = service.events();
    let stream = start_request(&service, &events, "/wait", r#"{"ms": 20000}"#);
    drop(stream);
    assert_eq!(next(&events), "cancelled");
    assert_eq!(service.state.effects.load(Ordering::SeqCst), 0);
    let metrics = request(service.addr, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(r#"molt_web_requests_total{route="/wait",status="client_closed"} 1"#),
        "{text}"
    );
}

#[test]
fn a_client_that_disconnects_drops_its_async_entry() {
    let service = Service::start(WebConfig::default());
    let events = service.events();
    let stream = start_request(&service, &events, "/wait_async", r#"{"ms": 20000}"#);
    drop(stream);
    assert_eq!(next(&events), "dropped");
    assert_eq!(service.state.effects.load(Ordering::SeqCst), 0);
}

#[test]
fn an_entry_at_its_concurrency_limit_is_429_with_retry_after() {
    let service = Service::start(WebConfig::default());
    let events = service.events();
    let _running = start_request(&service, &events, "/wait", r#"{"ms": 20000}"#);
    let response = post_json(service.addr, "/wait", r#"{"ms": 1}"#);
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(response.error().0, "Busy");
}

#[test]
fn busy_can_be_503() {
    let config = WebConfig {
        busy_status: BusyStatus::ServiceUnavailable,
        retry_after: Duration::from_millis(2500),
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let response = post_json(service.addr, "/fail", r#""busy""#);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("3"));
}

#[test]
fn past_max_in_flight_requests_are_busy_at_once() {
    let config = WebConfig {
        max_in_flight: 1,
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let events = service.events();
    let _running = start_request(&service, &events, "/wait_async", r#"{"ms": 20000}"#);
    let response = post_json(service.addr, "/items", r#"{"user_id": 1, "limit": 1}"#);
    assert_eq!(response.status, 429);
    assert!(
        response.error().1.contains("in flight"),
        "{:?}",
        response.error()
    );
}

#[test]
fn each_entry_error_has_its_status() {
    let service = Service::start(WebConfig::default());
    let cases = [
        ("busy", 429, "Busy"),
        ("unavailable", 503, "Unavailable"),
        ("timeout", 504, "Timeout"),
        ("internal", 500, "InternalError"),
        ("other", 400, "InvalidInput"),
    ];
    for (kind, status, code) in cases {
        let response = post_json(service.addr, "/fail", &format!("{kind:?}"));
        assert_eq!(response.status, status, "{kind}");
        assert_eq!(response.error().0, code, "{kind}");
    }
    let unavailable = post_json(service.addr, "/fail", r#""unavailable""#);
    assert_eq!(unavailable.header("retry-after"), Some("1"));
    assert_eq!(unavailable.error().1, "the database is down");
}

#[test]
fn a_panicking_entry_is_500_with_a_safe_message() {
    let service = Service::start(WebConfig::default());
    let response = post_json(service.addr, "/panic", "null");
    assert_eq!(response.status, 500);
    assert_eq!(
        response.error(),
        ("InternalError".into(), "internal error".into())
    );
    assert!(!String::from_utf8_lossy(&response.body).contains(".rs"));
}

#[test]
fn the_request_id_is_echoed_or_given() {
    let service = Service::start(WebConfig::default());
    let given = request(
        service.addr,
        "POST",
        "/nothing",
        &["X-Request-Id: abc-123"],
        b"",
    );
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
    let generated = request(service.addr, "POST", "/nothing", &[], b"");
    let id = generated.header("x-request-id").expect("an id");
    assert!(id.parse::<u64>().is_ok(), "{id}");
}

#[test]
fn metrics_count_requests_per_route_and_status() {
    let service = Service::start(WebConfig::default());
    post_json(service.addr, "/items", r#"{"user_id": 1, "limit": 1}"#);
    post_json(service.addr, "/items", r#"{"user_id": 1}"#);
    request(service.addr, "GET", "/nope", &[], b"");
    // Answered 504 at its 30 ms deadline: it cannot land in a bucket below 30 ms.
    request(
        service.addr,
        "POST",
        "/wait_async",
        &["X-Molt-Timeout-Ms: 30"],
        br#"{"ms": 20000}"#,
    );
    let metrics = request(service.addr, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        r#"molt_web_requests_total{route="/items",status="200"} 1"#,
        r#"molt_web_requests_total{route="/items",status="400"} 1"#,
        r#"molt_web_requests_total{route="unmatched",status="404"} 1"#,
        r#"molt_web_request_seconds_count{route="/items"} 2"#,
        r#"molt_web_request_seconds_bucket{route="/wait_async",le="0.025"} 0"#,
        r#"molt_web_request_seconds_bucket{route="/wait_async",le="+Inf"} 1"#,
        "molt_web_requests_in_flight 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[test]
fn shutdown_drains_the_request_in_flight_and_accepts_no_more() {
    let config = WebConfig {
        shutdown_grace: Duration::from_secs(20),
        ..WebConfig::default()
    };
    let mut service = Service::start(config);
    let events = service.events();
    let mut in_flight = start_request(&service, &events, "/wait_async", r#"{"ms": 300}"#);
    service.shut_down();
    let response = read_response(&mut in_flight);
    assert_eq!(response.status, 200);
    assert_eq!(service.state.effects.load(Ordering::SeqCst), 1);
    assert!(std::net::TcpStream::connect(service.addr).is_err());
}

#[test]
fn past_the_shutdown_grace_requests_in_flight_are_cancelled() {
    let config = WebConfig {
        shutdown_grace: Duration::from_millis(100),
        ..WebConfig::default()
    };
    let mut service = Service::start(config);
    let events = service.events();
    let mut in_flight = start_request(&service, &events, "/wait", r#"{"ms": 20000}"#);
    service.shut_down();
    assert_eq!(next(&events), "cancelled");
    assert!(common::closed(&mut in_flight));
    assert_eq!(service.state.effects.load(Ordering::SeqCst), 0);
}

#[test]
fn a_client_that_never_finishes_its_head_is_disconnected() {
    let config = WebConfig {
        header_read_timeout: Duration::from_millis(200),
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let mut stream = connect(service.addr);
    stream
        .write_all(b"POST /items HTTP/1.1\r\nHost: te")
        .unwrap();
    // hyper may answer 408 before closing; either way the connection ends.
    assert!(common::closed_or_answered(&mut stream));
}

#[test]
fn a_body_that_never_arrives_is_408() {
    let config = WebConfig {
        body_read_timeout: Duration::from_millis(200),
        ..WebConfig::default()
    };
    let service = Service::start(config);
    let mut stream = connect(service.addr);
    let mut bytes = head(
        "POST",
        "/items",
        &["Content-Type: application/json"],
        Some(100),
    );
    bytes.extend_from_slice(br#"{"user_id""#);
    stream.write_all(&bytes).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 408);
    assert_eq!(response.error().0, "RequestTimeout");
}
