//! The accept loop of the HTTP edge, shared by the main listener and the metrics port: a cap on connections open
//! at once, a header-read timeout and an idle timeout per connection (`activity.rs`), TCP_NODELAY, the peer's
//! address on every request, and a drain that stops accepting and waits for the connections to close.
//!
//! `axum::serve` has none of the limits, and hyper's own HTTP/1 header-read timeout does not fit: it restarts
//! when an answer has been sent rather than at the next request's first byte (so it also closes idle keep-alive
//! connections, and no idle timeout longer than it could ever apply), it does not run while the auto builder
//! waits for the bytes that tell HTTP/1.1 from h2c (a connection that sends nothing is never closed), and HTTP/2
//! has none. One watchdog per connection covers all three cases.

mod activity;
mod connection;
mod descriptors;

pub(crate) use descriptors::raise_open_file_limit;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto::Builder,
};
use mcpgate_config::ServerConfig;
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::metrics::series::ConnectionMetrics;

/// HTTP/2 keep-alive: a PING after this long without frames from the client, and the connection is closed if
/// the answer takes longer than [`H2_PING_TIMEOUT`]. Finds dead peers of long-lived streams; an idle connection
/// is closed by the idle timeout whatever the PINGs.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long the answer to an HTTP/2 keep-alive PING may take before the connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A recurring warning is logged at most once per this period, with the count of those held back.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Backoff after an accept error that is not about one connection (EMFILE, ENFILE, ENOBUFS, ENOMEM): doubling
/// from the first to the last, reset by the next accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// A listener's limits: `server.header_read_timeout`, `idle_timeout` and `max_connections`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time a connection has to deliver a complete request head.
    pub(crate) header_read_timeout: Duration,
    /// Time a connection may have no request in progress.
    pub(crate) idle_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// What the log line at the cap calls `max_connections`: the setting, or the metrics port's fixed cap.
    pub(crate) cap_name: &'static str,
}

impl Limits {
    /// The limits the server section sets.
    pub(crate) fn of(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout.0,
            idle_timeout: server.idle_timeout.0,
            max_connections: server.max_connections,
            cap_name: "server.max_connections",
        }
    }
}

/// What every connection of a listener shares.
struct Shared {
    app: Router,
    builder: Builder<TokioExecutor>,
    limits: Limits,
    metrics: ConnectionMetrics,
    header_timeouts_log: Throttle,
}

/// Accept connections on `listener` and serve `app` on each until `stop` is cancelled; then stop accepting (the
/// listener is closed, so new connections are refused), ask every connection to close once its request in
/// progress is answered, and return when all have closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    stop: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    // The header-read timeout is the watchdog's (see the module's doc): hyper's is off.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let shared = Arc::new(Shared { app, builder, limits, metrics, header_timeouts_log: Throttle::new() });
    // One permit per connection: at the cap the loop waits for a permit before it accepts again, and the
    // connections beyond it wait in the kernel's backlog, as nginx and envoy do at theirs.
    let permits = u32::try_from(limits.max_connections).unwrap_or(u32::MAX).max(1);
    let seats = Arc::new(Semaphore::new(permits as usize));
    let (at_cap_log, accept_errors_log) = (Throttle::new(), Throttle::new());
    let mut backoff = ACCEPT_BACKOFF.0;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let permit = match seats.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                shared.metrics.limit_reached.inc();
                if let Some(more) = at_cap_log.due() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        cap = limits.cap_name,
                        reached_since_last_line = more,
                        "connection limit reached: not accepting until a connection closes"
                    );
                }
                tokio::select! {
                    biased;
                    () = stopped.as_mut() => break,
                    permit = seats.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            () = stopped.as_mut() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            // The client gave up between its SYN and our accept: nothing to wait for.
            Err(e) if about_one_connection(&e) => continue,
            // Out of descriptors or memory: accepting again at once would spin; wait for connections to close.
            Err(error) => {
                if let Some(more) = accept_errors_log.due() {
                    tracing::error!(%error, retry_in = ?backoff, errors_since_last_line = more, "cannot accept");
                }
                tokio::select! {
                    biased;
                    () = stopped.as_mut() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let seat = Seat::taken(permit, &shared.metrics);
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            connection::serve(stream, peer, shared, stop).await;
            drop(seat);
        });
    }
    drop(listener);
    // Every permit back: every connection has closed.
    let _ = seats.acquire_many(permits).await;
}

/// Accept errors that concern one connection only (it was reset before we took it).
fn about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// A connection's place under the cap, counted in `mcp_open_connections` while it is held.
struct Seat {
    _permit: OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Seat {
    fn taken(permit: OwnedSemaphorePermit, metrics: &ConnectionMetrics) -> Self {
        metrics.open.inc();
        Self { _permit: permit, open: metrics.open.clone() }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// At most one log line per [`LOG_PERIOD`] for an event that may recur thousands of times a second (a flood of
/// slow clients, a listener at its cap), counting the ones held back. Shared by the connections of a listener.
#[derive(Debug)]
struct Throttle {
    start: Instant,
    /// When the next line may be written, in ms after `start`.
    next: AtomicU64,
    held: AtomicU64,
}

impl Throttle {
    fn new() -> Self {
        Self { start: Instant::now(), next: AtomicU64::new(0), held: AtomicU64::new(0) }
    }

    /// `Some(events held back since the last line)` when a line is due now.
    fn due(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next.load(Ordering::Relaxed);
        let period = u64::try_from(LOG_PERIOD.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self.next.compare_exchange(next, now + period, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttled_line_is_due_once_per_period_and_counts_what_it_held_back() {
        let throttle = Throttle::new();
        assert_eq!(throttle.due(), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.due(), None);
        }
        tokio::time::advance(LOG_PERIOD).await;
        assert_eq!(throttle.due(), Some(5));
        assert_eq!(throttle.due(), None);
    }
}
