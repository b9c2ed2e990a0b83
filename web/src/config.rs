//! [`WebConfig`]: where a service listens and the limits it serves under; and [`Listen`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use axum::http::StatusCode;

/// Where a service listens: a TCP address or a unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address; a non-loopback one is refused unless
    /// [`WebConfig::allow_non_loopback`] says otherwise.
    Tcp(SocketAddr),
    /// A unix socket at this path (created mode 0600; a stale socket there is replaced).
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;

    /// `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`) or `unix:PATH`.
    ///
    /// ```
    /// use molt_web::Listen;
    /// assert_eq!("unix:/run/app.sock".parse(), Ok(Listen::Unix("/run/app.sock".into())));
    /// assert!(matches!("127.0.0.1:0".parse(), Ok(Listen::Tcp(_))));
    /// assert!("localhost".parse::<Listen>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(Self::Unix(path.into()));
        }
        text.parse()
            .map(Self::Tcp)
            .map_err(|_| format!("{text:?} is neither HOST:PORT (an IP address) nor unix:PATH"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "http://{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The status a Busy answer goes out with: 429 tells a client it sent too much, 503 that the
/// service is overloaded (some proxies and clients retry only one of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyStatus {
    /// 429 Too Many Requests (the default).
    TooManyRequests,
    /// 503 Service Unavailable.
    ServiceUnavailable,
}

impl BusyStatus {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How a service listens and the limits it serves under. Every field has a safe default
/// ([`WebConfig::default`]): loopback only, bounded bodies, heads, deadlines, requests and
/// connections.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Where to listen. Default `127.0.0.1:8000`.
    pub listen: Listen,
    /// Whether a TCP address other than loopback may be bound. Default false: the service
    /// sits behind a reverse proxy on the same host.
    pub allow_non_loopback: bool,
    /// Largest request body, in bytes; a larger one is answered 413 (before it is read when
    /// `Content-Length` says so). An entry's manifest `max_payload_bytes` may lower it.
    /// Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), in bytes; hyper answers 431 past it.
    /// At least 8192. Default 16 KiB.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head (slow-loris bound). Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body, unless the request's deadline
    /// is sooner. Default 10 s.
    pub body_read_timeout: Duration,
    /// Deadline of a request whose `X-Molt-Timeout-Ms` header and entry manifest set none.
    /// Default none.
    pub default_timeout: Option<Duration>,
    /// The longest deadline a request may ask for in `X-Molt-Timeout-Ms` (a larger one is
    /// cut to it), and the bound on every route, an entry's or not (504 past it).
    /// Default 60 s.
    pub max_timeout: Duration,
    /// Requests handled at once; one more is answered Busy at once, not queued.
    /// Default 1024.
    pub max_in_flight: usize,
    /// Connections open at once; past it the service stops accepting until one closes.
    /// Default 1024.
    pub max_connections: usize,
    /// The status of a Busy answer. Default 429.
    pub busy_status: BusyStatus,
    /// The `Retry-After` of Busy and Unavailable answers (whole seconds, at least 1).
    /// Default 1 s.
    pub retry_after: Duration,
    /// How long SIGTERM waits for requests in flight before cancelling them. Default 10 s.
    pub shutdown_grace: Duration,
    /// Where the Prometheus text is served (`GET`); `None` serves none. Default
    /// `/metrics`: keep it off the paths a public proxy forwards.
    pub metrics_path: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000)),
            allow_non_loopback: false,
            max_body_bytes: 1 << 20,
            max_header_bytes: 16 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            default_timeout: None,
            max_timeout: Duration::from_secs(60),
            max_in_flight: 1024,
            max_connections: 1024,
            busy_status: BusyStatus::TooManyRequests,
            retry_after: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            metrics_path: Some("/metrics".to_owned()),
        }
    }
}

impl WebConfig {
    /// `Retry-After`'s value in whole seconds, rounded up, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }

    /// Whether this configuration may listen where it says; the reason if not.
    pub(crate) fn check_listen(&self) -> Result<(), String> {
        match &self.listen {
            Listen::Tcp(addr) if !addr.ip().is_loopback() && !self.allow_non_loopback => Err(
                format!(
                    "refusing to listen on {addr}: not a loopback address (allow_non_loopback / --allow-non-loopback to serve beyond this host)"
                ),
            ),
            _ => Ok(()),
        }
    }
}
