//! What molt-web costs per request, without sockets or a load generator: one request at a time
//! through the router in-process (tower's `oneshot`, on a current-thread runtime), so that
//! the figures compare the stacks and nothing else.
//!
//! `cargo bench -p molt-web --bench layers` runs each stack for `--requests N` (default
//! 100,000) after a warm-up and prints the median time per request of `--rounds R` (default
//! 5) rounds:
//!
//! - `bare axum`: the handler in an axum route (decode, call, encode);
//! - `bare axum + layers`: the same route inside [`Web::finish`]'s layers;
//! - `entry, no layers`: the handler as a molt-web inline entry (`Web::entry`), no layers;
//! - `molt-web`: the entry inside the layers, as a service serves it.
//!
//! `--only NAME` runs one stack (for a profiler); every request goes through one
//! `#[inline(never)]` function, `serve_requests`, so that under callgrind
//! `valgrind --tool=callgrind --toggle-collect='*serve_requests*' target/release/deps/layers-* --only molt-web --requests 20000 --rounds 1`
//! counts the instructions of the requests alone (divide by the requests; docs/web.md).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use molt_web::{Web, WebConfig};
use molt_worker::App;
use tower::ServiceExt;

#[path = "common/list_items.rs"]
mod handler;
use handler::{bare, list_items, BODY};

struct Options {
    requests: usize,
    rounds: usize,
    only: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        requests: 100_000,
        rounds: 5,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--requests" => options.requests = value().parse().expect("--requests N"),
            "--rounds" => options.rounds = value().parse().expect("--rounds N"),
            "--only" => options.only = Some(value()),
            // cargo bench passes --bench; anything else is a mistake worth seeing.
            "--bench" => {}
            other => panic!("unknown option {other:?}"),
        }
    }
    options
}

/// Sends `requests` requests to `router`, one after the other, each answered in full.
#[inline(never)]
async fn serve_requests(router: &Router, requests: usize) {
    for _ in 0..requests {
        let request = Request::post("/items")
            .header("content-type", "application/json")
            .body(Body::from(BODY))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await.unwrap();
    }
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let entries = App::new()
        .inline_entry("list_items", list_items)
        .into_entries(None, runtime.handle())
        .unwrap();
    // The access log is off (no logger is installed), as in a benchmark of a service.
    let web = Web::new(entries, WebConfig::default());
    let stacks = [
        ("bare axum", Router::new().route("/items", post(bare))),
        (
            "bare axum + layers",
            web.finish(Router::new().route("/items", post(bare))),
        ),
        (
            "entry, no layers",
            Router::new().route("/items", web.entry("list_items")),
        ),
        (
            "molt-web",
            web.finish(Router::new().route("/items", web.entry("list_items"))),
        ),
    ];
    if let Some(only) = &options.only {
        assert!(
            stacks.iter().any(|(name, _)| name == only),
            "no stack {only:?}"
        );
    }
    for (name, router) in &stacks {
        if options.only.as_ref().is_some_and(|only| only != name) {
            continue;
        }
        runtime.block_on(serve_requests(router, options.requests / 10 + 1));
        let mut rounds: Vec<Duration> = (0..options.rounds.max(1))
            .map(|_| {
                let started = Instant::now();
                runtime.block_on(serve_requests(router, options.requests));
                started.elapsed()
            })
            .collect();
        rounds.sort();
        let median = rounds[rounds.len() / 2];
        println!(
            "{name:<20} {:>8.0} ns/request (median of {} rounds of {})",
            median.as_nanos() as f64 / options.requests as f64,
            rounds.len(),
            options.requests
        );
    }
}
