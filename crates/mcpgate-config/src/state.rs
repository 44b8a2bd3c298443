//! The `state` section: where what outlives one request is kept — in this process (the default), or in Redis so
//! that several nodes behind one load balancer keep one set of rate-limit buckets and one result cache.

use std::{num::NonZeroU8, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, HumanDuration, Secret, validate::Problem};

/// Shared state. `backend: memory` (the default) keeps rate-limit buckets and cached results in this process: one
/// node needs nothing else. `backend: redis` keeps them in Redis, so every node that points at the same Redis
/// (and shares `MCPGATE_SEAL_KEY`) behaves as one gateway. Per node whatever the backend: upstream connections,
/// circuit breakers, the audit file, metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `memory` or `redis`. Setting `REDIS_URL` (or `REDIS_HOST`, or `REDIS_SENTINELS`) in the environment
    /// chooses `redis`.
    pub backend: StateBackendKind,
    /// The Redis server (`REDIS_URL`): `redis://host:6379/0`, `rediss://host:6380/0` (TLS), or for Sentinel
    /// `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mcp-redis/0` (the sentinels, then the master's name and
    /// the database). A password may be written in it (`redis://:secret@host`), but `REDIS_PASSWORD` keeps it out
    /// of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable that holds the Redis password; `REDIS_PASSWORD` is read when this is unset. A
    /// variable named here that is not set is a configuration error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password, from the environment only; never written, logged or shown.
    #[serde(skip)]
    #[schemars(skip)]
    pub password: Option<Secret>,
    /// Prefix of every key mcpgate writes (`mcpgate:`), so several gateways, or other applications, can share one
    /// Redis. Nodes that must act as one gateway need the same prefix.
    pub key_prefix: String,
    /// Redis Sentinel, for a master that fails over: the sentinels and the master's name
    /// (`sentinel monitor <master> …`). `REDIS_SENTINELS` (comma-separated `host:port`) and
    /// `REDIS_SENTINEL_MASTER` in the environment set it. The URL form above says the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConfig>,
    /// Multiplexed connections each node keeps to Redis (each pipelines every request in flight); 1 is enough
    /// for most nodes.
    pub connections: NonZeroU8,
    /// How long connecting to Redis (and asking Sentinel for the master) may take.
    pub connect_timeout: HumanDuration,
    /// How long one Redis command may take before the gateway stops waiting and treats Redis as unavailable.
    pub command_timeout: HumanDuration,
    /// What a node does while Redis cannot be reached.
    pub on_unavailable: OnUnavailable,
    /// Whether `/ready` fails (503) while Redis cannot be reached. Off by default: a node without Redis still
    /// serves (as `on_unavailable` says), so a balancer should keep sending it traffic; `/ready` lists the state
    /// backend as down either way.
    pub required: bool,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackendKind::Memory,
            url: None,
            password_env: None,
            password: None,
            key_prefix: "mcpgate:".into(),
            sentinel: None,
            connections: NonZeroU8::MIN,
            connect_timeout: HumanDuration::secs(2),
            command_timeout: HumanDuration(Duration::from_millis(500)),
            on_unavailable: OnUnavailable::default(),
            required: false,
        }
    }
}

impl StateConfig {
    /// Whether it is the default (nothing to write).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where state is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateBackendKind {
    /// In this process.
    #[default]
    Memory,
    /// In Redis, shared by every node.
    Redis,
}

/// Redis Sentinel: where the sentinels are and which master they watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The master's name, as the sentinels know it (`mcp-redis`).
    pub master: String,
    /// The sentinels, `host:port` (port 26379 when left out).
    pub addresses: Vec<String>,
}

/// What each shared concern does while Redis cannot be reached. Authentication never depends on Redis, and
/// legacy sessions and `requestState` are sealed, so they keep working whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OnUnavailable {
    /// `local` (the default): each node enforces the limits with buckets of its own until Redis is back (N nodes
    /// admit up to N times the limit meanwhile); `refuse`: requests that a limit applies to are refused as over
    /// it (HTTP 429 with `Retry-After: 1`, or the tool's rate-limit error) until it is back.
    pub rate_limits: Fallback,
}

/// What a concern does without its shared store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Carry on with this node's own state.
    #[default]
    Local,
    /// Refuse what needs the shared state.
    Refuse,
}

/// `REDIS_URL`, `REDIS_HOST` / `REDIS_PORT`, `REDIS_PASSWORD` (or the variable `password_env` names),
/// `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER`. Any of the URL, host or sentinels chooses `backend: redis`.
pub(crate) fn apply_env(state: &mut StateConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(url) = get("REDIS_URL") {
        state.url = Some(url);
        state.backend = StateBackendKind::Redis;
    } else if let Some(host) = get("REDIS_HOST") {
        let port = get("REDIS_PORT").unwrap_or_else(|| "6379".into());
        state.url = Some(format!("redis://{host}:{port}"));
        state.backend = StateBackendKind::Redis;
    }
    if let Some(addresses) = get("REDIS_SENTINELS") {
        let addresses = addresses.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
        let master = get("REDIS_SENTINEL_MASTER")
            .or_else(|| state.sentinel.as_ref().map(|s| s.master.clone()))
            .unwrap_or_default();
        state.sentinel = Some(SentinelConfig { master, addresses: addresses.collect() });
        state.backend = StateBackendKind::Redis;
    } else if let (Some(master), Some(sentinel)) = (get("REDIS_SENTINEL_MASTER"), state.sentinel.as_mut()) {
        sentinel.master = master;
    }
    match &state.password_env {
        Some(name) => match get(name) {
            Some(password) => state.password = Some(Secret::new(password)),
            None => problems.push(Problem::new("state.password_env", format!("{name} is not set"))),
        },
        None => state.password = get("REDIS_PASSWORD").map(Secret::new),
    }
    problems
}

/// What the schema cannot say about `state`: a Redis backend has a server to reach (a URL of a known scheme, or
/// sentinels with a master), and timeouts and the prefix are usable.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let state = &config.state;
    let mut problem =
        |path: &str, message: String| problems.push(Problem::new(format!("state.{path}"), message));
    if let Some(url) = &state.url
        && let Err(e) = RedisTarget::parse(url)
    {
        problem("url", e);
    }
    if let Some(sentinel) = &state.sentinel {
        if sentinel.master.trim().is_empty() {
            problem("sentinel.master", "the master's name is required (REDIS_SENTINEL_MASTER)".into());
        }
        if sentinel.addresses.is_empty() {
            problem("sentinel.addresses", "at least one sentinel host:port is required".into());
        }
        for (i, address) in sentinel.addresses.iter().enumerate() {
            if let Err(e) = host_port(address, 26379) {
                problem(&format!("sentinel.addresses.{i}"), e);
            }
        }
    }
    if state.backend == StateBackendKind::Redis && state.url.is_none() && state.sentinel.is_none() {
        problem(
            "url",
            "backend redis needs a server: set url (REDIS_URL) or sentinel (REDIS_SENTINELS)".into(),
        );
    }
    if state.key_prefix.contains(['{', '}']) {
        problem(
            "key_prefix",
            format!("{:?}: braces are reserved for Redis Cluster hash tags", state.key_prefix),
        );
    }
    for (field, timeout) in
        [("connect_timeout", state.connect_timeout), ("command_timeout", state.command_timeout)]
    {
        if timeout.0.is_zero() || timeout.0 > Duration::from_secs(60) {
            problem(field, format!("{timeout}: more than zero and at most 60s"));
        }
    }
    if state.connections.get() > 16 {
        problem("connections", format!("{}: at most 16", state.connections));
    }
}

/// A Redis server as a URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://` or, with TLS, `rediss://`.
    Server {
        /// Whether the connection uses TLS.
        tls: bool,
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Database number.
        db: i64,
        /// User name (Redis 6 ACL), if given.
        username: Option<String>,
        /// Password, if the URL holds one.
        password: Option<Secret>,
    },
    /// A master behind Sentinel: `redis+sentinel://s1:26379,s2:26379/master/db`.
    Sentinel {
        /// The sentinels, `(host, port)`.
        sentinels: Vec<(String, u16)>,
        /// The master's name.
        master: String,
        /// Database number.
        db: i64,
        /// Password of the master, if the URL holds one.
        password: Option<Secret>,
    },
}

impl RedisTarget {
    /// Parse a `redis://`, `rediss://` or `redis+sentinel://` URL; the error says what is wrong, never echoing a
    /// password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("not a URL: use redis://host:6379/0 (or rediss://, redis+sentinel://)")?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (username, password) = match credentials.map(|c| c.split_once(':').unwrap_or(("", c))) {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_owned()),
                (!password.is_empty()).then(|| Secret::new(password)),
            ),
            None => (None, None),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let db = |text: &str| -> Result<i64, String> {
            if text.is_empty() {
                return Ok(0);
            }
            text.parse::<i64>()
                .ok()
                .filter(|db| (0..=15_000).contains(db))
                .ok_or(format!("{text:?} after the host is not a database number"))
        };
        match scheme {
            "redis" | "rediss" => {
                let (host, port) = host_port(hosts, 6379)?;
                Ok(Self::Server { tls: scheme == "rediss", host, port, db: db(path)?, username, password })
            }
            "redis+sentinel" => {
                let sentinels =
                    hosts.split(',').map(|h| host_port(h, 26379)).collect::<Result<Vec<_>, _>>()?;
                let (master, db_text) = path.split_once('/').unwrap_or((path, ""));
                if master.is_empty() {
                    return Err(
                        "redis+sentinel:// needs the master's name: redis+sentinel://host:26379/mcp-redis"
                            .into(),
                    );
                }
                Ok(Self::Sentinel { sentinels, master: master.to_owned(), db: db(db_text)?, password })
            }
            other => Err(format!("scheme {other:?}: use redis://, rediss:// (TLS) or redis+sentinel://")),
        }
    }
}

/// `host:port`, `host` (with `default` as the port) or `[v6]:port`.
fn host_port(text: &str, default: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or(format!("{text:?}: an IPv6 host ends with ]"))?;
            (host, rest.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{text:?}: no host"));
    }
    let port = match port {
        Some(port) => {
            port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(format!("{text:?}: {port:?} is not a port"))?
        }
        None => default,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], state: &mut StateConfig) -> Vec<Problem> {
        apply_env(state, crate::env::vars(vars))
    }

    #[test]
    fn redis_url_chooses_redis_and_the_password_comes_from_the_environment() {
        let mut state = StateConfig::default();
        assert!(env(&[], &mut state).is_empty());
        assert_eq!(state, StateConfig::default(), "nothing set, nothing changed");
        let problems = env(&[("REDIS_URL", "redis://cache:6379/2"), ("REDIS_PASSWORD", "pw")], &mut state);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(state.backend, StateBackendKind::Redis);
        assert_eq!(state.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(!serde_json::to_string(&state).unwrap().contains("pw"), "never written");

        let mut state = StateConfig::default();
        env(&[("REDIS_HOST", "10.0.3.10")], &mut state);
        assert_eq!(state.url.as_deref(), Some("redis://10.0.3.10:6379"));

        let mut state = StateConfig { password_env: Some("MY_REDIS_PW".into()), ..StateConfig::default() };
        let problems = env(&[("REDIS_PASSWORD", "ignored")], &mut state);
        assert_eq!(problems[0].to_string(), "state.password_env: MY_REDIS_PW is not set");
        assert!(state.password.is_none());
    }

    #[test]
    fn sentinels_from_the_environment() {
        let mut state = StateConfig::default();
        let vars =
            [("REDIS_SENTINELS", "10.0.3.10:26379, 10.0.3.11"), ("REDIS_SENTINEL_MASTER", "mcp-redis")];
        assert!(env(&vars, &mut state).is_empty());
        let sentinel = state.sentinel.as_ref().unwrap();
        assert_eq!((sentinel.master.as_str(), sentinel.addresses.len()), ("mcp-redis", 2));
        assert_eq!(state.backend, StateBackendKind::Redis);
    }

    #[test]
    fn validation_names_each_bad_setting() {
        let yaml = "state:\n  backend: redis\n  url: http://cache:6379\n  key_prefix: \"a{b}\"\n  sentinel: { master: \"\", addresses: [\"s1:x\"] }\n  command_timeout: 0s\nbackends:\n  d: { kind: builtin, builtin: demo }\n";
        let problems = match crate::parse_str(yaml, crate::Format::Yaml, "t.yaml") {
            Err(crate::ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for expected in [
            "state.url: scheme \"http\"",
            "state.sentinel.master: the master's name is required",
            "state.sentinel.addresses.0: \"s1:x\"",
            "state.key_prefix: \"a{b}\"",
            "state.command_timeout: 0s",
        ] {
            assert!(text.iter().any(|t| t.starts_with(expected)), "missing {expected:?} in {text:#?}");
        }
        assert_eq!(text.len(), 5, "{text:#?}");
        let yaml = "state:\n  backend: redis\nbackends:\n  d: { kind: builtin, builtin: demo }\n";
        let Err(crate::ConfigError::Invalid { problems, .. }) =
            crate::parse_str(yaml, crate::Format::Yaml, "t.yaml")
        else {
            panic!("a redis backend without a server is refused")
        };
        assert!(problems[0].to_string().contains("set url (REDIS_URL)"), "{problems:?}");
    }

    #[test]
    fn urls_parse_or_say_what_is_wrong() {
        let server = RedisTarget::parse("rediss://app:pw@redis.internal:6380/3").unwrap();
        let RedisTarget::Server { tls, host, port, db, username, password } = server else { panic!() };
        assert!(tls && host == "redis.internal" && port == 6380 && db == 3);
        assert_eq!((username.as_deref(), password.as_ref().map(Secret::expose)), (Some("app"), Some("pw")));
        let RedisTarget::Server { port, db, .. } = RedisTarget::parse("redis://[::1]").unwrap() else {
            panic!()
        };
        assert_eq!((port, db), (6379, 0));
        let sentinel = RedisTarget::parse("redis+sentinel://s1:26379,s2/mcp-redis/1").unwrap();
        let RedisTarget::Sentinel { sentinels, master, db, .. } = sentinel else { panic!() };
        assert_eq!(sentinels, [("s1".to_owned(), 26379), ("s2".to_owned(), 26379)]);
        assert_eq!((master.as_str(), db), ("mcp-redis", 1));
        for (url, says) in [
            ("localhost:6379", "not a URL"),
            ("http://localhost", "scheme \"http\""),
            ("redis://:6379", "no host"),
            ("redis://host:99999", "is not a port"),
            ("redis://host/x", "not a database number"),
            ("redis+sentinel://s1:26379", "master's name"),
            ("redis://:hunter2@host:port", "is not a port"),
        ] {
            let error = RedisTarget::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("hunter2"), "a password is never echoed: {error}");
        }
    }
}
