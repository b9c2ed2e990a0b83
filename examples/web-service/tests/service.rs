//! The example service as its users run it: the real binary on loopback, real HTTP, a real
//! PostgreSQL (`python3 scripts/pgcluster.py run -- cargo test -p molt-web-service`; `make
//! test` does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous bound that only a hung service or a lost cancel exceeds.
const HANG_BOUND: Duration = Duration::from_secs(20);

/// A running service binary, killed on drop.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(binary: &str, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the service starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the service exited before listening: {:?}", child.wait());
            }
            if let Some(addr) = line.trim().strip_prefix("molt-web: listening on http://") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining stderr so the service never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child, addr }
    }

    fn test_binary() -> Self {
        Self::start(env!("CARGO_BIN_EXE_molt-web-service-test"), &[])
    }

    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid, not yet reaped (we own the Child); it
        // touches no memory of ours.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < HANG_BOUND, "the service did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a `POST` of a JSON `body` to `path`.
fn send_post(addr: SocketAddr, path: &str, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_BOUND)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// Reads a `Connection: close` response: its status and body.
fn read_response(mut stream: TcpStream) -> (u16, Vec<u8>) {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&bytes[..split]);
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, bytes[split + 4..].to_vec())
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_BOUND)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let (status, body) = read_response(stream);
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Vec<u8>) {
    read_response(send_post(addr, path, body))
}

#[test]
fn http_answers_the_same_bytes_as_the_worker_for_the_same_entry() {
    let service = Service::start(env!("CARGO_BIN_EXE_molt-web-service"), &[]);
    let request = r#"{"user_id": 42, "limit": 5, "status": "open", "rows": 300}"#;
    let (status, body) = post(service.addr, "/items", request);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let in_process = molt_demo_worker::app()
        .test_client()
        .unwrap()
        .call(
            "list_items",
            molt_worker::Payload::new(molt_worker::Codec::Json, request.as_bytes().to_vec()),
        )
        .unwrap();
    assert_eq!(body, in_process.bytes());
}

#[test]
fn a_broken_contract_is_400_with_the_entrys_message() {
    let service = Service::start(env!("CARGO_BIN_EXE_molt-web-service"), &[]);
    let (status, body) = post(service.addr, "/items", r#"{"user_id": 0}"#);
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "InvalidInput");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user_id"),
        "{body}"
    );
}

#[test]
fn a_non_loopback_address_is_refused_at_start_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_molt-web-service"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[test]
fn sigterm_drains_the_request_in_flight_then_exits_cleanly() {
    let mut service = Service::test_binary();
    let in_flight = send_post(service.addr, "/test/sleep_async", r#"{"ms": 500}"#);
    // In flight: the sleep and the metrics request that sees it.
    let started = Instant::now();
    while !get(service.addr, "/metrics").contains("molt_web_requests_in_flight 2\n") {
        assert!(started.elapsed() < HANG_BOUND, "the request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    service.terminate();
    let (status, body) = read_response(in_flight);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(service.wait().success());
}

/// A connection to the test cluster, as its owner.
async fn postgres() -> tokio_postgres::Client {
    let dsn = std::env::var("MOLT_PG_DSN").expect(
        "MOLT_PG_DSN is not set: run under `python3 scripts/pgcluster.py run -- cargo test -p molt-web-service` (make test does)",
    );
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("the test cluster accepts molt");
    tokio::spawn(connection);
    client
}

/// How many of the service's slow inserts run on the server now.
async fn sleeping(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE '%INSERT INTO web_notes%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Polls `condition` until it holds; fails after the hang bound.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < HANG_BOUND, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_statement_on_the_server_and_nothing_is_written() {
    let client = postgres().await;
    client
        .batch_execute(include_str!("../schema.sql"))
        .await
        .unwrap();
    let service = Service::test_binary();
    let tag = format!("disconnect-{}", std::process::id());
    // Sleeps 25 s on the server before inserting: longer than the hang bound, so only a
    // cancel on the server ends it in time.
    let body = format!(r#"{{"user_id": 1, "body": "{tag}", "delay_s": 25}}"#);
    let stream = send_post(service.addr, "/test/slow_add_note", &body);
    until("the statement runs on the server", || async {
        sleeping(&client).await == 1
    })
    .await;
    drop(stream);
    until("the statement is cancelled on the server", || async {
        sleeping(&client).await == 0
    })
    .await;
    let written: i64 = client
        .query_one("SELECT count(*) FROM web_notes WHERE body = $1", &[&tag])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "the cancelled insert was written");
    // The service goes on serving, its connection back in the pool.
    let quick = format!(r#"{{"user_id": 1, "body": "{tag}-after", "delay_s": 0}}"#);
    let addr = service.addr;
    let (status, reply) =
        tokio::task::spawn_blocking(move || post(addr, "/test/slow_add_note", &quick))
            .await
            .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
}
