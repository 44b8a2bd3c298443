//! The supervisor: one task per upstream owns its connection (and, for stdio, its child process), notices when
//! it dies, fails the calls in flight at once, and reconnects with backoff.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, OnceLock},
    time::Duration,
};

use mcpgate_config::{UpstreamConfig, UpstreamProtocol, UpstreamTransport};
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    ClientCacheConfig, ClientLifecycleMode, Peer, RoleClient,
    model::ProtocolVersion,
    serve_client_with_lifecycle,
    service::RunningService,
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    forward::GatewayClient,
    http_lane::HttpLane,
    lane::Lane,
    ordered::Ordered,
    pipe::PipeTransport,
    sse::SseTransport,
    state::{Catalogue, Link, Shared},
    wire::connection_meta,
};
use crate::template::expand_env;

/// First delay before a reconnection.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest delay between two reconnections.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How to reach an upstream, with every `${VAR}` already expanded: what `start` can check once, so the
/// supervisor only meets errors that a retry may fix.
pub(super) enum Launch {
    /// A child process on stdin / stdout.
    Stdio {
        /// Program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its whole environment.
        env: Vec<(String, String)>,
        /// Its working directory.
        cwd: Option<PathBuf>,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint.
        url: String,
        /// Pooled client shared by every connection attempt.
        client: reqwest::Client,
        /// Configured headers (secrets: never logged).
        headers: HashMap<HeaderName, HeaderValue>,
    },
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse {
        /// The event stream's URL; the server names where to POST.
        url: reqwest::Url,
        /// Pooled client shared by every connection attempt.
        client: reqwest::Client,
        /// Configured headers (secrets: never logged).
        headers: HashMap<HeaderName, HeaderValue>,
    },
}

impl Launch {
    /// Expand the config's `${VAR}`s and build what each attempt needs.
    pub(super) fn prepare(config: &UpstreamConfig) -> Result<Self, String> {
        match config.transport() {
            Some(UpstreamTransport::Stdio) => {
                let command = config.command.as_deref().ok_or("the stdio transport needs a command")?;
                let command = expand_env(command).map_err(|e| format!("command: {e}"))?;
                let args = (config.args.iter().enumerate())
                    .map(|(i, arg)| expand_env(arg).map_err(|e| format!("args[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut env: Vec<(String, String)> = ["PATH", "HOME"]
                    .into_iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
                    .collect();
                for (key, value) in &config.env {
                    env.push((key.clone(), expand_env(value).map_err(|e| format!("env.{key}: {e}"))?));
                }
                Ok(Self::Stdio { command, args, env, cwd: config.cwd.clone() })
            }
            Some(UpstreamTransport::Http | UpstreamTransport::StreamableHttp) => {
                let (url, client, headers) = Self::remote(config, "HTTP")?;
                Ok(Self::Http { url, client, headers })
            }
            Some(UpstreamTransport::Sse) => {
                let (url, client, headers) = Self::remote(config, "SSE")?;
                // The expanded URL may hold a secret: the parse error is shown, the URL is not.
                let url = reqwest::Url::parse(&url).map_err(|e| format!("url: not a valid URL: {e}"))?;
                Ok(Self::Sse { url, client, headers })
            }
            None => Err("give command (a local server over stdio) or url (a remote one)".to_owned()),
        }
    }

    /// What every remote transport needs: the expanded url, the configured headers, and a client.
    fn remote(
        config: &UpstreamConfig,
        transport: &str,
    ) -> Result<(String, reqwest::Client, HashMap<HeaderName, HeaderValue>), String> {
        let url = config.url.clone().ok_or_else(|| format!("the {transport} transport needs a url"))?;
        let url = expand_env(&url).map_err(|e| format!("url: {e}"))?;
        let mut headers = HashMap::new();
        for (key, value) in &config.headers {
            let name = HeaderName::try_from(key.as_str())
                .map_err(|_| format!("headers.{key}: not a valid header name"))?;
            // The value is a secret: neither it nor the parse error (which may quote it) is shown.
            let mut value =
                HeaderValue::try_from(expand_env(value).map_err(|e| format!("headers.{key}: {e}"))?)
                    .map_err(|_| format!("headers.{key}: not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok((url, client, headers))
    }
}

/// One established connection, owned by the supervisor.
struct Connected {
    running: RunningService<RoleClient, GatewayClient>,
    child: Option<Child>,
    lane: Option<Lane>,
}

/// Run the supervisor until `stop` is cancelled. `ready` turns true after each successful connection.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    launch: Launch,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    stop: CancellationToken,
    ready: watch::Sender<bool>,
) {
    let name = shared.name.clone();
    let mut backoff = Backoff::new();
    let mut generation = 0;
    // Set when a connection ends and its tools are to be hidden (`when_down: hide`): they are, once the next
    // attempt fails. A restart that succeeds (a crashed child, typically back in a fraction of a second) hides
    // nothing, so callers meanwhile get "unavailable", not "unknown tool", and clients no list changes.
    let mut hide_pending = false;
    loop {
        let handler = GatewayClient {
            name: name.clone(),
            shared: shared.clone(),
            calls: Arc::default(),
            dead: CancellationToken::new(),
            refetch: Arc::default(),
        };
        let (calls, dead) = (handler.calls.clone(), handler.dead.clone());
        let attempt = tokio::select! {
            () = stop.cancelled() => break,
            attempt = tokio::time::timeout(connect_timeout, connect(&name, &launch, protocol, handler)) => attempt,
        };
        let connected = match attempt {
            Ok(Ok(connected)) => Some(connected),
            Ok(Err(error)) => {
                tracing::warn!(upstream = %name, "cannot connect: {error}");
                shared.attempt_failed(error);
                None
            }
            Err(_) => {
                let error = format!("no connection within {connect_timeout:?}");
                tracing::warn!(upstream = %name, "cannot connect: {error}");
                shared.attempt_failed(error);
                None
            }
        };
        if connected.is_none() && std::mem::take(&mut hide_pending) {
            shared.publish(Catalogue::default());
        }
        if let Some((Connected { running, mut child, lane }, catalogue)) = connected {
            generation += 1;
            let (peer, reason) = (running.peer().clone(), Arc::new(OnceLock::new()));
            let link = Link { peer, lane, dead, reason, calls, generation };
            // The link first: whoever sees the new catalogue can call its tools at once.
            shared.set(Some(link.clone()), String::new());
            shared.publish(catalogue);
            resubscribe(&shared, running.peer());
            ready.send_replace(true);
            let version = running.peer().peer_info().map(|info| info.protocol_version.to_string());
            tracing::info!(upstream = %name, protocol = version.as_deref().unwrap_or("unknown"), "connected");
            let since = Instant::now();
            // Whichever comes first: the child exits, the service ends, or the gateway stops.
            let reason = tokio::select! {
                () = stop.cancelled() => None,
                status = exited(&mut child) => Some(format!("process exited ({status})")),
                _ = running.waiting() => Some("connection closed".to_owned()),
            };
            let reason = reason.unwrap_or_else(|| "the gateway is shutting down".to_owned());
            let _ = link.reason.set(reason.clone());
            link.dead.cancel();
            shared.set(None, reason.clone());
            hide_pending = !shared.keep_listed;
            if let Some(child) = child.as_mut() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            }
            if stop.is_cancelled() {
                break;
            }
            tracing::warn!(upstream = %name, "disconnected: {reason}");
            if since.elapsed() >= STABLE_AFTER {
                backoff.reset();
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    shared.set(None, "the gateway is shutting down".to_owned());
}

/// Whether the upstream takes legacy `resources/subscribe`: it says so, and speaks a revision that has it.
pub(super) fn can_subscribe(peer: &rmcp::Peer<rmcp::RoleClient>) -> bool {
    peer.peer_info().is_some_and(|info| {
        info.protocol_version.has_initialize()
            && info.capabilities.resources.as_ref().is_some_and(|r| r.subscribe == Some(true))
    })
}

/// Subscribe a new connection to every URI subscribed so far, in the background (a refusal is logged).
fn resubscribe(shared: &Shared, peer: &Peer<RoleClient>) {
    let uris: Vec<String> = shared.subscribed.lock().iter().cloned().collect();
    if uris.is_empty() || !can_subscribe(peer) {
        return;
    }
    let (peer, name) = (peer.clone(), shared.name.clone());
    tokio::spawn(async move {
        for uri in uris {
            #[allow(deprecated)] // the legacy revisions this gateway serves still have resources/subscribe
            if let Err(e) = peer.subscribe(rmcp::model::SubscribeRequestParams::new(&uri)).await {
                tracing::warn!(upstream = %name, %uri, "cannot subscribe again after reconnecting: {e}");
            }
        }
    });
}

/// The child's exit status, or never when there is no child.
async fn exited(child: &mut Option<Child>) -> String {
    match child {
        Some(child) => match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        },
        None => std::future::pending().await,
    }
}

/// One connection attempt: transport, handshake (`server/discover`, falling back to `initialize`; straight to
/// `initialize` over SSE or when the config says `protocol: legacy`), catalogue.
async fn connect(
    name: &str,
    launch: &Launch,
    protocol: UpstreamProtocol,
    handler: GatewayClient,
) -> Result<(Connected, Catalogue), String> {
    let lifecycle = match protocol {
        UpstreamProtocol::Auto => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::LATEST],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        },
        UpstreamProtocol::Legacy => ClientLifecycleMode::Initialize,
    };
    // What the upstream says about a call reaches the call in the order it was said.
    let calls = handler.calls.clone();
    let (running, child, lane) = match launch {
        Launch::Stdio { command, args, env, cwd } => {
            let mut cmd = Command::new(command);
            cmd.args(args)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let mut child = cmd.spawn().map_err(|e| format!("cannot start {command}: {e}"))?;
            let (Some(stdout), Some(stdin), Some(stderr)) =
                (child.stdout.take(), child.stdin.take(), child.stderr.take())
            else {
                return Err("the child's pipes are missing".to_owned());
            };
            let upstream = name.to_owned();
            // Drained to the end, so a chatty child never blocks on a full pipe.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(upstream = %upstream, "{line}");
                }
            });
            let (transport, lane) = PipeTransport::new(name, stdout, stdin);
            let transport = Ordered::new(transport, calls).asking_the_only_call(name);
            let running = serve_client_with_lifecycle(handler, transport, lifecycle)
                .await
                .map_err(|e| format!("handshake failed: {e}"))?;
            lane.set_base_meta(connection_meta(running.peer()));
            (running, Some(child), Some(Lane::Pipe(lane)))
        }
        Launch::Http { url, client, headers } => {
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers.clone());
            let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
            let transport = Ordered::new(transport, calls);
            let running = serve_client_with_lifecycle(handler, transport, lifecycle)
                .await
                .map_err(|e| format!("handshake failed: {e}"))?;
            let lane =
                HttpLane::new(client, url, headers, running.peer()).map(|lane| Lane::Http(Arc::new(lane)));
            (running, None, lane)
        }
        Launch::Sse { url, client, headers } => {
            let transport = Ordered::new(SseTransport::connect(name, client, url, headers).await?, calls);
            // An SSE server predates `server/discover`: no probe, straight to `initialize`.
            let running = serve_client_with_lifecycle(handler, transport, ClientLifecycleMode::Initialize)
                .await
                .map_err(|e| format!("handshake failed: {e}"))?;
            (running, None, None)
        }
    };
    // Lists come from our own catalogue; a stale cached copy must never stand in for an error.
    running.peer().set_response_cache_config(ClientCacheConfig::disabled()).await;
    let catalogue = fetch_catalogue(name, running.peer()).await;
    Ok((Connected { running, child, lane }, catalogue))
}

/// Every tool, resource, template and prompt; a list the upstream does not offer (or fails) is empty.
async fn fetch_catalogue(name: &str, peer: &Peer<RoleClient>) -> Catalogue {
    let capabilities = peer.peer_info().map(|info| info.capabilities.clone());
    let (tools, resources, prompts) = match &capabilities {
        Some(c) => (c.tools.is_some(), c.resources.is_some(), c.prompts.is_some()),
        None => (true, true, true),
    };
    fn tolerate<T>(name: &str, what: &str, result: Result<Vec<T>, rmcp::ServiceError>) -> Vec<T> {
        result.unwrap_or_else(|e| {
            tracing::warn!(upstream = %name, "cannot list {what}: {e}");
            Vec::new()
        })
    }
    let mut catalogue = Catalogue::default();
    if tools {
        catalogue.tools = tolerate(name, "tools", peer.list_all_tools().await);
    }
    if resources {
        catalogue.resources = tolerate(name, "resources", peer.list_all_resources().await);
        catalogue.templates = tolerate(name, "resource templates", peer.list_all_resource_templates().await);
    }
    if prompts {
        catalogue.prompts = tolerate(name, "prompts", peer.list_all_prompts().await);
    }
    catalogue
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of a window that doubles from
/// [`BACKOFF_START`] up to [`BACKOFF_CAP`].
pub(super) struct Backoff {
    window: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Self { window: BACKOFF_START }
    }

    pub(super) fn reset(&mut self) {
        self.window = BACKOFF_START;
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let window = self.window;
        self.window = (self.window * 2).min(BACKOFF_CAP);
        let half = window / 2;
        let jitter = random_u64() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }
}

/// A random number from the standard library's per-process hasher keys; enough to spread reconnections.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START, "{first:?}");
        let second = backoff.next_delay();
        assert!(second >= BACKOFF_START && second <= BACKOFF_START * 2, "{second:?}");
        for _ in 0..20 {
            assert!(backoff.next_delay() <= BACKOFF_CAP);
        }
        assert!(backoff.next_delay() >= BACKOFF_CAP / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_START);
    }

    #[test]
    fn an_unset_variable_is_an_error_at_start() {
        let config: UpstreamConfig = serde_json::from_value(
            serde_json::json!({"command": "x", "env": {"K": "${MCPGATE_SURELY_UNSET_VAR}"}}),
        )
        .unwrap();
        let error = Launch::prepare(&config).err().unwrap();
        assert!(error.starts_with("env.K"), "{error}");
    }
}
