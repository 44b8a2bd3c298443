//! `security.jwt`: JWT bearer tokens, a second way (beside API keys) to be admitted to `/mcp`; and
//! `security.oauth`: the OAuth 2.0 protected-resource metadata (RFC 9728) that tells MCP clients which
//! authorization server issues those tokens.
//!
//! The HS* secret comes from the environment only (`JWT_SECRET`, the Kubernetes guide's `jwt-secret`), like
//! `API_KEY_SALT`: it is never read from or written to a file and never printed.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, HumanDuration, Secret, SecurityConfig, validate::Problem};

/// JWT bearer tokens (`Authorization: Bearer <jwt>`). A credential shaped like a JWT (three base64url segments)
/// is verified here; anything else is looked up among the API keys. With both configured, either admits.
///
/// A token is admitted when its signature verifies under a configured key with an algorithm of `algorithms`, it
/// has an `exp` that has not passed, its `nbf` (if any) has come, and its `iss` / `aud` match `issuers` /
/// `audiences` when those are set. Its principal is named by `subject_claim`, rate-limited by its `tier_claim`,
/// and may call the tools of its `tools_claim`, else of its scopes (`scope_tools`), else `default_tools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Signature algorithms accepted (`HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`,
    /// `PS512`, `ES256`, `ES384`, `EdDSA`); `none` never is. Unset: `HS256` when `JWT_SECRET` is set, and
    /// `RS256` when a public key or a JWKS URL is. Each algorithm is checked only with keys of its own kind, so a
    /// token signed HS256 with the RSA public key as its secret is refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// A PEM file holding the issuer's public key (RSA, EC or Ed25519; `-----BEGIN PUBLIC KEY-----`), read at
    /// start and on reload. `JWT_PUBLIC_KEY_FILE` in the environment sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// The issuer's public key as PEM text, in place of `public_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// The issuer's JSON Web Key Set (`https://idp.example.com/.well-known/jwks.json`; plain `http` only to a
    /// loopback address). Fetched on first use, again after `jwks_ttl`, and when a token names a key id (`kid`)
    /// the set lacks — at most once per `jwks_min_refresh`. `JWT_JWKS_URL` in the environment sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// How long a fetched key set is used before it is fetched again. If that fetch fails the set keeps serving
    /// for one more `jwks_ttl`; after that, tokens are refused until a fetch succeeds (never admitted unchecked).
    pub jwks_ttl: HumanDuration,
    /// The least time between two fetches of the key set (for an unknown `kid`, or after a failed fetch), so
    /// tokens with made-up key ids cannot make the gateway hammer the issuer.
    pub jwks_min_refresh: HumanDuration,
    /// How long one fetch of the key set may take.
    pub jwks_timeout: HumanDuration,
    /// Accepted `iss` values; the claim is then required. Empty: not checked. `JWT_ISSUER` (comma-separated)
    /// in the environment sets it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must appear in the token); the claim is then required. Empty: `security.oauth
    /// .resource` when that is set (MCP requires tokens issued for this server), else no audience, and a token
    /// that names one is refused (RFC 7519: a recipient not named in `aud` must reject it). `JWT_AUDIENCE`
    /// (comma-separated) in the environment sets it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: HumanDuration,
    /// The claim naming the principal (in logs, audit, per-key rate limits). A token without it is refused.
    pub subject_claim: String,
    /// The claim holding the rate-limit tier; a token without it gets `default_tier`.
    pub tier_claim: String,
    /// The tier of tokens without `tier_claim`.
    pub default_tier: String,
    /// The claim listing the tools the token may call, as globs (`["search_*", "github__*"]`, or one
    /// space-separated string). It wins over `scope_tools`.
    pub tools_claim: String,
    /// OAuth scopes to tools: a token without `tools_claim` may call the tools of every scope it holds (`scope`,
    /// space-separated, or `scp`, a list), e.g. `{"tools:read": ["search_*", "get_*"], "tools:all": ["*"]}`. A
    /// token whose scopes map to nothing may call no tool. Empty: scopes are not looked at.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scope_tools: BTreeMap<String, Vec<String>>,
    /// The tools of a token without `tools_claim` when `scope_tools` is empty, as globs. Default: every tool.
    pub default_tools: Vec<String>,
    /// The claim listing the resources the token may list, read and subscribe to, as URI globs (a list, or one
    /// space-separated string).
    pub resources_claim: String,
    /// The resources of a token without `resources_claim`, as URI globs. Default: every resource.
    pub default_resources: Vec<String>,
    /// The claim listing the prompts the token may list and get, as name globs.
    pub prompts_claim: String,
    /// The prompts of a token without `prompts_claim`, as name globs. Default: every prompt.
    pub default_prompts: Vec<String>,
    /// `JWT_SECRET` from the environment: the HS* key (at least 32 bytes). Never read from or written to a file.
    #[serde(skip)]
    pub secret: Option<Secret>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            public_key_file: None,
            public_key_pem: None,
            jwks_url: None,
            jwks_ttl: HumanDuration::secs(600),
            jwks_min_refresh: HumanDuration::secs(30),
            jwks_timeout: HumanDuration::secs(5),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: HumanDuration::secs(60),
            subject_claim: "sub".into(),
            tier_claim: "tier".into(),
            default_tier: "default".into(),
            tools_claim: "tools".into(),
            scope_tools: BTreeMap::new(),
            default_tools: vec!["*".into()],
            resources_claim: "resources".into(),
            default_resources: vec!["*".into()],
            prompts_claim: "prompts".into(),
            default_prompts: vec!["*".into()],
            secret: None,
        }
    }
}

/// The kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// A shared secret (`HS*`).
    Hmac,
    /// An RSA public key (`RS*`, `PS*`).
    Rsa,
    /// An elliptic-curve public key (`ES*`).
    Ec,
    /// An Edwards-curve public key (`EdDSA`).
    Ed,
}

/// Every algorithm accepted in `algorithms`, with its key family.
pub const JWT_ALGORITHMS: [(&str, KeyFamily); 12] = [
    ("HS256", KeyFamily::Hmac),
    ("HS384", KeyFamily::Hmac),
    ("HS512", KeyFamily::Hmac),
    ("RS256", KeyFamily::Rsa),
    ("RS384", KeyFamily::Rsa),
    ("RS512", KeyFamily::Rsa),
    ("PS256", KeyFamily::Rsa),
    ("PS384", KeyFamily::Rsa),
    ("PS512", KeyFamily::Rsa),
    ("ES256", KeyFamily::Ec),
    ("ES384", KeyFamily::Ec),
    ("EdDSA", KeyFamily::Ed),
];

/// The shortest `JWT_SECRET` accepted: RFC 7518 §3.2 wants an HS256 key at least as long as the hash (32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;

impl JwtConfig {
    /// The algorithms in force: `algorithms`, or the defaults for the configured key sources.
    pub fn effective_algorithms(&self) -> Vec<String> {
        if !self.algorithms.is_empty() {
            return self.algorithms.clone();
        }
        let mut defaults = Vec::new();
        if self.secret.is_some() {
            defaults.push("HS256".to_owned());
        }
        if self.has_public_keys() {
            defaults.push("RS256".to_owned());
        }
        defaults
    }

    /// Whether a public key or a JWKS URL is configured.
    pub fn has_public_keys(&self) -> bool {
        self.public_key_file.is_some() || self.public_key_pem.is_some() || self.jwks_url.is_some()
    }
}

/// An algorithm's key family; `None` for a name not in [`JWT_ALGORITHMS`].
pub fn algorithm_family(name: &str) -> Option<KeyFamily> {
    JWT_ALGORITHMS.iter().find(|(n, _)| *n == name).map(|(_, family)| *family)
}

/// The OAuth 2.0 protected-resource metadata (RFC 9728), served at `/.well-known/oauth-protected-resource`
/// and `/.well-known/oauth-protected-resource/mcp` when set. Every 401 from `/mcp` then names it in
/// `WWW-Authenticate` (`resource_metadata="…"`), as the MCP authorization spec requires, so a client can find
/// the authorization server to get a token from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthResourceConfig {
    /// This server's canonical URL as clients reach it (`https://mcp.example.com/mcp`): the metadata's
    /// `resource`, and the audience tokens must carry unless `jwt.audiences` says otherwise. The metadata URL
    /// is derived from it (`https://mcp.example.com/.well-known/oauth-protected-resource/mcp`).
    pub resource: String,
    /// Issuer URLs of the authorization servers that issue tokens for this server (at least one).
    pub authorization_servers: Vec<String>,
    /// Scopes a client may request (`scopes_supported`); also offered in the 401 challenge's `scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// A human-readable name of this server (`resource_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// A URL of documentation for developers (`resource_documentation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

impl OAuthResourceConfig {
    /// Where the metadata document of `resource` lives (RFC 9728 §3.1): `/.well-known/oauth-protected-resource`
    /// put between the origin and the resource's path.
    pub fn metadata_url(&self) -> Result<String, String> {
        let url = parse_url(&self.resource)?;
        Ok(format!("{}://{}/.well-known/oauth-protected-resource{}", url.scheme, url.authority, url.path))
    }
}

/// The parts of an absolute `http(s)` URL that matter here.
struct Url<'a> {
    scheme: &'a str,
    authority: &'a str,
    host: &'a str,
    /// Without a trailing `/`; empty for the root.
    path: &'a str,
}

/// An absolute `http://` or `https://` URL without query or fragment.
fn parse_url(text: &str) -> Result<Url<'_>, String> {
    let (scheme, rest) = text
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .ok_or_else(|| format!("{text:?} is not an absolute http:// or https:// URL"))?;
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{text:?}: a URL here may hold no query, fragment or space"));
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("{text:?}: expected scheme://host[:port][/path] without user info"));
    }
    Ok(Url {
        scheme,
        authority,
        host: host.trim_start_matches('[').trim_end_matches(']'),
        path: path.trim_end_matches('/'),
    })
}

/// Whether `host` is a loopback name or address, where plain `http` is acceptable.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `JWT_SECRET`, `JWT_JWKS_URL`, `JWT_PUBLIC_KEY_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE`: each switches the JWT
/// authenticator on (with defaults for the rest) when the file did not.
pub(crate) fn apply_env(security: &mut SecurityConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let list = |value: String| -> Vec<String> {
        value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
    };
    let mut jwt = |apply: &mut dyn FnMut(&mut JwtConfig)| apply(security.jwt.get_or_insert_default());
    if let Some(secret) = get("JWT_SECRET") {
        jwt(&mut |j| j.secret = Some(Secret::new(secret.clone())));
    }
    if let Some(url) = get("JWT_JWKS_URL") {
        jwt(&mut |j| j.jwks_url = Some(url.clone()));
    }
    if let Some(path) = get("JWT_PUBLIC_KEY_FILE") {
        jwt(&mut |j| j.public_key_file = Some(PathBuf::from(&path)));
    }
    if let Some(issuers) = get("JWT_ISSUER") {
        jwt(&mut |j| j.issuers = list(issuers.clone()));
    }
    if let Some(audiences) = get("JWT_AUDIENCE") {
        jwt(&mut |j| j.audiences = list(audiences.clone()));
    }
    Vec::new()
}

/// What the schema cannot say about `security.jwt` and `security.oauth`.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let security = &config.security;
    if let Some(jwt) = &security.jwt {
        jwt_problems(jwt, problems);
    }
    if let Some(oauth) = &security.oauth {
        oauth_problems(oauth, problems);
    }
}

fn jwt_problems(jwt: &JwtConfig, problems: &mut Vec<Problem>) {
    let mut problem =
        |field: &str, message: String| problems.push(Problem::new(format!("security.jwt{field}"), message));
    if jwt.secret.is_none() && !jwt.has_public_keys() {
        problem(
            "",
            "no key to verify tokens with: set JWT_SECRET (environment), public_key_file, public_key_pem or \
             jwks_url"
                .into(),
        );
    }
    if jwt.public_key_file.is_some() && jwt.public_key_pem.is_some() {
        problem(".public_key_pem", "set public_key_file or public_key_pem, not both".into());
    }
    if let Some(secret) = &jwt.secret
        && secret.expose().len() < MIN_SECRET_BYTES
    {
        // The length only; never the secret.
        problem(
            "",
            format!("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2); it has fewer"),
        );
    }
    for (i, name) in jwt.effective_algorithms().iter().enumerate() {
        let field = if jwt.algorithms.is_empty() { String::new() } else { format!(".algorithms.{i}") };
        match algorithm_family(name) {
            None if name.eq_ignore_ascii_case("none") => {
                problem(&field, "unsigned tokens (alg none) are never accepted".into());
            }
            None => {
                let known: Vec<&str> = JWT_ALGORITHMS.iter().map(|(n, _)| *n).collect();
                problem(&field, format!("unknown algorithm {name:?}; use one of {}", known.join(", ")));
            }
            Some(KeyFamily::Hmac) if jwt.secret.is_none() => {
                problem(&field, format!("{name} needs JWT_SECRET in the environment, and it is unset"));
            }
            Some(KeyFamily::Rsa | KeyFamily::Ec | KeyFamily::Ed) if !jwt.has_public_keys() => {
                problem(&field, format!("{name} needs public_key_file, public_key_pem or jwks_url"));
            }
            Some(_) => {}
        }
    }
    if let Some(url) = &jwt.jwks_url {
        match parse_url(url) {
            Err(e) => problem(".jwks_url", e),
            Ok(u) if u.scheme == "http" && !is_loopback(u.host) => problem(
                ".jwks_url",
                format!("{url:?}: keys fetched over plain http could be swapped in transit; use https"),
            ),
            Ok(_) => {}
        }
    }
    for (field, d) in [
        (".jwks_ttl", jwt.jwks_ttl),
        (".jwks_min_refresh", jwt.jwks_min_refresh),
        (".jwks_timeout", jwt.jwks_timeout),
    ] {
        if d.0.is_zero() {
            problem(field, "must be longer than zero".into());
        }
    }
    if jwt.jwks_min_refresh > jwt.jwks_ttl {
        problem(".jwks_min_refresh", "must not be longer than jwks_ttl".into());
    }
    for (field, value) in [
        (".subject_claim", &jwt.subject_claim),
        (".tier_claim", &jwt.tier_claim),
        (".tools_claim", &jwt.tools_claim),
        (".resources_claim", &jwt.resources_claim),
        (".prompts_claim", &jwt.prompts_claim),
        (".default_tier", &jwt.default_tier),
    ] {
        if value.trim().is_empty() {
            problem(field, "must not be empty".into());
        }
    }
    for (field, list) in [
        ("issuers", &jwt.issuers),
        ("audiences", &jwt.audiences),
        ("default_tools", &jwt.default_tools),
        ("default_resources", &jwt.default_resources),
        ("default_prompts", &jwt.default_prompts),
    ] {
        for (i, value) in list.iter().enumerate() {
            if value.trim().is_empty() {
                problem(&format!(".{field}.{i}"), "must not be empty".into());
            }
        }
    }
    for (scope, globs) in &jwt.scope_tools {
        if scope.trim().is_empty() || scope.contains(' ') {
            problem(&format!(".scope_tools.{scope}"), "a scope is one non-empty word".into());
        }
        for (i, glob) in globs.iter().enumerate() {
            if glob.trim().is_empty() {
                problem(&format!(".scope_tools.{scope}.{i}"), "an empty glob matches no tool".into());
            }
        }
    }
}

fn oauth_problems(oauth: &OAuthResourceConfig, problems: &mut Vec<Problem>) {
    let mut problem = |field: &str, message: String| {
        problems.push(Problem::new(format!("security.oauth.{field}"), message))
    };
    match parse_url(&oauth.resource) {
        Err(e) => problem("resource", e),
        Ok(u) if u.scheme == "http" && !is_loopback(u.host) => problem(
            "resource",
            format!("{:?}: OAuth 2.1 requires https (http only on loopback)", oauth.resource),
        ),
        Ok(_) => {}
    }
    if oauth.authorization_servers.is_empty() {
        problem(
            "authorization_servers",
            "name at least one authorization server (the MCP spec requires one)".into(),
        );
    }
    for (i, server) in oauth.authorization_servers.iter().enumerate() {
        if let Err(e) = parse_url(server) {
            problem(&format!("authorization_servers.{i}"), e);
        }
    }
    for (i, scope) in oauth.scopes_supported.iter().enumerate() {
        if scope.trim().is_empty() || scope.contains([' ', '"', '\\']) {
            problem(
                &format!("scopes_supported.{i}"),
                "a scope is one word without quotes or backslashes".into(),
            );
        }
    }
    if let Some(url) = &oauth.resource_documentation
        && let Err(e) = parse_url(url)
    {
        problem("resource_documentation", e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_problems_of(jwt: JwtConfig) -> Vec<String> {
        let mut config = Config::default();
        config.security.jwt = Some(jwt);
        let mut found = Vec::new();
        problems(&config, &mut found);
        found.into_iter().map(|p| p.to_string()).collect()
    }

    fn secret() -> Option<Secret> {
        Some(Secret::new("s".repeat(MIN_SECRET_BYTES)))
    }

    #[test]
    fn default_algorithms_follow_the_key_sources() {
        let hs = JwtConfig { secret: secret(), ..Default::default() };
        assert_eq!(hs.effective_algorithms(), ["HS256"]);
        let rs = JwtConfig { jwks_url: Some("https://idp/jwks".into()), ..Default::default() };
        assert_eq!(rs.effective_algorithms(), ["RS256"]);
        let both = JwtConfig { public_key_pem: Some("pem".into()), ..hs };
        assert_eq!(both.effective_algorithms(), ["HS256", "RS256"]);
        assert!(jwt_problems_of(both).is_empty());
    }

    #[test]
    fn every_algorithm_needs_a_key_of_its_kind_and_none_is_refused() {
        let found = jwt_problems_of(JwtConfig {
            algorithms: vec!["HS256".into(), "none".into(), "RS256".into(), "XS1".into()],
            ..Default::default()
        });
        let joined = found.join("\n");
        assert!(joined.contains("security.jwt: no key to verify tokens with"), "{joined}");
        assert!(joined.contains("security.jwt.algorithms.0: HS256 needs JWT_SECRET"), "{joined}");
        assert!(joined.contains("security.jwt.algorithms.1: unsigned tokens (alg none)"), "{joined}");
        assert!(joined.contains("security.jwt.algorithms.2: RS256 needs public_key_file"), "{joined}");
        assert!(joined.contains("security.jwt.algorithms.3: unknown algorithm \"XS1\""), "{joined}");
    }

    #[test]
    fn a_short_secret_is_refused_without_being_shown() {
        let found =
            jwt_problems_of(JwtConfig { secret: Some(Secret::new("tiny-secret")), ..Default::default() });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("at least 32 bytes") && !found[0].contains("tiny-secret"), "{found:?}");
    }

    #[test]
    fn jwks_over_plain_http_only_on_loopback() {
        for (url, ok) in [
            ("https://idp.example.com/jwks.json", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://localhost/jwks", true),
            ("http://[::1]:9/jwks", true),
            ("http://idp.internal/jwks", false),
            ("ftp://idp/jwks", false),
            ("https://idp/jwks#frag", false),
        ] {
            let found = jwt_problems_of(JwtConfig { jwks_url: Some(url.into()), ..Default::default() });
            assert_eq!(found.is_empty(), ok, "{url}: {found:?}");
        }
    }

    #[test]
    fn scopes_claims_and_durations_are_checked() {
        let mut jwt = JwtConfig { secret: secret(), ..Default::default() };
        jwt.scope_tools.insert("two words".into(), vec!["".into()]);
        jwt.subject_claim = " ".into();
        jwt.jwks_min_refresh = HumanDuration::secs(0);
        let joined = jwt_problems_of(jwt).join("\n");
        for says in [
            "security.jwt.scope_tools.two words: a scope is one non-empty word",
            "security.jwt.scope_tools.two words.0: an empty glob",
            "security.jwt.subject_claim: must not be empty",
            "security.jwt.jwks_min_refresh: must be longer than zero",
        ] {
            assert!(joined.contains(says), "{says}: {joined}");
        }
    }

    #[test]
    fn the_metadata_url_puts_the_well_known_path_before_the_resource_path() {
        let oauth = |resource: &str| OAuthResourceConfig {
            resource: resource.into(),
            authorization_servers: vec!["https://idp.example.com".into()],
            scopes_supported: vec![],
            resource_name: None,
            resource_documentation: None,
        };
        assert_eq!(
            oauth("https://mcp.example.com/mcp").metadata_url().unwrap(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            oauth("https://mcp.example.com:8443/").metadata_url().unwrap(),
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource"
        );
        assert!(oauth("mcp.example.com").metadata_url().unwrap_err().contains("absolute"));
        let mut config = Config::default();
        config.security.oauth =
            Some(OAuthResourceConfig { authorization_servers: vec![], ..oauth("http://mcp.example.com") });
        let mut found = Vec::new();
        problems(&config, &mut found);
        let joined = found.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(
            joined.contains("security.oauth.resource: \"http://mcp.example.com\": OAuth 2.1 requires https"),
            "{joined}"
        );
        assert!(joined.contains("security.oauth.authorization_servers: name at least one"), "{joined}");
    }

    #[test]
    fn environment_variables_switch_jwt_on() {
        let vars = [
            ("JWT_SECRET", "x".repeat(40)),
            ("JWT_ISSUER", "https://idp.example.com, https://other".into()),
            ("JWT_AUDIENCE", "mcpgate".into()),
            ("JWT_JWKS_URL", "https://idp.example.com/jwks".into()),
        ];
        let mut security = SecurityConfig::default();
        let found = apply_env(&mut security, |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
        assert!(found.is_empty());
        let jwt = security.jwt.as_ref().unwrap();
        assert_eq!(jwt.issuers, ["https://idp.example.com", "https://other"]);
        assert_eq!(jwt.audiences, ["mcpgate"]);
        assert_eq!(jwt.effective_algorithms(), ["HS256", "RS256"]);
        assert!(!format!("{security:?}").contains("xxxx"));
        assert!(!serde_json::to_string(&security).unwrap().contains("xxxx"));
        // Nothing set: nothing switched on.
        let mut untouched = SecurityConfig::default();
        apply_env(&mut untouched, |_| None);
        assert!(untouched.jwt.is_none());
    }
}
