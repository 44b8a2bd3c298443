//! `mcpgate keys new`: a fresh API key, printed once, and the config line holding its hash.

use std::io::Write;

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcpgate_config::{ApiKeyConfig, Config, KeyHash};

/// What every generated key starts with, so one found in a log or a repository is recognisable.
pub const PREFIX: &str = "mcpg_";

/// The key's holder and rights, from the command line.
pub struct NewKey {
    /// Principal name.
    pub name: String,
    /// Rate-limit tier.
    pub tier: String,
    /// Tool globs; empty means every tool.
    pub tools: Vec<String>,
    /// RFC 3339 expiry.
    pub expires: Option<String>,
}

/// Make a key from 32 bytes of the OS generator; print it and its config line to `out`, and how to use them
/// to `err`. The hash is `hmac-sha256:` when `API_KEY_SALT` is set (read as `mcpgate serve` reads it), else
/// `sha256:`.
pub fn new_key(request: NewKey, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let mut env = Config::default();
    // Only the salt matters here; other variables' problems are `serve`'s to report.
    let _ = mcpgate_config::apply_env(&mut env, |name| std::env::var(name).ok());
    let salt = env.security.api_key_salt;

    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = match &salt {
        Some(salt) => KeyHash::hmac_sha256(salt.expose(), &key),
        None => KeyHash::sha256(&key),
    };
    let entry = ApiKeyConfig {
        tier: request.tier,
        tools: if request.tools.is_empty() { vec!["*".into()] } else { request.tools },
        expires: request.expires,
        ..ApiKeyConfig::new(request.name, &hash)
    };
    check(&entry, salt)?;

    writeln!(out, "{key}")?;
    writeln!(out, "{}", yaml_line(&entry)?)?;
    let method = match hash.method {
        mcpgate_config::HashMethod::HmacSha256 => {
            "hmac-sha256 with API_KEY_SALT: the gateway needs the same API_KEY_SALT"
        }
        mcpgate_config::HashMethod::Sha256 => "sha256 (set API_KEY_SALT for an hmac-sha256 hash)",
    };
    writeln!(
        err,
        "The first line is the key; it is shown only now. Add the second under `security: api_keys:` in the \
         config.\nHash: {method}."
    )?;
    Ok(())
}

/// The same checks `mcpgate validate` makes on a key, plus an expiry still to come.
fn check(entry: &ApiKeyConfig, salt: Option<mcpgate_config::Secret>) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.security.api_keys.push(entry.clone());
    config.security.api_key_salt = salt;
    let problems: Vec<String> = mcpgate_config::validate(&config)
        .into_iter()
        .filter(|p| p.path.starts_with("security."))
        .map(|p| p.message)
        .collect();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let expires = entry.expires_at().map_err(anyhow::Error::msg)?;
    if expires.is_some_and(|at| at <= std::time::SystemTime::now()) {
        bail!("--expires {:?} is already past", entry.expires.as_deref().unwrap_or_default());
    }
    Ok(())
}

/// One YAML flow mapping, a list item: `- { name: "ci", hash: "…", tier: "free", tools: ["*"] }`. Strings
/// are JSON-quoted, which YAML reads as double-quoted scalars.
fn yaml_line(entry: &ApiKeyConfig) -> anyhow::Result<String> {
    let quote = |s: &str| serde_json::to_string(s).context("quoting a string");
    let mut fields = vec![
        format!("name: {}", quote(&entry.name)?),
        format!("hash: {}", quote(&entry.hash)?),
        format!("tier: {}", quote(&entry.tier)?),
        format!("tools: {}", serde_json::to_string(&entry.tools)?),
    ];
    if let Some(expires) = &entry.expires {
        fields.push(format!("expires: {}", quote(expires)?));
    }
    Ok(format!("- {{ {} }}", fields.join(", ")))
}
