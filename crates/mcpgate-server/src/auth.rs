//! Who may use `/mcp`, checked before anything reads the body: the client's address (the socket peer, or what a
//! trusted proxy forwarded), the IP allowlist, then the credential — an API key or a JWT bearer token (`jwt.rs`)
//! — which becomes the request's [`Principal`].
//!
//! Everything is prepared at startup ([`Access::new`]): parsed networks, decoded digests, one principal per key,
//! the salt-keyed HMAC state, the JWT keys. A request hashes its key once per configured method and compares the
//! digest with every key's in constant time; a key or token is never logged. A credential shaped like a JWT goes
//! to the JWT verifier first when tokens are configured; if it does not verify, it may still be an API key.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};

use axum::{
    extract::{ConnectInfo, Request},
    response::Response,
};
use http::{HeaderMap, HeaderValue, header::WWW_AUTHENTICATE};
use ipnet::IpNet;
use mcpgate_config::{
    CodeModeConfig, ExecutionMode, HashMethod, KeyHash, KeyHasher, SecurityConfig, parse_cidr,
};
use mcpgate_core::{Mode, Principal};
use subtle::ConstantTimeEq;

use crate::{
    headers::{X_API_KEY, X_FORWARDED_FOR, X_REAL_IP},
    jsonrpc::Rejection,
    jwt::{JwtAuth, TokenFailure, looks_like_jwt},
};

/// Why a request was refused at the door. Put in the refusal's response extensions, so a layer outside (metrics)
/// can count it without parsing bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No key, and anonymous access is not allowed.
    MissingKey,
    /// A key that matches none configured.
    InvalidKey,
    /// A configured key past its `expires`.
    ExpiredKey,
    /// The client address is not in `security.allowed_ips`.
    IpNotAllowed,
    /// A JWT that did not verify or whose claims are not accepted, with why (safe to tell the client).
    InvalidToken(&'static str),
    /// A JWT past its `exp`.
    ExpiredToken,
    /// The issuer's key set (`security.jwt.jwks_url`) could not be fetched, so no token can be checked.
    KeysUnavailable,
}

impl AuthFailure {
    /// The `reason` label (`mcp_auth_failures_total{reason}`) and log field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::ExpiredKey => "expired_key",
            Self::IpNotAllowed => "ip_not_allowed",
            // A token is a key in the metrics' closed set of reasons; only an issuer out of reach is its own.
            Self::InvalidToken(_) => "invalid_key",
            Self::ExpiredToken => "expired_key",
            Self::KeysUnavailable => "jwks_unavailable",
        }
    }
}

impl From<TokenFailure> for AuthFailure {
    fn from(failure: TokenFailure) -> Self {
        match failure {
            TokenFailure::Invalid(why) => Self::InvalidToken(why),
            TokenFailure::Expired => Self::ExpiredToken,
            TokenFailure::KeysUnavailable => Self::KeysUnavailable,
        }
    }
}

/// One configured key, ready to compare.
struct Key {
    method: HashMethod,
    digest: [u8; 32],
    expires: Option<SystemTime>,
    principal: Principal,
}

/// The prepared `security` section.
pub(crate) struct Access {
    /// Empty: every address.
    allowed_ips: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    keys: Vec<Key>,
    hasher: KeyHasher,
    /// Which digests a presented key needs (only the methods some key uses).
    wants_sha256: bool,
    wants_hmac: bool,
    /// The principal of requests without a key, when they are served.
    anonymous: Option<Principal>,
    /// JWT bearer tokens, when configured.
    jwt: Option<JwtAuth>,
    /// How callers without a mode of their own meet the tools (`code_mode.mode`): tokens, anonymous, stdio.
    mode: Mode,
    /// What every 401 challenge ends with: `, resource_metadata="…"` (and `scope`) when `security.oauth` is set.
    challenge_params: String,
}

impl Access {
    /// Prepare `security`. Fails (with every problem) only on a config that skipped validation.
    pub(crate) fn new(security: &SecurityConfig, code: &CodeModeConfig) -> Result<Self, String> {
        let mode = |own: Option<ExecutionMode>| principal_mode(code, own.unwrap_or(code.mode));
        let mut problems = Vec::new();
        let mut nets = |field: &str, list: &[String]| -> Vec<IpNet> {
            list.iter()
                .filter_map(|cidr| parse_cidr(cidr).map_err(|e| problems.push(format!("{field}: {e}"))).ok())
                .collect()
        };
        let allowed_ips = nets("security.allowed_ips", &security.allowed_ips);
        let trusted_proxies = nets("security.trusted_proxies", &security.trusted_proxies);
        let salt = security.api_key_salt.as_ref().map(|s| s.expose());
        let mut keys = Vec::new();
        for (i, key) in security.api_keys.iter().enumerate() {
            let parsed = key.hash.parse::<KeyHash>().and_then(|hash| Ok((hash, key.expires_at()?)));
            match parsed {
                Ok((hash, _)) if hash.method == HashMethod::HmacSha256 && salt.is_none() => {
                    problems.push(format!("security.api_keys.{i}.hash: needs API_KEY_SALT, which is unset"));
                }
                Ok((hash, expires)) => keys.push(Key {
                    method: hash.method,
                    digest: hash.digest,
                    expires,
                    principal: Principal::named(&key.name, &key.tier, &key.tools)
                        .with_grants(key.resources.as_slice().into(), key.prompts.as_slice().into())
                        .with_mode(mode(key.mode)),
                }),
                Err(e) => problems.push(format!("security.api_keys.{i}: {e}")),
            }
        }
        let jwt = security.jwt.as_ref().and_then(|jwt| {
            JwtAuth::new(jwt, security.oauth.as_ref()).map_err(|found| problems.extend(found)).ok()
        });
        let challenge_params = match &security.oauth {
            Some(oauth) => match challenge_params(oauth) {
                Ok(params) => params,
                Err(e) => {
                    problems.push(e);
                    String::new()
                }
            },
            None => String::new(),
        };
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Self {
            jwt,
            challenge_params,
            allowed_ips,
            trusted_proxies,
            wants_sha256: keys.iter().any(|k| k.method == HashMethod::Sha256),
            wants_hmac: keys.iter().any(|k| k.method == HashMethod::HmacSha256),
            keys,
            hasher: KeyHasher::new(salt),
            anonymous: security.anonymous_allowed().then(|| Principal::anonymous().with_mode(mode(None))),
            mode: mode(None),
        })
    }

    /// The principal of what comes in through no door (stdio): anonymous, in the default mode.
    pub(crate) fn local(&self) -> Principal {
        Principal::anonymous().with_mode(self.mode.clone())
    }

    /// Keep what `previous` (the settings before a reload) has cached and this one would only fetch again: the
    /// JWT issuer's key set, when it comes from the same place.
    pub(crate) fn keep_caches(&mut self, previous: &Access) {
        if let (Some(jwt), Some(kept)) = (&mut self.jwt, &previous.jwt) {
            jwt.keep_key_set(kept);
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address. From a trusted proxy, the right-most `X-Forwarded-For` hop that is not itself a
    /// trusted proxy (hops to its left were written by the client and prove nothing), else `X-Real-IP`; from
    /// anyone else, the peer. A malformed hop ends the walk at the last address known good.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let mut forwarded = false;
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(list) = value.to_str() else { return client };
            for hop in list.split(',').rev() {
                forwarded = true;
                let Some(ip) = parse_hop(hop) else { return client };
                client = ip;
                if !self.trusted(ip) {
                    return ip;
                }
            }
        }
        if !forwarded && let Some(ip) = headers.get(&X_REAL_IP).and_then(|v| parse_hop(v.to_str().ok()?)) {
            return ip;
        }
        client
    }

    fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        self.allowed_ips.is_empty()
            || ip.is_some_and(|ip| self.allowed_ips.iter().any(|net| net.contains(&ip)))
    }

    /// The principal a request's credentials name, or why there is none: a JWT-shaped credential is verified
    /// as a token when tokens are configured (and looked up as an API key only if that fails); anything else is
    /// an API key.
    async fn authenticate(&self, headers: &HeaderMap, now: SystemTime) -> Result<Principal, AuthFailure> {
        let Some(presented) = presented_key(headers) else {
            return self.anonymous.clone().ok_or(AuthFailure::MissingKey);
        };
        if let Some(jwt) = self.jwt.as_ref().filter(|_| looks_like_jwt(presented)) {
            let refused = match jwt.authenticate(presented).await {
                Ok(principal) => return Ok(principal.with_mode(self.mode.clone())),
                Err(failure) => AuthFailure::from(failure),
            };
            return match self.api_key(presented, now) {
                Ok(principal) => Ok(principal.clone()),
                Err(AuthFailure::InvalidKey) => Err(refused),
                Err(expired) => Err(expired),
            };
        }
        self.api_key(presented, now).cloned()
    }

    /// The API key `presented` is, or why it is none.
    fn api_key(&self, presented: &str, now: SystemTime) -> Result<&Principal, AuthFailure> {
        let sha256 = self.wants_sha256.then(|| self.hasher.sha256(presented));
        let hmac = if self.wants_hmac { self.hasher.hmac(presented) } else { None };
        // Compare with every key, without stopping at a match: the time taken says nothing about which
        // digest bytes matched, and little about which key did.
        let mut matched = None;
        for key in &self.keys {
            let candidate = match key.method {
                HashMethod::Sha256 => sha256.as_ref(),
                HashMethod::HmacSha256 => hmac.as_ref(),
            };
            let equal = candidate.is_some_and(|digest| bool::from(digest.ct_eq(&key.digest)));
            if equal && matched.is_none() {
                matched = Some(key);
            }
        }
        let key = matched.ok_or(AuthFailure::InvalidKey)?;
        if key.expires.is_some_and(|expires| expires <= now) {
            return Err(AuthFailure::ExpiredKey);
        }
        Ok(&key.principal)
    }
}

/// The key in `x-api-key`, or in `Authorization: Bearer …`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let key = match headers.get(&X_API_KEY) {
        Some(value) => value.to_str().ok()?,
        None => {
            let authorization = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim_start();
            let (scheme, token) = authorization.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token
        }
    };
    Some(key.trim()).filter(|k| !k.is_empty())
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`, `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// Admit the request (with its [`Principal`] in the extensions) or refuse it: 403 for an address outside the
/// allowlist, 401 with `WWW-Authenticate` for a missing, wrong or expired key.
pub(crate) async fn check<F: Future<Output = Response>>(
    access: &Access,
    mut request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client_ip = peer.map(|peer| access.client_ip(peer, request.headers()));
    if !access.ip_allowed(client_ip) {
        let shown = client_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tracing::info!(reason = AuthFailure::IpNotAllowed.as_str(), client_ip = %shown, "request refused");
        let message = format!("Forbidden: client address {shown} is not allowed");
        return refused(Rejection::Forbidden(message).into_response(), AuthFailure::IpNotAllowed);
    }
    match access.authenticate(request.headers(), SystemTime::now()).await {
        Ok(mut principal) => {
            principal.client_ip = client_ip;
            request.extensions_mut().insert(Arc::new(principal));
            next(request).await
        }
        Err(failure) => {
            let why = match failure {
                AuthFailure::InvalidToken(why) => Some(why),
                _ => None,
            };
            tracing::info!(
                reason = failure.as_str(),
                why,
                client_ip = client_ip.map(tracing::field::display),
                "request refused"
            );
            unauthorized(failure, &access.challenge_params)
        }
    }
}

/// The principal mode an execution mode gives: code mode, with hybrid's direct tools.
fn principal_mode(code: &CodeModeConfig, mode: ExecutionMode) -> Mode {
    match mode {
        ExecutionMode::Direct => Mode::Direct,
        ExecutionMode::Code => Mode::Code { direct: Arc::new([]) },
        ExecutionMode::Hybrid => Mode::Code { direct: code.direct_tools.as_slice().into() },
    }
}

/// The principal [`check`] admitted a request as, from the request's extensions; anonymous where the layer did
/// not run (a router without it, in tests).
pub(crate) fn principal(extensions: &http::Extensions) -> Arc<Principal> {
    extensions.get::<Arc<Principal>>().cloned().unwrap_or_else(Principal::shared_anonymous)
}

/// 401 with the RFC 6750 challenge: bare when no credential came, `invalid_token` with a description when one
/// did; `params` (the protected-resource metadata's URL and scopes, RFC 9728 §5.1) added to either.
fn unauthorized(failure: AuthFailure, params: &str) -> Response {
    let description = match failure {
        AuthFailure::InvalidKey => Some("the API key is not valid"),
        AuthFailure::ExpiredKey => Some("the API key has expired"),
        AuthFailure::InvalidToken(why) => Some(why),
        AuthFailure::ExpiredToken => Some("the token has expired"),
        AuthFailure::KeysUnavailable => {
            Some("the token's signing keys cannot be fetched now; try again later")
        }
        AuthFailure::MissingKey | AuthFailure::IpNotAllowed => None,
    };
    let (message, challenge) = match description {
        Some(description) => (
            format!("Unauthorized: {description}"),
            format!(
                r#"Bearer realm="mcpgate", error="invalid_token", error_description="{description}"{params}"#
            ),
        ),
        None => (
            "Unauthorized: an API key is required (x-api-key or Authorization: Bearer)".to_owned(),
            format!(r#"Bearer realm="mcpgate"{params}"#),
        ),
    };
    let mut response = Rejection::Unauthorized(message).into_response();
    // Every part is ours (static descriptions, validated URL and scopes): always a valid header value.
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    refused(response, failure)
}

/// `, resource_metadata="<url>"` and, with scopes configured, `, scope="<scopes>"`: what the MCP authorization
/// spec asks a 401 to carry so a client can find the authorization server.
fn challenge_params(oauth: &mcpgate_config::OAuthResourceConfig) -> Result<String, String> {
    let url = oauth.metadata_url().map_err(|e| format!("security.oauth.resource: {e}"))?;
    let mut params = format!(r#", resource_metadata="{url}""#);
    if !oauth.scopes_supported.is_empty() {
        params.push_str(&format!(r#", scope="{}""#, oauth.scopes_supported.join(" ")));
    }
    if HeaderValue::from_str(&params).is_err() || params.matches('"').count() % 2 != 0 {
        return Err(
            "security.oauth: the resource URL or a scope holds a character a header cannot carry".into()
        );
    }
    Ok(params)
}

fn refused(mut response: Response, failure: AuthFailure) -> Response {
    response.extensions_mut().insert(failure);
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use http::StatusCode;

    use axum::{Extension, Router, body::Body, routing::post};
    use http_body_util::BodyExt;
    use mcpgate_config::{ApiKeyConfig, Secret};
    use tower::ServiceExt;

    use super::*;

    fn security(keys: Vec<ApiKeyConfig>) -> SecurityConfig {
        SecurityConfig { api_keys: keys, ..Default::default() }
    }

    /// `authenticate`, run to completion (API keys never wait on anything).
    fn auth(access: &Access, headers: &HeaderMap, now: SystemTime) -> Result<Principal, AuthFailure> {
        futures::executor::block_on(access.authenticate(headers, now))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn keys_are_read_from_either_header() {
        assert_eq!(presented_key(&headers(&[("x-api-key", " k1 ")])), Some("k1"));
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer k2")])), Some("k2"));
        assert_eq!(presented_key(&headers(&[("authorization", "bearer   k3")])), Some("k3"));
        assert_eq!(presented_key(&headers(&[("authorization", "Basic dXNlcjpwdw==")])), None);
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&headers(&[("x-api-key", "")])), None);
        let both = headers(&[("x-api-key", "header"), ("authorization", "Bearer bearer")]);
        assert_eq!(presented_key(&both), Some("header"));
    }

    #[test]
    fn each_hash_form_matches_only_its_key() {
        let mut config = security(vec![
            ApiKeyConfig::new("plain", &KeyHash::sha256("k-plain")),
            ApiKeyConfig::new("salted", &KeyHash::hmac_sha256("pepper", "k-salted")),
        ]);
        config.api_key_salt = Some(Secret::new("pepper"));
        let access = Access::new(&config, &CodeModeConfig::default()).unwrap();
        let now = SystemTime::now();
        let who = |key: &str| auth(&access, &headers(&[("x-api-key", key)]), now).map(|p| p.name.to_string());
        assert_eq!(who("k-plain").as_deref(), Ok("plain"));
        assert_eq!(who("k-salted").as_deref(), Ok("salted"));
        assert_eq!(who("k-plai"), Err(AuthFailure::InvalidKey));
        // The salted key's sha256 is not what its entry holds, and vice versa.
        assert_eq!(who(&KeyHash::sha256("k-salted").to_string()), Err(AuthFailure::InvalidKey));
        assert_eq!(auth(&access, &HeaderMap::new(), now), Err(AuthFailure::MissingKey));
    }

    #[test]
    fn expiry_is_checked_after_the_match() {
        let mut key = ApiKeyConfig::new("old", &KeyHash::sha256("k"));
        key.expires = Some("2030-01-01T00:00:00Z".into());
        let access = Access::new(&security(vec![key]), &CodeModeConfig::default()).unwrap();
        let expires = mcpgate_config::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        let key = headers(&[("x-api-key", "k")]);
        assert!(auth(&access, &key, expires - Duration::from_secs(1)).is_ok());
        assert_eq!(auth(&access, &key, expires), Err(AuthFailure::ExpiredKey));
    }

    #[test]
    fn anonymous_follows_the_rule_but_a_wrong_key_is_never_anonymous() {
        let open = Access::new(&SecurityConfig::default(), &CodeModeConfig::default()).unwrap();
        let now = SystemTime::now();
        assert!(auth(&open, &HeaderMap::new(), now).unwrap().anonymous);
        // No key configured: any presented key matches nothing.
        assert_eq!(auth(&open, &headers(&[("x-api-key", "x")]), now), Err(AuthFailure::InvalidKey));
        let mut both = security(vec![ApiKeyConfig::new("k", &KeyHash::sha256("k"))]);
        both.allow_anonymous = Some(true);
        let both = Access::new(&both, &CodeModeConfig::default()).unwrap();
        assert!(auth(&both, &HeaderMap::new(), now).unwrap().anonymous);
        assert_eq!(auth(&both, &headers(&[("x-api-key", "x")]), now), Err(AuthFailure::InvalidKey));
    }

    #[test]
    fn an_unvalidated_config_is_refused_at_build() {
        let mut config = security(vec![ApiKeyConfig::new("h", &KeyHash::hmac_sha256("s", "k"))]);
        config.allowed_ips.push("nowhere".into());
        let error = Access::new(&config, &CodeModeConfig::default()).err().unwrap();
        assert!(error.contains("API_KEY_SALT") && error.contains("nowhere"), "{error}");
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let config = SecurityConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "2001:db8:ffff::/48".into()],
            ..Default::default()
        };
        let access = Access::new(&config, &CodeModeConfig::default()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.1.2.3");
        let xff = |v: &str| headers(&[("x-forwarded-for", v)]);
        // An untrusted peer's headers are ignored.
        assert_eq!(access.client_ip(ip("192.0.2.9"), &xff("203.0.113.7")), ip("192.0.2.9"));
        // From a proxy: the right-most hop that is not a proxy; what the client wrote to its left is ignored.
        assert_eq!(access.client_ip(proxy, &xff("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(access.client_ip(proxy, &xff("1.1.1.1, 203.0.113.7, 10.9.9.9")), ip("203.0.113.7"));
        let two = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "198.51.100.4, 10.0.0.2")]);
        assert_eq!(access.client_ip(proxy, &two), ip("198.51.100.4"));
        // Ports and IPv6, IPv4-mapped peers.
        assert_eq!(access.client_ip(proxy, &xff("[2001:db8::1]:443")), ip("2001:db8::1"));
        assert_eq!(access.client_ip(proxy, &xff("203.0.113.7:5555")), ip("203.0.113.7"));
        assert_eq!(access.client_ip(ip("::ffff:10.0.0.1"), &xff("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(access.client_ip(ip("2001:db8:ffff::1"), &xff("2001:db8::5")), ip("2001:db8::5"));
        // Only proxies listed: the left-most. Garbage: the last good hop.
        assert_eq!(access.client_ip(proxy, &xff("10.0.0.9, 10.0.0.8")), ip("10.0.0.9"));
        assert_eq!(access.client_ip(proxy, &xff("203.0.113.7, junk, 10.0.0.8")), ip("10.0.0.8"));
        // X-Real-IP only without X-Forwarded-For.
        assert_eq!(access.client_ip(proxy, &headers(&[("x-real-ip", "203.0.113.8")])), ip("203.0.113.8"));
        let both = headers(&[("x-real-ip", "203.0.113.8"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(access.client_ip(proxy, &both), ip("203.0.113.9"));
        assert_eq!(
            access.client_ip(ip("192.0.2.9"), &headers(&[("x-real-ip", "203.0.113.8")])),
            ip("192.0.2.9")
        );
    }

    /// A route answering with the principal the layer put in the extensions.
    fn app(security: SecurityConfig, peer: &str) -> Router {
        let access = Arc::new(Access::new(&security, &CodeModeConfig::default()).unwrap());
        let who = |Extension(principal): Extension<Arc<Principal>>| async move {
            format!("{} {} {:?}", principal.name, principal.anonymous, principal.client_ip)
        };
        Router::new()
            .route("/mcp", post(who))
            .layer(axum::middleware::from_fn(move |req, next: axum::middleware::Next| {
                let access = access.clone();
                async move { check(&access, req, |req| next.run(req)).await }
            }))
            // What `into_make_service_with_connect_info` puts on every request.
            .layer(Extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap())))
    }

    async fn send(app: Router, pairs: &[(&str, &str)]) -> (StatusCode, Option<String>, String) {
        let mut request = Request::post("/mcp").body(Body::empty()).unwrap();
        *request.headers_mut() = headers(pairs);
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let challenge = response.headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        let body =
            String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (status, challenge, body)
    }

    #[tokio::test]
    async fn the_principal_reaches_the_handler_with_its_address() {
        let mut config = security(vec![ApiKeyConfig::new("ci", &KeyHash::sha256("k"))]);
        config.trusted_proxies = vec!["127.0.0.1".into()];
        let (status, _, body) = send(
            app(config.clone(), "127.0.0.1:9"),
            &[("x-api-key", "k"), ("x-forwarded-for", "203.0.113.7")],
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ci false Some(203.0.113.7)"));
        let (status, challenge, body) = send(app(config, "127.0.0.1:9"), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="mcpgate""#));
        assert!(body.contains("-32004"), "{body}");
        let (_, _, body) = send(app(SecurityConfig::default(), "[::1]:9"), &[]).await;
        assert_eq!(body, "anonymous true Some(::1)");
    }

    #[tokio::test]
    async fn without_a_peer_address_an_allowlist_refuses() {
        let config = SecurityConfig { allowed_ips: vec!["0.0.0.0/0".into()], ..Default::default() };
        let access = Arc::new(Access::new(&config, &CodeModeConfig::default()).unwrap());
        let app = Router::new().route("/mcp", post(|| async { "in" })).layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                let access = access.clone();
                async move { check(&access, req, |req| next.run(req)).await }
            },
        ));
        let (status, _, body) = send(app, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("client address unknown"), "{body}");
    }
}
