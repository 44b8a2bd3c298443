//! The connections of one PostgreSQL backend, each kept beside its server process id, so that the statement
//! of a call that was cut (its future dropped by the deadline or a cancellation) can be cancelled on the
//! server.
//!
//! Not sqlx's pool, for two things it cannot do: free a connection only once the server has stopped the
//! statement of a dropped call (sqlx's pool waits, connection held, for the statement to end on its own), and
//! tell a server that refuses connections from a pool that is merely busy (sqlx's pool retries a refused
//! connect until its acquire timeout, then reports only that it timed out).
//!
//! - A call waits for a slot (at most `max_connections` connections, idle or lent) no longer than the acquire
//!   timeout, then takes an idle connection that answers a ping, or opens one: a failed connect fails the
//!   call at once, with its cause.
//! - A [`Lease`] dropped while its statement runs sends `pg_cancel_backend(pid)` from another connection —
//!   again while the statement's connection has not drained — then closes that connection; its slot is free
//!   only then, so the server never runs more of this backend's statements than the pool has slots.

use std::{pin::pin, sync::Arc, time::Duration};

use parking_lot::Mutex;
use sqlx::{
    Connection,
    postgres::{PgConnectOptions, PgConnection},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::super::DbError;

/// How long a ping of an idle connection, or a graceful close, may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a cancel request (connect, `pg_cancel_backend`) may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a cut statement's connection may take to drain after a cancel request before another is sent: a
/// request that reaches the server before the statement starts (still in the connection's write buffer when
/// the call was cut) cancels nothing.
const CANCEL_EVERY: Duration = Duration::from_millis(500);
/// Cancel requests sent for one cut statement before its connection is dropped without waiting further.
const CANCEL_ATTEMPTS: u32 = 4;
/// A connection idle this long is closed rather than pinged when next wanted: a firewall may have dropped it
/// without a word, and a ping would wait for an answer that never comes (sqlx's pool default, too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The connections of one backend.
pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    options: PgConnectOptions,
    /// One permit per connection, idle or lent; closed by [`Pool::close`].
    slots: Arc<Semaphore>,
    /// With the time each was put back; the most recently used last.
    idle: Mutex<Vec<(Conn, Instant)>>,
    acquire_timeout: Duration,
}

/// A connection and the id of its server process, which `pg_cancel_backend` names.
struct Conn {
    raw: PgConnection,
    pid: i32,
}

impl Conn {
    async fn open(options: &PgConnectOptions, within: Duration) -> Result<Self, String> {
        let attempt = async {
            let mut raw = PgConnection::connect_with(options).await?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut raw).await?;
            Ok::<_, sqlx::Error>(Self { raw, pid })
        };
        match tokio::time::timeout(within, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {within:?}")),
        }
    }

    async fn close(self) {
        let _ = tokio::time::timeout(CHECK_TIMEOUT, self.raw.close()).await;
    }
}

impl Pool {
    /// A pool of at most `max_connections`, one opened now to fail early on a wrong URL or password.
    pub async fn open(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, String> {
        let first = Conn::open(&options, acquire_timeout).await?;
        let slots = usize::try_from(max_connections.max(1)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let shared = Shared {
            options,
            slots: Arc::new(Semaphore::new(slots)),
            idle: Mutex::new(vec![(first, Instant::now())]),
            acquire_timeout,
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// A connection for one call. A busy pool is waited on for the acquire timeout; a server that cannot be
    /// reached fails the call at once.
    pub async fn acquire(&self) -> Result<Lease, DbError> {
        let shared = &self.shared;
        let slot =
            match tokio::time::timeout(shared.acquire_timeout, Arc::clone(&shared.slots).acquire_owned())
                .await
            {
                Ok(Ok(slot)) => slot,
                Ok(Err(_closed)) => {
                    return Err(DbError::Unavailable("the connection pool is closed".to_owned()));
                }
                Err(_) => {
                    return Err(DbError::Unavailable(format!(
                        "no database connection free within {:?}",
                        shared.acquire_timeout
                    )));
                }
            };
        let conn = shared.checkout().await?;
        Ok(Lease { held: Some((conn, slot)), shared: Arc::clone(shared), running: false })
    }

    /// Refuse new calls and close the idle connections; lent ones are closed when their calls end.
    pub async fn close(&self) {
        self.shared.slots.close();
        let idle = std::mem::take(&mut *self.shared.idle.lock());
        for (conn, _) in idle {
            conn.close().await;
        }
    }
}

impl Shared {
    /// An idle connection that answers a ping, or a new one.
    async fn checkout(&self) -> Result<Conn, DbError> {
        loop {
            // A statement of its own: the lock must not be held across the ping.
            let idle = self.idle.lock().pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < IDLE_TIMEOUT
                && matches!(tokio::time::timeout(CHECK_TIMEOUT, conn.raw.ping()).await, Ok(Ok(())))
            {
                return Ok(conn);
            }
            // Stale, or dead (the server restarted, the network cut it): dropped, its socket with it.
        }
        Conn::open(&self.options, self.acquire_timeout)
            .await
            .map_err(|e| DbError::Unavailable(format!("cannot connect to the database: {e}")))
    }

    /// Back among the idle connections once it is ready for another statement (a ping sends what a dropped
    /// transaction queued, its `ROLLBACK`, and waits for it), unless the pool is closed.
    async fn put_back(&self, mut conn: Conn) {
        let ready = matches!(tokio::time::timeout(CHECK_TIMEOUT, conn.raw.ping()).await, Ok(Ok(())));
        if !ready {
            return;
        }
        let closing = {
            let mut idle = self.idle.lock();
            // Checked under the lock: `close` closes the semaphore before it empties `idle`.
            if self.slots.is_closed() {
                Some(conn)
            } else {
                idle.push((conn, Instant::now()));
                None
            }
        };
        if let Some(conn) = closing {
            conn.close().await;
        }
    }

    /// Stop the statement running on `conn`, whose call was cut: cancel requests from another connection
    /// until `conn` has drained (the statement ended, with the cancellation's error or not, and what was
    /// queued after it ran), then close `conn`. It is not reused: a repeated request may have reached the
    /// `ROLLBACK` queued after the statement and left a failed transaction behind.
    async fn stop(&self, mut conn: Conn) {
        let pid = conn.pid;
        let mut stopped = None;
        {
            let mut drained = pin!(drain(&mut conn.raw));
            for _ in 0..CANCEL_ATTEMPTS {
                if let Err(error) = self.cancel(pid).await {
                    tracing::warn!(pid, %error, "cannot cancel the statement of a cut call");
                }
                if let Ok(drained) = tokio::time::timeout(CANCEL_EVERY, &mut drained).await {
                    stopped = Some(drained);
                    break;
                }
            }
        }
        match stopped {
            Some(true) => conn.close().await,
            // The connection is lost: nothing to close gracefully.
            Some(false) => {}
            None => {
                tracing::warn!(pid, "the statement of a cut call did not stop; its connection is dropped")
            }
        }
    }

    /// `pg_cancel_backend(pid)` on an idle connection of the pool if one is free now, else on a short-lived
    /// one of its own — never waiting for a slot.
    async fn cancel(&self, pid: i32) -> Result<(), String> {
        let borrowed = Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .and_then(|slot| self.idle.lock().pop().map(|(conn, _)| (conn, slot)));
        let request = sqlx::query("SELECT pg_cancel_backend($1)").bind(pid);
        match borrowed {
            Some((mut conn, slot)) => {
                let sent = tokio::time::timeout(CANCEL_TIMEOUT, request.execute(&mut conn.raw)).await;
                let result = match sent {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {CANCEL_TIMEOUT:?}")),
                };
                if result.is_ok() {
                    self.put_back(conn).await;
                }
                drop(slot);
                result
            }
            None => {
                let sent = tokio::time::timeout(CANCEL_TIMEOUT, async {
                    let mut conn = PgConnection::connect_with(&self.options).await?;
                    request.execute(&mut conn).await?;
                    conn.close().await
                })
                .await;
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {CANCEL_TIMEOUT:?}")),
                }
            }
        }
    }
}

/// Read until the connection is ready for another statement, past the errors the server sends (the
/// cancelled statement's, those of what was queued after it); `false` when the connection is lost.
async fn drain(conn: &mut PgConnection) -> bool {
    loop {
        match conn.ping().await {
            Ok(()) => return true,
            Err(sqlx::Error::Database(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A connection lent to one call, with its slot. Dropped, it goes back to the pool — or, when the call was cut
/// while its statement ran, the statement is stopped on the server first and the connection closed.
pub(super) struct Lease {
    held: Option<(Conn, OwnedSemaphorePermit)>,
    shared: Arc<Shared>,
    /// Set while [`Lease::run`] has work on the server: still set at drop, the work was cut.
    running: bool,
}

impl Lease {
    /// Run `work` on the connection; if this future is dropped before `work` ends, dropping the lease stops
    /// it on the server.
    pub async fn run<T>(&mut self, work: impl AsyncFnOnce(&mut PgConnection) -> T) -> T {
        let Some((conn, _)) = self.held.as_mut() else {
            unreachable!("a lease holds its connection until it is dropped")
        };
        self.running = true;
        let output = work(&mut conn.raw).await;
        self.running = false;
        output
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some((conn, slot)) = self.held.take() else { return };
        // Without a runtime (it is shutting down) the connection is dropped, its socket closed.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let shared = Arc::clone(&self.shared);
        let cut = self.running;
        runtime.spawn(async move {
            if cut {
                shared.stop(conn).await;
            } else {
                shared.put_back(conn).await;
            }
            // Free the slot last: the next call finds the connection idle, or the server done with it.
            drop(slot);
        });
    }
}
