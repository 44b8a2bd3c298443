//! The `mcpgate` command: serve MCP, validate a config, print the config schema, make API keys.

// A command-line tool prints its answers.
#![allow(clippy::print_stdout)]

mod chat;
mod client;
mod health;
mod keys;
mod logfile;
mod notify;
mod telemetry;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcpgate_config::{Config, ConfigError, LogFormat};
use mcpgate_server::{Gateway, serve_http, serve_stdio};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{
    EnvFilter,
    fmt::writer::{BoxMakeWriter, MakeWriterExt},
};

// Many small, short-lived allocations per request (JSON values, headers, channels): mimalloc serves them
// markedly faster than glibc malloc (bench/README.md). Built with `no_thp`: with transparent huge pages its
// eagerly committed arenas cost ~8 MB of idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A production gateway and tool server for the Model Context Protocol.
#[derive(Parser)]
#[command(name = "mcpgate", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over Streamable HTTP (default) or stdio.
    Serve {
        /// Configuration file (.yaml, .yml, .toml, .json). Without one, the embedded default is served.
        #[arg(long, short, env = "MCP_CONFIG_PATH")]
        config: Option<PathBuf>,
        /// Listen address (IP:PORT); overrides the config file, `BIND_IP` and `PORT` / `MCP_PORT`.
        #[arg(long)]
        listen: Option<String>,
        /// Speak MCP over stdin/stdout instead of HTTP. Logs go to stderr.
        #[arg(long)]
        stdio: bool,
    },
    /// Check a configuration file and print every problem with its path. Exits non-zero when it is invalid.
    Validate {
        /// The file to check.
        file: PathBuf,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// API key helpers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Probe a running gateway: exit 0 when its `/health` (or, with `--ready`, `/ready`) answers 200, else 1.
    /// For a container `HEALTHCHECK` or a script: no curl needed.
    Health {
        /// The gateway's address (`HOST:PORT`); default: from `BIND_IP` and `MCP_PORT` / `PORT` as `serve` takes
        /// them (a wildcard as loopback), else `127.0.0.1:8000`.
        #[arg(long)]
        addr: Option<String>,
        /// Probe `/ready` (every required backend up) instead of the liveness path (the process serves).
        #[arg(long)]
        ready: bool,
        /// The liveness path, where `server.health_path` (or `HEALTH_CHECK_PATH`) moved it.
        #[arg(long, env = "HEALTH_CHECK_PATH", default_value = "/health")]
        path: String,
        /// How long the probe may take, in seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Chat with an LLM that has the gateway's tools (the `chat` section: Anthropic with `ANTHROPIC_API_KEY`, or
    /// any OpenAI-compatible endpoint); its tool calls run through the gateway built from the config.
    Chat {
        /// Configuration file; without one, the embedded default.
        #[arg(long, short, env = "MCP_CONFIG_PATH")]
        config: Option<PathBuf>,
        /// Send this one message, print the answer and exit (else: read messages from stdin).
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Talk to any MCP server from the command line: `--url http://…/mcp`, or a stdio command after `--`.
    /// Exit status: 0, 1 when the server answered with an error (a tool's `isError` too), 2 for a usage error, 3
    /// when it could not be reached.
    Client {
        #[command(subcommand)]
        action: client::Action,
    },
    /// Print the version.
    Version,
    /// Run one code-mode program in a confined worker (started by the `process` and `gvisor` sandboxes; speaks
    /// newline-delimited JSON on stdin/stdout).
    #[command(hide = true)]
    SandboxWorker {
        /// The worker's own flags (`--landlock require|best-effort`, or `--launch ...`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of the configuration file.
    Schema,
    /// Print the embedded default configuration.
    Default,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new API key: prints the key (shown only this once) and the `security.api_keys` line with its hash
    /// (`hmac-sha256` keyed with `API_KEY_SALT` when that is set, else `sha256`).
    New {
        /// Who holds the key: the principal's name in logs and audit (letters, digits, `_`, `-`).
        #[arg(long)]
        name: String,
        /// Rate-limit tier (`free`, `paid`, …; `default` is what keys without one get).
        #[arg(long)]
        tier: String,
        /// Tools the key may call, as globs (`--tools 'search_*' echo`). Default: every tool.
        #[arg(long = "tools", value_name = "GLOB", num_args = 1..)]
        tools: Vec<String>,
        /// When the key stops working, RFC 3339 (`2027-01-01T00:00:00Z`).
        #[arg(long, value_name = "RFC3339")]
        expires: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything else: the worker confines itself and must not start a runtime or a log first.
    if let Command::SandboxWorker { args } = cli.command {
        return mcpgate_sandbox::worker::main(args);
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mcpgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, listen, stdio } => {
            let source = Source { path: config_path(config), listen };
            let config = source.load()?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = config.server.workers {
                runtime.worker_threads(workers.get());
            }
            let runtime = runtime.enable_all().build()?;
            // Inside the runtime: the trace exporter's batch processor is one of its tasks.
            let Logging { telemetry, file } = init_logging(&config, &runtime)?;
            runtime.block_on(async {
                let served = serve(config, source, file, stdio).await;
                // After the drain, so the last requests' spans go out too.
                if let Some(telemetry) = telemetry {
                    telemetry.shutdown().await;
                }
                served
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => Ok(validate(&file)),
        Command::Config { command: ConfigCommand::Schema } => {
            println!("{}", serde_json::to_string_pretty(&mcpgate_config::schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Default } => {
            let config = mcpgate_config::default_config()?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::New { name, tier, tools, expires } } => {
            let request = keys::NewKey { name, tier, tools, expires };
            keys::new_key(request, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { addr, ready, path, timeout } => {
            let addr = addr.unwrap_or_else(|| health::default_addr(|name| std::env::var(name).ok()));
            let path = if ready { "/ready" } else { path.as_str() };
            match health::probe(&addr, path, std::time::Duration::from_secs(timeout)) {
                Ok(line) => {
                    println!("{addr}{path}: {line}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("mcpgate health: {addr}: {error:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Chat { config, message } => {
            let config = load(config_path(config).as_deref())?;
            plain_logging("warn,rmcp=off")?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let gateway = Gateway::build(config).await?;
                let chatted = chat::run(gateway.clone(), message).await;
                gateway.shutdown_backends().await;
                chatted
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client { action } => {
            // A client's log is for trouble only: what fails is reported once, on its own.
            plain_logging("error,rmcp=off")?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(client::run(action))
        }
        Command::Version => {
            println!("mcpgate {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::SandboxWorker { args } => Ok(mcpgate_sandbox::worker::main(args)),
    }
}

/// The config file `--config` (or `MCP_CONFIG_PATH`) names, else `CONFIG_PATH`; none: the embedded default.
fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("CONFIG_PATH").map(PathBuf::from))
}

/// The log of a command that is not a server (`chat`, `client`): text on stderr at `LOG_LEVEL`, else `default`.
fn plain_logging(default: &str) -> anyhow::Result<()> {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| default.to_owned());
    let filter = EnvFilter::try_new(&level).with_context(|| format!("LOG_LEVEL {level:?}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}

/// Where the served config comes from: a file (or the embedded default) and the `--listen` flag. Read at start
/// and again on each SIGHUP.
struct Source {
    path: Option<PathBuf>,
    listen: Option<String>,
}

impl Source {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = load(self.path.as_deref())?;
        if let Some(listen) = &self.listen {
            config.server.listen.clone_from(listen);
        }
        Ok(config)
    }
}

/// The file (or the embedded default), with the environment applied and checked.
fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => mcpgate_config::load_file_unchecked(path)?,
        None => mcpgate_config::default_config()?,
    };
    let mut problems = mcpgate_config::apply_env(&mut config, |name| std::env::var(name).ok());
    problems.extend(mcpgate_config::validate(&config));
    // What only the backends can see (templates, programs, database files), reported with the rest.
    for (name, backend) in config.backends.iter().filter(|(_, b)| b.enabled()) {
        problems.extend(mcpgate_backends::check(name, backend));
    }
    if !problems.is_empty() {
        let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded default>".into());
        return Err(ConfigError::Invalid { origin, problems }.into());
    }
    Ok(config)
}

fn validate(file: &std::path::Path) -> ExitCode {
    match load(Some(file)) {
        Ok(config) => {
            let backends = config.backends.values().filter(|b| b.enabled()).count();
            let upstreams = config.all_upstreams().filter(|(_, u)| u.enabled).count();
            println!(
                "{}: valid ({backends} enabled backend(s), {upstreams} enabled upstream(s))",
                file.display()
            );
            for warning in mcpgate_backends::upstream_warnings(&config) {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// What logging set up that the process keeps a hand on.
struct Logging {
    /// The trace exporter, when telemetry is on: flushed at the exit.
    telemetry: Option<telemetry::Telemetry>,
    /// `logging.file`: opened again on SIGHUP.
    file: Option<logfile::LogFile>,
}

/// Install the log subscriber (stderr, and `logging.file` when set) and, when telemetry is on, the trace
/// exporter beside it.
fn init_logging(config: &Config, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Logging> {
    // rmcp reports every stateless request's lifecycle at info; keep it at warn unless asked for by name.
    let mut directives = config.logging.level.clone();
    if !directives.contains("rmcp") {
        directives.push_str(",rmcp=warn");
    }
    // Telemetry spans are for the exporter, not the log.
    directives.push_str(&format!(",{}=off", mcpgate_server::telemetry::TARGET));
    let filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("logging.level {:?} is not a valid filter", config.logging.level))?;
    let file = config.logging.file.as_deref().map(logfile::LogFile::open).transpose()?;
    let writer = match &file {
        Some(file) => BoxMakeWriter::new(std::io::stderr.and(file.clone())),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    if !config.telemetry.active() {
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
        match config.logging.format {
            LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
            LogFormat::Text => builder.with_ansi(false).init(),
        }
        return Ok(Logging { telemetry: None, file });
    }
    // Each layer with its own filter: the log's must not hide the telemetry spans from the exporter.
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let log = tracing_subscriber::fmt::layer().with_writer(writer);
    let log = match config.logging.format {
        LogFormat::Json => {
            log.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed()
        }
        LogFormat::Text => log.with_ansi(false).with_filter(filter).boxed(),
    };
    let (traces, telemetry) = {
        let _runtime = runtime.enter();
        telemetry::layer(&config.telemetry)?
    };
    tracing_subscriber::registry().with(log).with(traces).init();
    telemetry::announce(&config.telemetry);
    Ok(Logging { telemetry: Some(telemetry), file })
}

async fn serve(
    config: Config,
    source: Source,
    log_file: Option<logfile::LogFile>,
    stdio: bool,
) -> anyhow::Result<()> {
    let listen = config.server.listen.clone();
    for warning in mcpgate_backends::upstream_warnings(&config) {
        tracing::warn!(path = %warning.path, "{}", warning.message);
    }
    let gateway = Gateway::build(config).await?;
    tokio::spawn(reload_on_hangup(gateway.clone(), source, log_file));
    if stdio {
        tracing::info!(tools = gateway.registry().wire_tools().len(), "serving MCP over stdio");
        return Ok(serve_stdio(gateway).await?);
    }
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tools = gateway.registry().wire_tools().len(),
        version = env!("CARGO_PKG_VERSION"),
        "serving MCP at /mcp"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    notify::ready();
    serve_http(gateway, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// On each SIGHUP, open the log file again (logrotate has moved it), then load the config again (the same file,
/// or the embedded default, with the environment) and put it in force; one that does not load, validate or build
/// is refused and the old one kept (`Gateway::reload_with` logs either way).
async fn reload_on_hangup(gateway: Arc<Gateway>, source: Source, log_file: Option<logfile::LogFile>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reloading is off");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Some(file) = &log_file
            && let Err(error) = file.reopen()
        {
            tracing::error!(file = %file.path().display(), %error, "cannot open the log file again; still writing to the old one");
        }
        tracing::info!(config = ?source.path, "SIGHUP received: reloading the configuration");
        notify::reloading();
        let loaded = source.load().map_err(|error| format!("{error:#}"));
        let _ = gateway.reload_with(loaded).await;
        notify::ready();
    }
}

/// Cancel `shutdown` on SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    notify::stopping();
    shutdown.cancel();
}
