//! `--metrics-listen 127.0.0.1:PORT`: `GET /metrics` over plain HTTP/1.1 for a Prometheus
//! scraper on the same host.
//!
//! Deliberately minimal: one request per connection (`Connection: close`), a request head of
//! at most 8 KiB read within 5 s, at most 8 connections at once, loopback addresses only
//! (checked when the command line is parsed). It runs on the worker's tokio runtime; the
//! rendering itself goes to tokio's blocking pool so the timers stay punctual.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::WorkerMetrics;

/// Longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 << 10;
/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered 503 straight away.
const MAX_CONNECTIONS: usize = 8;
/// The content type of exposition format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` (must be called inside the runtime), so a taken port fails start-up.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Serves `/metrics` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: Arc<WorkerMetrics>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of fds and the like: wait a little instead of spinning on the error.
                log::warn!("metrics: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Relaxed: a counter bounding work; it guards no data.
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        }
        let metrics = Arc::clone(&metrics);
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            if let Err(err) = answer(stream, metrics).await {
                log::debug!("metrics: connection ended early: {err}");
            }
            // Relaxed: as for the fetch_add above.
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = respond(
        &mut stream,
        "503 Service Unavailable",
        "text/plain",
        b"busy\n",
    )
    .await;
}

async fn answer(mut stream: TcpStream, metrics: Arc<WorkerMetrics>) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return respond(&mut stream, "408 Request Timeout", "text/plain", b"").await,
    };
    let Some(head) = head else {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            b"",
        )
        .await;
    };
    match route(&head) {
        Route::Metrics { with_body } => {
            let text = tokio::task::spawn_blocking(move || metrics.prometheus_text())
                .await
                .map_err(std::io::Error::other)?;
            let body = if with_body { text.as_bytes() } else { b"" };
            respond(&mut stream, "200 OK", CONTENT_TYPE, body).await
        }
        Route::NotFound => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"GET /metrics\n",
            )
            .await
        }
        Route::MethodNotAllowed => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"GET /metrics\n",
            )
            .await
        }
        Route::BadRequest => respond(&mut stream, "400 Bad Request", "text/plain", b"").await,
    }
}

/// Reads up to the blank line ending the request head; `None` if it does not fit.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(head))
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (body) or `HEAD /metrics` (headers only).
    Metrics {
        with_body: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Routes on the request line (`METHOD TARGET HTTP/1.x`); headers are not needed.
fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { with_body: true },
        ("HEAD", "/metrics") => Route::Metrics { with_body: false },
        (_, "/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_head_of_metrics_are_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { with_body: true }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { with_body: true }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { with_body: false }
        );
    }

    #[test]
    fn other_requests_are_refused_with_the_right_status() {
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(
            route(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            Route::BadRequest
        );
    }
}
