//! The `security` section: who may use `/mcp` (API keys, anonymous access) and from where (IP allowlist,
//! trusted proxies), and the one definition of how an API key is hashed for the config.
//!
//! A key is never written in clear: the config holds `sha256:<hex>` (SHA-256 of the key) or
//! `hmac-sha256:<hex>` (HMAC-SHA256 keyed with `API_KEY_SALT`, which lives only in the environment).

use std::{fmt, net::IpAddr, str::FromStr, time::SystemTime};

use hmac::{KeyInit, Mac};
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who may call `/mcp`, and from where. `/health`, `/ready` and `/status` stay open; stdio is not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// API keys accepted in `x-api-key` or `Authorization: Bearer`, as hashes (`mcpgate keys new` makes one).
    /// `MCP_API_KEYS` (comma-separated keys) and `MCP_API_KEY` add keys from the environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Whether a request without a key is served (as the principal `anonymous`, every tool). Unset: only when
    /// no key is configured at all (file and environment) and JWT tokens are not, so a gateway with keys or
    /// tokens refuses anonymous requests. A wrong or expired key or token is refused whatever this says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Client addresses allowed to use `/mcp`, as CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
    /// Empty: every address. Others get HTTP 403.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For` / `X-Real-IP` headers are believed: from
    /// them, the client is the right-most forwarded address that is not itself a trusted proxy. From any other
    /// peer those headers are ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// JWT bearer tokens, beside (or instead of) API keys. Also switched on by `JWT_SECRET`, `JWT_JWKS_URL` or
    /// `JWT_PUBLIC_KEY_FILE` in the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// The OAuth 2.0 protected-resource metadata (RFC 9728) to serve, naming the authorization server that
    /// issues tokens for this gateway. Unset: not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<crate::jwt::OAuthResourceConfig>,
    /// `API_KEY_SALT` from the environment, the HMAC key of `hmac-sha256:` hashes. Never read from or written
    /// to a file.
    #[serde(skip)]
    pub api_key_salt: Option<Secret>,
    /// `MCPGATE_SEAL_KEY` from the environment: the key that seals what the gateway hands a client to give back
    /// (a 2026-07-28 multi-round call's `requestState`), at least 32 bytes. Every node behind one load balancer
    /// needs the same key, so a retry accepted by one node is accepted by any. Unset: a random key per
    /// process, which a single node needs no more than. Never read from or written to a file.
    #[serde(skip)]
    pub seal_key: Option<Secret>,
}

/// The shortest `MCPGATE_SEAL_KEY` accepted: as long as the HMAC-SHA256 output it keys.
pub const SEAL_KEY_MIN_BYTES: usize = 32;

impl SecurityConfig {
    /// Whether requests without a key are served: `allow_anonymous`, or by default only when no key exists
    /// and JWT tokens are not configured.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.api_keys.is_empty() && self.jwt.is_none())
    }
}

/// One API key, by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key: the principal's name in logs, audit and metrics (letters, digits, `_`, `-`).
    pub name: String,
    /// `sha256:<64 hex>` or `hmac-sha256:<64 hex>` (HMAC keyed with `API_KEY_SALT`); never the key itself.
    pub hash: String,
    /// Rate-limit tier (`free`, `paid`, …).
    #[serde(default = "ApiKeyConfig::default_tier")]
    pub tier: String,
    /// Tools the key may call, as globs (`*`, `search_*`, `github__*`). Default: every tool.
    #[serde(default = "ApiKeyConfig::every_tool")]
    pub tools: Vec<String>,
    /// Resources the key may list, read and subscribe to, as URI globs (`docs://*`). Default: every resource.
    /// One it may not use is answered as an unknown one.
    #[serde(default = "ApiKeyConfig::every_tool")]
    pub resources: Vec<String>,
    /// Prompts the key may list and get, as name globs. Default: every prompt.
    #[serde(default = "ApiKeyConfig::every_tool")]
    pub prompts: Vec<String>,
    /// When the key stops working, RFC 3339 (`2027-01-01T00:00:00Z`). Unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// How this key's holder meets the tools (`direct`, `code`, `hybrid`), whatever `code_mode.mode` says for
    /// everyone else. Unset: `code_mode.mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::code_mode::ExecutionMode>,
}

impl ApiKeyConfig {
    fn default_tier() -> String {
        "default".into()
    }

    fn every_tool() -> Vec<String> {
        vec!["*".into()]
    }

    /// A key with the defaults: tier `default`, every tool, resource and prompt, no expiry.
    pub fn new(name: impl Into<String>, hash: &KeyHash) -> Self {
        Self {
            name: name.into(),
            hash: hash.to_string(),
            tier: Self::default_tier(),
            tools: Self::every_tool(),
            resources: Self::every_tool(),
            prompts: Self::every_tool(),
            expires: None,
            mode: None,
        }
    }

    /// `expires` as a point in time.
    pub fn expires_at(&self) -> Result<Option<SystemTime>, String> {
        self.expires.as_deref().map(parse_rfc3339).transpose()
    }
}

/// An RFC 3339 timestamp (`2027-01-01T00:00:00Z`, `2027-01-01T02:00:00+02:00`).
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(SystemTime::from)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}); write e.g. 2027-01-01T00:00:00Z"))
}

/// A secret from the environment: compared and used, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

// === impl KeyHash ===

/// How a key's hash was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashMethod {
    /// `sha256:` — SHA-256 of the key.
    Sha256,
    /// `hmac-sha256:` — HMAC-SHA256 of the key, keyed with `API_KEY_SALT`.
    HmacSha256,
}

impl HashMethod {
    /// The prefix in the config (`sha256`, `hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

/// A parsed `method:hex` key hash.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    /// How it was made.
    pub method: HashMethod,
    /// The 32-byte digest.
    pub digest: [u8; 32],
}

impl KeyHash {
    /// The `sha256:` hash of `key`.
    pub fn sha256(key: &str) -> Self {
        Self { method: HashMethod::Sha256, digest: Sha256::digest(key.as_bytes()).into() }
    }

    /// The `hmac-sha256:` hash of `key` under `salt`.
    pub fn hmac_sha256(salt: &str, key: &str) -> Self {
        // A hasher made with a salt always has an HMAC.
        let digest = KeyHasher::new(Some(salt)).hmac(key).unwrap_or_default();
        Self { method: HashMethod::HmacSha256, digest }
    }
}

impl FromStr for KeyHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (method, hex_digest) = s
            .split_once(':')
            .ok_or_else(|| "expected sha256:<64 hex digits> or hmac-sha256:<64 hex digits>".to_owned())?;
        let method = match method {
            "sha256" => HashMethod::Sha256,
            "hmac-sha256" => HashMethod::HmacSha256,
            other => return Err(format!("unknown hash method {other:?}; use sha256 or hmac-sha256")),
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest)
            .map_err(|_| format!("the {} digest must be 64 hex digits", method.as_str()))?;
        Ok(Self { method, digest })
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.method.as_str(), hex::encode(self.digest))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// Hashes presented keys the way the config's hashes were made. Built once: the HMAC state is keyed with the
/// salt up front and cloned per key.
#[derive(Clone)]
pub struct KeyHasher {
    hmac: Option<hmac::Hmac<Sha256>>,
}

impl KeyHasher {
    /// A hasher for `sha256:` hashes, and for `hmac-sha256:` ones when `salt` is given.
    pub fn new(salt: Option<&str>) -> Self {
        // HMAC accepts a key of any length, so this cannot fail.
        Self { hmac: salt.and_then(|s| hmac::Hmac::<Sha256>::new_from_slice(s.as_bytes()).ok()) }
    }

    /// SHA-256 of `key`.
    pub fn sha256(&self, key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    /// HMAC-SHA256 of `key`, when a salt is known.
    pub fn hmac(&self, key: &str) -> Option<[u8; 32]> {
        let mut mac = self.hmac.clone()?;
        mac.update(key.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// The digest of `key` made as `method` makes it (`None`: an HMAC without a salt).
    pub fn digest(&self, method: HashMethod, key: &str) -> Option<[u8; 32]> {
        match method {
            HashMethod::Sha256 => Some(self.sha256(key)),
            HashMethod::HmacSha256 => self.hmac(key),
        }
    }
}

// === IP lists ===

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`/32` or `/128`).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(canonical_net(net));
    }
    text.parse::<IpAddr>()
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR (10.0.0.0/8, 2001:db8::/32)"))
}

/// `::ffff:10.0.0.0/104` is written `10.0.0.0/8`: clients are matched by their canonical address.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map(IpNet::V4).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_their_text_form() {
        let hash = KeyHash::sha256("secret");
        assert_eq!(
            hash.to_string(),
            "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(hash.to_string().parse::<KeyHash>().unwrap(), hash);
        let hmac = KeyHash::hmac_sha256("salt", "secret");
        assert!(hmac.to_string().starts_with("hmac-sha256:"));
        assert_eq!(hmac.to_string().parse::<KeyHash>().unwrap(), hmac);
        // Upper-case hex is the same digest.
        let upper = format!("sha256:{}", hex::encode_upper(hash.digest));
        assert_eq!(upper.parse::<KeyHash>().unwrap(), hash);
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let hash = KeyHash::hmac_sha256("Jefe", "what do ya want for nothing?");
        assert_eq!(
            hex::encode(hash.digest),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(KeyHasher::new(None).hmac("x"), None);
    }

    #[test]
    fn malformed_hashes_say_what_is_expected() {
        for (text, says) in [
            ("secret", "expected sha256:"),
            ("md5:abcd", "unknown hash method"),
            ("sha256:abcd", "64 hex digits"),
            (&format!("sha256:{}", "g".repeat(64)), "64 hex digits"),
        ] {
            let error = text.parse::<KeyHash>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn cidrs_and_bare_addresses_parse() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_cidr("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::ffff:192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("localhost").unwrap_err().contains("not an IP address or CIDR"));
    }

    #[test]
    fn expiry_takes_rfc_3339_with_offsets() {
        let key = |expires: &str| ApiKeyConfig {
            expires: Some(expires.into()),
            ..ApiKeyConfig::new("k", &KeyHash::sha256("x"))
        };
        let utc = key("2027-01-01T00:00:00Z").expires_at().unwrap().unwrap();
        let offset = key("2027-01-01T02:00:00+02:00").expires_at().unwrap().unwrap();
        assert_eq!(utc, offset);
        assert!(key("next year").expires_at().unwrap_err().contains("RFC 3339"));
        assert_eq!(ApiKeyConfig::new("k", &KeyHash::sha256("x")).expires_at(), Ok(None));
    }

    #[test]
    fn anonymous_is_allowed_by_default_only_without_keys() {
        let mut security = SecurityConfig::default();
        assert!(security.anonymous_allowed());
        security.api_keys.push(ApiKeyConfig::new("k", &KeyHash::sha256("x")));
        assert!(!security.anonymous_allowed());
        security.allow_anonymous = Some(true);
        assert!(security.anonymous_allowed());
        let mut without_keys = SecurityConfig { allow_anonymous: Some(false), ..Default::default() };
        assert!(!without_keys.anonymous_allowed());
        without_keys.allow_anonymous = None;
        assert!(without_keys.anonymous_allowed());
        without_keys.jwt = Some(Default::default());
        assert!(!without_keys.anonymous_allowed(), "tokens configured: anonymous refused unless allowed");
    }

    #[test]
    fn the_salt_never_prints() {
        let security = SecurityConfig { api_key_salt: Some(Secret::new("pepper")), ..Default::default() };
        assert!(!format!("{security:?}").contains("pepper"));
        assert!(!serde_json::to_string(&security).unwrap().contains("pepper"));
    }
}
