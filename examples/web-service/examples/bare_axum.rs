//! The service's `POST /items` and `POST /db/items` on bare axum, the benchmark's reference
//! (`bench/scripts/web_bench.py`): the same entries, built from the same manifest and called
//! through `molt_worker::embed` as molt-web calls them, in a plain axum route served by
//! `axum::serve`. What molt-web adds is left out: content negotiation (JSON only here),
//! deadlines, body limits, the error mapping, and the layers (request id, access log, metrics,
//! in-flight limit, route timeout).
//!
//! `bare_axum 127.0.0.1:PORT [--exports PATH]` (port 0: any free one, shown on the ready line);
//! loopback only. Runs until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use molt_demo_worker::DemoState;
use molt_web::axum::body::Bytes;
use molt_web::axum::http::{header, StatusCode};
use molt_web::axum::response::{IntoResponse, Response};
use molt_web::axum::routing::{get, post, MethodRouter};
use molt_web::axum::serve::ListenerExt;
use molt_web::axum::Router;
use molt_worker::embed::{CallOptions, Entries, Entry};
use molt_worker::{Codec, EntryError, Payload};

/// Calls `entry` with the JSON body; the reply as JSON, an error as its status and message.
async fn call(entry: Arc<Entry>, body: Bytes) -> Response {
    let payload = Payload::new(Codec::Json, body.to_vec());
    match entry.call(payload, CallOptions::new(Codec::Json)).await {
        Ok(reply) => {
            let (_, bytes) = reply.into_parts(Codec::Json);
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(error) => {
            let status = match error {
                EntryError::InvalidInput(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, error.message().to_owned()).into_response()
        }
    }
}

/// `POST` calling entry `name`.
fn entry_route(entries: &Entries<DemoState>, name: &str) -> MethodRouter {
    let entry = Arc::clone(entries.get(name).expect("the manifest enables the entry"));
    post(move |body: Bytes| call(Arc::clone(&entry), body))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|text| text.parse()) {
        Some(Ok(addr)) => addr,
        _ => {
            eprintln!("usage: bare_axum 127.0.0.1:PORT [--exports PATH]");
            return ExitCode::from(2);
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("bare_axum: refusing to listen on {addr}: not a loopback address");
        return ExitCode::from(2);
    }
    let exports: Option<PathBuf> = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--exports"), Some(path)) => Some(path.into()),
        _ => {
            eprintln!("usage: bare_axum 127.0.0.1:PORT [--exports PATH]");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let app = molt_demo_worker::app().exports(molt_web_service::EXPORTS);
    let entries = match app.into_entries(exports.as_deref(), runtime.handle()) {
        Ok(entries) => entries,
        Err(err) => {
            eprintln!("bare_axum: {err}");
            return ExitCode::from(1);
        }
    };
    let router = Router::new()
        .route("/items", entry_route(&entries, "list_items"))
        .route("/db/items", entry_route(&entries, "items_page"))
        .route("/healthz", get(|| async { "ok\n" }));
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("bare_axum: cannot listen on {addr}: {err}");
                return ExitCode::from(1);
            }
        };
        let shown = listener.local_addr().unwrap_or(addr);
        // The ready line, as molt-web's: the benchmark waits for it.
        eprintln!("bare_axum: listening on http://{shown}");
        // As molt-web's own listener: no Nagle delay on small answers.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        match molt_web::axum::serve(listener, router).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bare_axum: {err}");
                ExitCode::from(1)
            }
        }
    })
}
