//! Load over loopback HTTP/1.1 (keep-alive connections, a fixed duration, stops by itself).
//!
//! `cargo bench -p molt-web --bench load` serves one handler three ways in this process and
//! loads each at concurrency 1 and 32: on bare axum (the handler called in the route), as a
//! molt-web inline entry, and as a molt-web compute entry (tokio's blocking pool), all behind
//! molt-web's full layers but the first. Options after `--`:
//!
//! - `--seconds N` per run (default 5), `--concurrency 1,32,...`;
//! - `--url http://127.0.0.1:PORT/path --body JSON`: load that service instead (the example
//!   service's `/items`, say).
//!
//! Prints req/s, p50, p99 and p99.9 per run. Client and server share the machine, so the
//! figures are for comparing the runs with each other, not absolute capacity.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use molt_web::{Web, WebConfig};
use molt_worker::App;

#[path = "common/list_items.rs"]
mod handler;
use handler::{bare, list_items, BODY};

struct Options {
    seconds: u64,
    concurrency: Vec<usize>,
    target: Option<(String, String)>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5,
        concurrency: vec![1, 32],
        target: None,
    };
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut body = BODY.to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().unwrap().parse().unwrap(),
            "--concurrency" => {
                options.concurrency = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.parse().unwrap())
                    .collect();
            }
            "--url" => url = args.next(),
            "--body" => body = args.next().unwrap(),
            // cargo bench passes --bench; anything else is a mistake worth seeing.
            "--bench" => {}
            other => panic!("unknown option {other:?}"),
        }
    }
    options.target = url.map(|url| (url, body));
    options
}

/// Splits `http://HOST:PORT/path`.
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    (
        authority.parse().expect("HOST:PORT with an IP address"),
        format!("/{path}"),
    )
}

/// One run: `concurrency` connections sending `body` to `path` for `seconds`.
async fn load(
    addr: SocketAddr,
    path: &str,
    body: &str,
    concurrency: usize,
    seconds: u64,
) -> String {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (path, body) = (path.to_owned(), Bytes::from(body.to_owned()));
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut latencies = Histogram::<u64>::new(3).unwrap();
            let mut failures = 0u64;
            while Instant::now() < until {
                let request = hyper::Request::post(path.as_str())
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let started = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                let ok = response.status().is_success();
                response.into_body().collect().await.unwrap();
                latencies
                    .record(started.elapsed().as_nanos() as u64)
                    .expect("the histogram grows to fit");
                failures += u64::from(!ok);
            }
            (latencies, failures)
        }));
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    let mut failures = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.add(&latencies).unwrap();
        failures += failed;
    }
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1e3;
    format!(
        "c={concurrency:<4} {:>9.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  non-2xx {failures}",
        all.len() as f64 / seconds as f64,
        us(0.5),
        us(0.99),
        us(0.999),
    )
}

/// Serves `router` on a loopback port of its own; returns the address.
async fn serve(router: Router) -> SocketAddr {
    let config = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..WebConfig::default()
    };
    let bound = molt_web::bind(config).await.unwrap();
    let addr = bound.local_addr().unwrap();
    tokio::spawn(bound.serve(router, std::future::pending()));
    addr
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some((url, body)) = &options.target {
        let (addr, path) = split_url(url);
        for &concurrency in &options.concurrency {
            let line = runtime.block_on(load(addr, &path, body, concurrency, options.seconds));
            println!("{url}  {line}");
        }
        return;
    }
    let app = App::new()
        .inline_entry("list_items_inline", list_items)
        .entry("list_items", list_items);
    let entries = app.into_entries(None, runtime.handle()).unwrap();
    let web = Web::new(entries, WebConfig::default());
    let routes = Router::new()
        .route("/inline", web.entry("list_items_inline"))
        .route("/pooled", web.entry("list_items"));
    let molt = runtime.block_on(serve(web.finish(routes)));
    let unlayered = runtime.block_on(serve(
        Router::new().route("/inline", web.entry("list_items_inline")),
    ));
    let bare_addr = runtime.block_on(serve(Router::new().route("/bare", post(bare))));
    let runs = [
        ("bare axum          ", bare_addr, "/bare"),
        ("entry, no layers   ", unlayered, "/inline"),
        ("molt-web inline    ", molt, "/inline"),
        ("molt-web compute   ", molt, "/pooled"),
    ];
    for &concurrency in &options.concurrency {
        for (name, addr, path) in runs {
            let line = runtime.block_on(load(addr, path, BODY, concurrency, options.seconds));
            println!("{name} {line}");
        }
    }
}
