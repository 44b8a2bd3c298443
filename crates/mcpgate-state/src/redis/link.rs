//! One node's connections to Redis, and whether Redis can be reached.
//!
//! A [`Link`] holds `connections` multiplexed connections (each pipelines every command in flight) to the server
//! the config names — or to the master Sentinel names at the time of connecting. While it is up, stores take a
//! connection and send their command; a command that fails for the connection's sake (refused, reset, timed out,
//! or a master that has become a replica) marks the link down. Down, stores do not wait on Redis at all: they fall
//! back at once (local buckets, no cache), and one task reconnects with backoff — asking Sentinel afresh, so a
//! failover is followed — and marks the link up again. Each transition is logged once.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcpgate_config::{RedisTarget, StateConfig};
use mcpgate_policy::StoreHealth;
use parking_lot::Mutex;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    RedisError,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tokio::sync::Notify;

/// Where to connect: one server, or whichever master Sentinel names.
enum Target {
    Server(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A node's connections to Redis and their state.
pub(crate) struct Link {
    target: Target,
    options: AsyncConnectionConfig,
    /// Bounds asking Sentinel for the master too.
    connect_timeout: Duration,
    connections: Mutex<Vec<MultiplexedConnection>>,
    size: usize,
    next: AtomicUsize,
    up: AtomicBool,
    /// Why it is down (the last failure), for `/ready` and `/status`.
    reason: Mutex<String>,
    /// Wakes the reconnecting task; notified when a command fails and when the link is dropped.
    wake: Arc<Notify>,
    /// Where the connections go, for logs (never a password).
    pub(crate) describe: String,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("to", &self.describe).field("up", &self.is_up()).finish_non_exhaustive()
    }
}

impl Link {
    /// The link `config` describes, and the task that connects it (now, and again after every failure). Fails on
    /// a URL or Sentinel setting the redis client refuses (validation catches those first).
    pub(crate) fn start(config: &StateConfig) -> Result<Arc<Self>, String> {
        let (target, describe) = target(config)?;
        let options = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout.0))
            .set_response_timeout(Some(config.command_timeout.0));
        let link = Arc::new(Self {
            target,
            options,
            connect_timeout: config.connect_timeout.0,
            connections: Mutex::new(Vec::new()),
            size: usize::from(config.connections.get()),
            next: AtomicUsize::new(0),
            up: AtomicBool::new(false),
            reason: Mutex::new("not connected yet".into()),
            wake: Arc::new(Notify::new()),
            describe,
        });
        tokio::spawn(reconnect(Arc::downgrade(&link), link.wake.clone()));
        Ok(link)
    }

    /// Whether Redis answered the last command.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Up, or down with the last failure, for `/ready` and `/status`.
    pub(crate) fn health(&self) -> StoreHealth {
        if self.is_up() { StoreHealth::Up } else { StoreHealth::Down(self.reason.lock().clone()) }
    }

    /// A connection to send a command on; `None` while the link is down (fall back, do not wait).
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        let connections = self.connections.lock();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % connections.len().max(1);
        connections.get(i).cloned()
    }

    /// Report a failed command. A failure of the connection (not of the command itself) marks the link down and
    /// wakes the reconnecting task.
    pub(crate) fn failed(&self, error: &RedisError) {
        if !unreachable(error) {
            tracing::warn!(error = %error, "redis command failed");
            return;
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(redis = %self.describe, error = %error, "state backend down: redis unreachable; falling back");
        }
        *self.reason.lock() = error.to_string();
        self.wake.notify_one();
    }

    /// A client for the server: the configured one, or the master Sentinel names now.
    pub(crate) async fn client(&self) -> Result<Client, RedisError> {
        match &self.target {
            Target::Server(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                let asked = tokio::time::timeout(self.connect_timeout, sentinel.async_get_client()).await;
                asked.map_err(|_| {
                    RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no sentinel answered",
                    ))
                })?
            }
        }
    }

    /// The connect timeout, which also bounds asking Sentinel.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connect every connection: to the server, or to the master Sentinel names now.
    async fn connect(&self) -> Result<Vec<MultiplexedConnection>, RedisError> {
        let client = self.client().await?;
        let mut connections = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            let mut connection = client.get_multiplexed_async_connection_with_config(&self.options).await?;
            // A replica (a demoted master, or Sentinel's view running behind) cannot take writes: not connected.
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
            if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                return Err(RedisError::from(std::io::Error::other("the server is not a master")));
            }
            connections.push(connection);
        }
        Ok(connections)
    }
}

/// Reconnect whenever the link is down, with backoff (50 ms doubling to 5 s); end when the link is dropped.
async fn reconnect(link: Weak<Link>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(strong) = link.upgrade() else { return };
        if strong.is_up() {
            drop(strong);
            wake.notified().await;
            continue;
        }
        match strong.connect().await {
            Ok(connections) => {
                *strong.connections.lock() = connections;
                strong.up.store(true, Ordering::Release);
                tracing::info!(redis = %strong.describe, "state backend up: redis reachable");
                backoff = Duration::from_millis(50);
            }
            Err(error) => {
                *strong.reason.lock() = error.to_string();
                tracing::debug!(redis = %strong.describe, error = %error, "redis still unreachable");
                drop(strong);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The task holds only a weak reference: wake it to find the link gone.
        self.wake.notify_one();
    }
}

/// Whether `error` says the server cannot be used (as opposed to a command it refused).
fn unreachable(error: &RedisError) -> bool {
    use redis::ErrorKind;
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(error.kind(), ErrorKind::Server(kind) if matches!(kind, redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown | redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain | redis::ServerErrorKind::ClusterDown))
}

fn target(config: &StateConfig) -> Result<(Target, String), String> {
    let password = config.password.as_ref().map(|p| p.expose().to_owned());
    let redis_info = |db: i64, username: Option<String>, inline: Option<String>| {
        let mut info = RedisConnectionInfo::default().set_db(db);
        if let Some(user) = username {
            info = info.set_username(user);
        }
        if let Some(password) = password.clone().or(inline) {
            info = info.set_password(password);
        }
        info
    };
    let parsed = match (&config.url, &config.sentinel) {
        (Some(url), _) => RedisTarget::parse(url)?,
        (None, Some(sentinel)) => {
            let joined = sentinel.addresses.join(",");
            RedisTarget::parse(&format!("redis+sentinel://{joined}/{}", sentinel.master))?
        }
        (None, None) => return Err("state.backend is redis but no url or sentinel is set".into()),
    };
    // A `sentinel` section names the sentinels even when the URL names one server.
    let parsed = match (parsed, &config.sentinel) {
        (RedisTarget::Server { db, password: inline, .. }, Some(sentinel)) => {
            let joined = sentinel.addresses.join(",");
            let RedisTarget::Sentinel { sentinels, master, .. } =
                RedisTarget::parse(&format!("redis+sentinel://{joined}/{}", sentinel.master))?
            else {
                unreachable!("a redis+sentinel URL parses as Sentinel")
            };
            RedisTarget::Sentinel { sentinels, master, db, password: inline }
        }
        (parsed, _) => parsed,
    };
    let error = |e: RedisError| e.to_string();
    match parsed {
        RedisTarget::Server { tls, host, port, db, username, password: inline } => {
            let describe = format!("{}://{host}:{port}/{db}", if tls { "rediss" } else { "redis" });
            let addr = if tls {
                ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
            } else {
                ConnectionAddr::Tcp(host, port)
            };
            let info: ConnectionInfo = addr
                .into_connection_info()
                .map_err(error)?
                .set_redis_settings(redis_info(db, username, inline.map(|p| p.expose().to_owned())));
            Ok((Target::Server(Client::open(info).map_err(error)?), describe))
        }
        RedisTarget::Sentinel { sentinels, master, db, password: inline } => {
            let describe = format!(
                "sentinel {master} via {}",
                sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
            );
            let addresses: Vec<ConnectionInfo> = (sentinels.into_iter())
                .map(|(host, port)| ConnectionAddr::Tcp(host, port).into_connection_info())
                .collect::<Result<_, _>>()
                .map_err(error)?;
            let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info(
                db,
                None,
                inline.map(|p| p.expose().to_owned()),
            ));
            let client = SentinelClient::build(addresses, master, Some(node), SentinelServerType::Master)
                .map_err(error)?;
            Ok((Target::Sentinel(tokio::sync::Mutex::new(client)), describe))
        }
    }
}
