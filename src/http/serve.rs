//! Serving connections (HTTP/1.1) within `[http]`'s limits: a client that sends half a request,
//! or nothing, or keeps a connection open with nothing in flight, is cut off; at most
//! `max_connections` are open at once. axum's own `serve` has none of these.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::config::HttpConfig;

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish and returns once every connection has closed.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections;
    let slots = Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX)));
    let (closing, closing_seen) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: give connections time to end.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Refused at once rather than queued: a queue would let idle sockets starve the
        // clients behind them until the timeouts free a slot.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, max_connections = max, "connection refused: too many open");
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            limits.clone(),
            closing_seen.clone(),
            slot,
        ));
    }
    closing.send_replace(true);
    // Each connection holds its slot until it ends: all slots back means all connections ended.
    let _all = slots.acquire_many(max).await;
}

/// One connection, until the client closes it, a limit cuts it off, or the server shuts down.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpConfig,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let app = TowerToHyperService::new(app);
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = activity.begin();
            let response = app.call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut ending = false;
    // Once ending, the connection gets this long to finish what is in flight; a client that
    // does not read its answers would otherwise hold the connection (and delay shutdown) forever.
    let mut cut_off = Instant::now();
    loop {
        let recheck = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(recheck), if !ending => {
                if activity.idle_for() >= limits.idle_timeout {
                    // Closes at once when idle; a request that just arrived is answered first.
                    conn.as_mut().graceful_shutdown();
                    ending = true;
                    cut_off = Instant::now() + limits.idle_timeout;
                }
            }
            _ = closing.wait_for(|closing| *closing), if !ending => {
                conn.as_mut().graceful_shutdown();
                ending = true;
                cut_off = Instant::now() + limits.idle_timeout;
            }
            () = tokio::time::sleep_until(cut_off), if ending => {
                tracing::debug!(%peer, "connection cut off: it did not end in time");
                return;
            }
        }
    }
}

/// Requests in flight on a connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` at which the last request ended (0: none yet).
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// How long the connection has had nothing in flight (zero while a request is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst));
        self.opened.elapsed().saturating_sub(since)
    }

    /// When to look again whether the connection has been idle for `idle_timeout`.
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        Instant::now() + idle_timeout.saturating_sub(self.idle_for())
    }
}

/// A request in flight; its drop records when it ended.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let done = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(done, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
