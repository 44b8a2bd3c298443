//! What the nodes share about legacy sessions. A session's record travels in its id (sealed by the node that
//! opened it), so serving a request needs nothing from here; Redis keeps only what must be shared live:
//!
//! - **whether it is alive**: one key per session (`…{s}:<hash of the id>`) whose TTL is the idle timeout and a
//!   quarter, pushed back by a node at most once a quarter of the idle timeout while the session is used there. A
//!   node meeting a session it does not know asks for the key once; a session that expired, or that its client
//!   ended, is not adopted.
//! - **that it ended**: a client's DELETE marks the key ended and is published on `…sessions:ended`, so every node
//!   holding the session drops it (its listening stream ends) at once.
//! - **the client's answers**: a client answers a request the server sent it (sampling, elicitation, roots) with
//!   a POST the balancer may give any node; that node publishes it on `…sessions:answers`, and the node whose call
//!   is waiting for it hands it to the session's worker.
//! - **what goes to the listening stream**: what a session's worker sends its client outside a response (log
//!   messages, `list_changed`, resource updates) is appended to the session's Redis stream (`…{s}:<hash>:events`,
//!   its last 1,000 events, kept as long as the session may live) and published on `…sessions:streams` with the
//!   entry's id as its event id. The node holding the client's `GET` stream sends it there; a client reconnecting
//!   with `Last-Event-ID`, to any node, is sent what it missed from the Redis stream.
//! - **its resource subscriptions**: a set per session (`…{s}:<hash>:subs`), changed by whichever node takes
//!   the `resources/subscribe`, each change published on `…sessions:subscriptions`; the node holding the client's
//!   `GET` stream watches the resources in the set, so updates go on when the node that took the request is gone.
//!
//! While Redis cannot be reached the answers are "unknown" and sessions go on (fail open: they are sealed, and
//! every request is still authenticated); an end published meanwhile is lost, and the key's TTL ends it; a
//! subscription is kept by the node that takes it, as on one node.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::link::Link;

/// Legacy sessions as the nodes share them.
#[derive(Debug, Clone)]
pub struct SharedSessions {
    link: Arc<Link>,
    /// Marks a session alive unless it is marked ended.
    alive: Arc<redis::Script>,
    /// Appends to a session's listening stream ([`TO_STREAM`]).
    to_stream: Arc<redis::Script>,
    prefix: Arc<str>,
    heard: broadcast::Sender<Heard>,
    /// How long a session's keys live unused: the idle timeout and a quarter (a node tells Redis a session is
    /// used at most once a quarter of the idle timeout).
    lifetime: Duration,
    /// The same in milliseconds, as Redis takes it.
    lifetime_ms: u64,
}

/// What Redis knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Used within its idle timeout.
    Alive,
    /// Its client ended it.
    Ended,
    /// Nothing: it expired — or it is so new that the node that opened it has not said so yet.
    Unknown,
}

/// What a node heard from the others about sessions.
#[derive(Debug, Clone)]
pub enum Heard {
    /// The client ended the session with this id.
    Ended(Arc<str>),
    /// The client of the session with this id answered a request the server sent it: the JSON-RPC response.
    Answer(Arc<str>, Arc<str>),
    /// A message for the listening stream of the session with this id: the JSON-RPC message and its event id.
    Stream(Arc<str>, Arc<str>, Arc<str>),
    /// The resource subscriptions of the session with this id changed.
    Subscriptions(Arc<str>),
}

/// An answer or a stream message as published: the session's id, the message and (a stream message) its event
/// id.
#[derive(serde::Serialize, serde::Deserialize)]
struct Published {
    s: Arc<str>,
    m: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<Arc<str>>,
}

/// Appends a listening-stream message to the session's Redis stream and publishes it with the entry's id.
const TO_STREAM: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, '*', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({s = ARGV[4], m = ARGV[1], e = id}))
return id
";

impl SharedSessions {
    /// How long after opening a session a node adopts it though Redis does not know it yet (the node that opened
    /// it tells Redis without holding up the `initialize` answer); an ended session stays marked at least this long.
    pub const YOUNG: Duration = Duration::from_secs(10);

    /// The shared sessions of nodes whose sessions expire after `idle` without use.
    pub(crate) fn start(link: Arc<Link>, prefix: &str, idle: Duration) -> Self {
        let lifetime = idle + idle / 4;
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX).max(1);
        let (heard, _) = broadcast::channel(1024);
        let alive = Arc::new(redis::Script::new(
            "if redis.call('GET', KEYS[1]) ~= '0' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end",
        ));
        let to_stream = Arc::new(redis::Script::new(TO_STREAM));
        let shared = Self { link, alive, to_stream, prefix: prefix.into(), heard, lifetime, lifetime_ms };
        let channels = ["ended", "answers", "streams", "subscriptions"].map(|name| shared.channel(name));
        tokio::spawn(listen(Arc::downgrade(&shared.link), channels, shared.heard.clone()));
        shared
    }

    fn key(&self, id: &str) -> String {
        let hash = Sha256::digest(id.as_bytes());
        format!("{}{{s}}:{}", self.prefix, hex::encode(&hash[..16]))
    }

    fn channel(&self, name: &str) -> String {
        format!("{}sessions:{name}", self.prefix)
    }

    /// Run one command; `None` when Redis cannot be reached (the link is told).
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let mut connection = self.link.connection()?;
        match command.query_async(&mut connection).await {
            Ok(value) => Some(value),
            Err(error) => {
                self.link.failed(&error);
                None
            }
        }
    }

    /// A session was opened (or used): alive for its lifetime more — unless its client ended it (an end is never
    /// undone by a request that was under way).
    pub async fn alive(&self, id: &str) {
        let Some(mut connection) = self.link.connection() else { return };
        let mut invocation = self.alive.prepare_invoke();
        invocation.key(self.key(id)).arg(self.lifetime_ms);
        if let Err(error) = invocation.invoke_async::<()>(&mut connection).await {
            self.link.failed(&error);
        }
    }

    /// What Redis knows of the session; `None` when Redis cannot say.
    pub async fn life(&self, id: &str) -> Option<Life> {
        let value: Option<String> = self.run(redis::cmd("GET").arg(self.key(id))).await?;
        Some(match value.as_deref() {
            Some("0") => Life::Ended,
            Some(_) => Life::Alive,
            None => Life::Unknown,
        })
    }

    /// The client ended the session: mark it ended (as long as it could otherwise live, and at least
    /// [`YOUNG`](Self::YOUNG)) and tell every node.
    pub async fn end(&self, id: &str) {
        let millis = u64::try_from(self.lifetime.max(Self::YOUNG).as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(self.key(id)).arg(0).arg("PX").arg(millis).ignore();
        pipe.cmd("PUBLISH").arg(self.channel("ended")).arg(id).ignore();
        if let Some(mut connection) = self.link.connection()
            && let Err(error) = pipe.query_async::<()>(&mut connection).await
        {
            self.link.failed(&error);
        }
    }

    /// Pass the client's answer `message` (a JSON-RPC response) in session `id` to every node, this one
    /// included; `false` when Redis cannot be reached (then only this node can take it).
    pub async fn answer(&self, id: &str, message: &str) -> bool {
        let Ok(payload) = serde_json::to_string(&Published { s: id.into(), m: message.into(), e: None })
        else {
            return false;
        };
        self.run::<u64>(redis::cmd("PUBLISH").arg(self.channel("answers")).arg(payload)).await.is_some()
    }

    /// Append `message` (a JSON-RPC message) to the listening stream of session `id`, kept for its lifetime, and pass
    /// it to every node, this one included: its event id, or `None` when Redis cannot be reached.
    pub async fn to_stream(&self, id: &str, message: &str) -> Option<String> {
        let mut connection = self.link.connection()?;
        let mut invocation = self.to_stream.prepare_invoke();
        invocation
            .key(self.events(id))
            .arg(message)
            .arg(self.lifetime_ms)
            .arg(self.channel("streams"))
            .arg(id);
        match invocation.invoke_async::<String>(&mut connection).await {
            Ok(event) => Some(event),
            Err(error) => {
                self.link.failed(&error);
                None
            }
        }
    }

    /// What the listening stream of session `id` carried after event `after` (of its last 1,000), oldest first,
    /// as `(event id, message)`; `None` when Redis cannot say.
    pub async fn stream_after(&self, id: &str, after: &str) -> Option<Vec<(String, String)>> {
        let mut command = redis::cmd("XRANGE");
        command.arg(self.events(id)).arg(format!("({after}")).arg("+");
        let entries: Vec<(String, Vec<(String, String)>)> = self.run(&command).await?;
        let messages = entries.into_iter().filter_map(|(event, fields)| {
            fields.into_iter().find(|(name, _)| name == "m").map(|(_, message)| (event, message))
        });
        Some(messages.collect())
    }

    fn events(&self, id: &str) -> String {
        format!("{}:events", self.key(id))
    }

    /// Subscribe session `id` to `uri` (or, `on` false, unsubscribe it), kept for its lifetime, and tell every node;
    /// `false` when Redis cannot be reached.
    pub async fn set_subscription(&self, id: &str, uri: &str, on: bool) -> bool {
        let subs = format!("{}:subs", self.key(id));
        let mut pipe = redis::pipe();
        pipe.cmd(if on { "SADD" } else { "SREM" }).arg(&subs).arg(uri).ignore();
        pipe.cmd("PEXPIRE").arg(&subs).arg(self.lifetime_ms).ignore();
        pipe.cmd("PUBLISH").arg(self.channel("subscriptions")).arg(id).ignore();
        let Some(mut connection) = self.link.connection() else { return false };
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) => true,
            Err(error) => {
                self.link.failed(&error);
                false
            }
        }
    }

    /// The resources session `id` is subscribed to; `None` when Redis cannot say.
    pub async fn subscriptions(&self, id: &str) -> Option<Vec<String>> {
        self.run(redis::cmd("SMEMBERS").arg(format!("{}:subs", self.key(id)))).await
    }

    /// What is published about sessions by any node (this one included), as it comes.
    pub fn heard(&self) -> broadcast::Receiver<Heard> {
        self.heard.subscribe()
    }
}

/// Hear the `[ended, answers, streams, subscriptions]` channels for as long as the link lives, resubscribing (with
/// backoff) whenever the subscription breaks.
async fn listen(link: std::sync::Weak<Link>, channels: [String; 4], heard: broadcast::Sender<Heard>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(strong) = link.upgrade() else { return };
        let subscribed = async {
            let client = strong.client().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channels[..]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(strong.connect_timeout(), subscribed).await;
        drop(strong);
        match pubsub {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(50);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    let channel = message.get_channel_name();
                    let news = if channel == channels[0] {
                        Some(Heard::Ended(payload.into()))
                    } else if channel == channels[3] {
                        Some(Heard::Subscriptions(payload.into()))
                    } else {
                        serde_json::from_str::<Published>(&payload).ok().map(|p| match p.e {
                            Some(event) if channel == channels[2] => Heard::Stream(p.s, p.m, event),
                            _ => Heard::Answer(p.s, p.m),
                        })
                    };
                    if let Some(news) = news {
                        let _ = heard.send(news);
                    }
                    if link.strong_count() == 0 {
                        return;
                    }
                }
                tracing::debug!("the subscription to session news broke; subscribing again");
            }
            Ok(Err(error)) => tracing::debug!(error = %error, "cannot subscribe to session news yet"),
            Err(_) => tracing::debug!("subscribing to session news timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
