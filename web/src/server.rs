//! Listening and serving: [`Bound`] is a listener that passed the loopback check; its
//! [`serve`](Bound::serve) runs hyper's HTTP/1.1 connections (head size and read-time limits,
//! a bound on open connections) until shutdown, then drains.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Listen, WebConfig};

/// A listener bound where a [`WebConfig`] says, ready to [`serve`](Bound::serve).
pub struct Bound {
    listener: Listener,
    config: WebConfig,
}

enum Listener {
    Tcp(TcpListener),
    /// The socket's path is removed when the service ends.
    Unix(UnixListener, PathBuf),
}

/// Binds `config.listen`. Refuses a non-loopback TCP address unless
/// `config.allow_non_loopback`; a unix socket is created mode 0600, replacing a stale
/// socket (never another kind of file) at its path. Must be called inside a tokio runtime.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use molt_web::{bind, Listen, WebConfig};
/// let public = WebConfig { listen: "0.0.0.0:0".parse().unwrap(), ..WebConfig::default() };
/// assert_eq!(bind(public).await.err().unwrap().kind(), std::io::ErrorKind::PermissionDenied);
/// let local = WebConfig { listen: "127.0.0.1:0".parse().unwrap(), ..WebConfig::default() };
/// assert!(bind(local).await.unwrap().local_addr().unwrap().ip().is_loopback());
/// # });
/// ```
pub async fn bind(config: WebConfig) -> io::Result<Bound> {
    config
        .check_listen()
        .map_err(|reason| io::Error::new(io::ErrorKind::PermissionDenied, reason))?;
    let listener = match &config.listen {
        Listen::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr).await?),
        Listen::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Listener::Unix(listener, path.clone())
        }
    };
    Ok(Bound { listener, config })
}

impl Bound {
    /// The TCP address bound (with the port chosen for port 0); `None` on a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Serves `router` until `shutdown` resolves; then stops accepting, lets the requests in
    /// flight finish within `shutdown_grace` (idle keep-alive connections are closed at
    /// once), and drops what is left: their entries' tokens fire.
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Bound { listener, config } = self;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            // Reap connections that ended, so the set holds only open ones.
            while connections.try_join_next().is_some() {}
            let io = match accepted {
                Ok(io) => io,
                Err(err) => {
                    // Out of fds and the like: wait a little instead of spinning on it.
                    log::warn!("accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(router.clone());
            match io {
                Io::Tcp(stream) => {
                    let _ = stream.set_nodelay(true);
                    spawn(&mut connections, &graceful, &http, stream, service, slot);
                }
                Io::Unix(stream) => {
                    spawn(&mut connections, &graceful, &http, stream, service, slot)
                }
            }
        }
        drop(listener);
        log::info!(
            "shutting down: draining {} connection(s) for at most {:?}",
            connections.len(),
            config.shutdown_grace
        );
        tokio::select! {
            () = graceful.shutdown() => log::info!("drained"),
            () = tokio::time::sleep(config.shutdown_grace) => {
                log::warn!("shutdown grace over: cancelling the requests still in flight");
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<Io> {
        match self {
            Self::Tcp(listener) => listener.accept().await.map(|(stream, _)| Io::Tcp(stream)),
            Self::Unix(listener, _) => listener.accept().await.map(|(stream, _)| Io::Unix(stream)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn spawn<I>(
    connections: &mut JoinSet<()>,
    graceful: &GracefulShutdown,
    http: &http1::Builder,
    stream: I,
    service: TowerToHyperService<Router>,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
    connections.spawn(async move {
        if let Err(err) = connection.await {
            log::debug!("connection ended: {err}");
        }
        drop(slot);
    });
}
