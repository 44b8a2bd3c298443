//! JWT bearer tokens (`security.jwt`): verified with the configured keys, then turned into a [`Principal`].
//!
//! Verification is `jsonwebtoken`'s: the header's `alg` must be one of the configured algorithms, and each
//! algorithm is tried only with keys of its own kind (an HMAC secret for `HS*`, public keys for the rest), so a
//! token signed `HS256` with the RSA public key as its secret fails. The signature is checked before any claim;
//! `exp` is required, `nbf` honoured, `iss` and `aud` checked when configured (the claim then required).

use std::{str::FromStr, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use mcpgate_config::{JwtConfig, OAuthResourceConfig};
use mcpgate_core::Principal;
use serde_json::{Map, Value};

use crate::jwks::Jwks;

/// Why a token was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFailure {
    /// It did not verify, or its claims are not acceptable; the reason is safe to show the client.
    Invalid(&'static str),
    /// Its `exp` has passed.
    Expired,
    /// The issuer's key set could not be fetched (and no cached one is usable).
    KeysUnavailable,
}

/// The prepared `security.jwt` section.
pub(crate) struct JwtAuth {
    /// The configured algorithms, each with what a token signed with it must satisfy (`jsonwebtoken` wants one
    /// family per `Validation`); the header's `alg` must be one of them.
    algorithms: Vec<(Algorithm, Validation)>,
    /// The `JWT_SECRET` key, for `HS*`.
    secret: Option<DecodingKey>,
    /// The configured public key, for its own kind of algorithm.
    public_key: Option<DecodingKey>,
    /// The issuer's key set, shared with the configuration before a reload that left it alone.
    jwks: Option<Arc<Jwks>>,
    claims: ClaimMap,
}

/// How claims become a principal.
struct ClaimMap {
    subject: String,
    tier: String,
    /// Shared by every principal without a tier claim.
    default_tier: Arc<str>,
    tools: String,
    scope_tools: Vec<(String, Vec<String>)>,
    /// Shared by every principal without a tools claim or a mapped scope.
    default_tools: Arc<[String]>,
    resources: String,
    /// Shared by every principal without a resources claim.
    default_resources: Arc<[String]>,
    prompts: String,
    /// Shared by every principal without a prompts claim.
    default_prompts: Arc<[String]>,
}

impl JwtAuth {
    /// Prepare `jwt`: parse the algorithms and the public key (reading `public_key_file`), set up the key set's
    /// cache. The audience defaults to `oauth.resource`. Fails with every problem found.
    pub(crate) fn new(jwt: &JwtConfig, oauth: Option<&OAuthResourceConfig>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut algorithms = Vec::new();
        for name in jwt.effective_algorithms() {
            match Algorithm::from_str(&name) {
                Ok(alg) => algorithms.push(alg),
                Err(_) => problems.push(format!("security.jwt.algorithms: unknown algorithm {name:?}")),
            }
        }
        if algorithms.is_empty() && problems.is_empty() {
            problems.push("security.jwt: no algorithm (and no key to infer one from)".into());
        }
        let secret = jwt.secret.as_ref().map(|s| DecodingKey::from_secret(s.expose().as_bytes()));
        let public_key = match public_key_pem(jwt) {
            Ok(Some((field, pem))) => match parse_public_key(pem.as_bytes()) {
                Some(key) => {
                    if !algorithms.iter().any(|a| a.family() == key.family()) {
                        problems.push(format!(
                            "security.jwt.{field}: a {:?} key, but no configured algorithm uses one (algorithms: \
                             {algorithms:?})",
                            key.family()
                        ));
                    }
                    Some(key)
                }
                None => {
                    problems.push(format!("security.jwt.{field}: not a PEM public key (RSA, EC or Ed25519)"));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let jwks = match &jwt.jwks_url {
            Some(url) => Jwks::new(url, jwt.jwks_ttl.0, jwt.jwks_min_refresh.0, jwt.jwks_timeout.0)
                .map(Arc::new)
                .map_err(|e| problems.push(e))
                .ok(),
            None => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let audiences: Vec<String> = if jwt.audiences.is_empty() {
            oauth.map(|o| vec![o.resource.clone()]).unwrap_or_default()
        } else {
            jwt.audiences.clone()
        };
        Ok(Self {
            algorithms: algorithms
                .iter()
                .map(|alg| (*alg, validation(*alg, &jwt.issuers, &audiences, jwt.leeway.0)))
                .collect(),
            secret,
            public_key,
            jwks,
            claims: ClaimMap {
                subject: jwt.subject_claim.clone(),
                tier: jwt.tier_claim.clone(),
                default_tier: jwt.default_tier.as_str().into(),
                tools: jwt.tools_claim.clone(),
                scope_tools: jwt.scope_tools.iter().map(|(s, g)| (s.clone(), g.clone())).collect(),
                default_tools: jwt.default_tools.as_slice().into(),
                resources: jwt.resources_claim.clone(),
                default_resources: jwt.default_resources.as_slice().into(),
                prompts: jwt.prompts_claim.clone(),
                default_prompts: jwt.default_prompts.as_slice().into(),
            },
        })
    }

    /// Use `previous`'s cached key set when it is fetched from the same place the same way (a reload).
    pub(crate) fn keep_key_set(&mut self, previous: &JwtAuth) {
        if let (Some(jwks), Some(kept)) = (&mut self.jwks, &previous.jwks)
            && jwks.same_as(kept)
        {
            *jwks = kept.clone();
        }
    }

    /// Verify `token` and build its principal.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Principal, TokenFailure> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenFailure::Invalid("the token is not a well-formed JWT"))?;
        let Some((_, validation)) = self.algorithms.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(TokenFailure::Invalid("the token's signing algorithm is not accepted"));
        };
        let kid = header.kid.as_deref();
        let family = header.alg.family();
        let verify = |key: &DecodingKey| {
            let verdict =
                jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map(|data| data.claims);
            // Only a bad signature means another key might do; any other answer is final.
            let settled = !matches!(&verdict, Err(e) if *e.kind() == ErrorKind::InvalidSignature);
            (settled, verdict)
        };
        let mut last = None;
        // The configured secret or public key first; a token naming a key id is for the key set, so the public
        // key is tried for it only when there is no key set.
        let public_key = self.public_key.as_ref().filter(|_| kid.is_none() || self.jwks.is_none());
        for key in self.secret.iter().chain(public_key).filter(|key| key.family() == family) {
            match verify(key) {
                (true, verdict) => return self.principal(verdict),
                (false, verdict) => last = Some(verdict),
            }
        }
        if family != jsonwebtoken::AlgorithmFamily::Hmac
            && let Some(jwks) = &self.jwks
        {
            let set = jwks.key_set(kid, header.alg).await.map_err(|_| TokenFailure::KeysUnavailable)?;
            for key in set.matching(kid, header.alg) {
                match verify(&key.key) {
                    (true, verdict) => return self.principal(verdict),
                    (false, verdict) => last = Some(verdict),
                }
            }
            if last.is_none() && kid.is_some() {
                return Err(TokenFailure::Invalid("the token's key id (kid) is not in the issuer's key set"));
            }
        }
        match last {
            Some(verdict) => self.principal(verdict),
            None => Err(TokenFailure::Invalid("no configured key can verify the token")),
        }
    }

    /// The principal of verified claims, or why the token is refused.
    fn principal(
        &self,
        verdict: Result<Map<String, Value>, jsonwebtoken::errors::Error>,
    ) -> Result<Principal, TokenFailure> {
        self.claims.principal(&verdict.map_err(failure)?)
    }
}

/// The message of a signature that does not verify.
const BAD_SIGNATURE: &str = "the token's signature does not verify";

/// `jsonwebtoken`'s verdict as the client may hear it.
fn failure(error: jsonwebtoken::errors::Error) -> TokenFailure {
    TokenFailure::Invalid(match error.kind() {
        ErrorKind::ExpiredSignature => return TokenFailure::Expired,
        ErrorKind::InvalidSignature => BAD_SIGNATURE,
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
        ErrorKind::InvalidAudience => "the token was not issued for this server (aud)",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "the token's signing algorithm is not accepted"
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "the token has no expiry (exp)",
            "iss" => "the token has no issuer (iss)",
            "aud" => "the token has no audience (aud)",
            _ => "the token lacks a required claim",
        },
        ErrorKind::InvalidClaimFormat(_) => "a registered claim of the token has the wrong type",
        _ => "the token is not a well-formed JWT",
    })
}

/// What a token signed with `algorithm` must satisfy besides its signature.
fn validation(
    algorithm: Algorithm,
    issuers: &[String],
    audiences: &[String],
    leeway: Duration,
) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if !issuers.is_empty() {
        validation.set_issuer(issuers);
        required.push("iss");
    }
    if !audiences.is_empty() {
        validation.set_audience(audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The configured PEM text and the field it came from.
fn public_key_pem(jwt: &JwtConfig) -> Result<Option<(&'static str, String)>, String> {
    if let Some(pem) = &jwt.public_key_pem {
        return Ok(Some(("public_key_pem", pem.clone())));
    }
    let Some(path) = &jwt.public_key_file else { return Ok(None) };
    std::fs::read_to_string(path)
        .map(|pem| Some(("public_key_file", pem)))
        .map_err(|e| format!("security.jwt.public_key_file: cannot read {}: {e}", path.display()))
}

/// A PEM public key of any supported kind.
fn parse_public_key(pem: &[u8]) -> Option<DecodingKey> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .ok()
}

impl ClaimMap {
    /// The principal of verified `claims`: named by the subject claim, in the tier claim's tier (or the default),
    /// with the tools of the tools claim, else of its scopes (when scopes are mapped), else the default tools.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, TokenFailure> {
        let name: Arc<str> = match claims.get(&self.subject) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.as_str().into(),
            Some(Value::Number(n)) => n.to_string().into(),
            _ => return Err(TokenFailure::Invalid("the token does not name its subject")),
        };
        let tier = match claims.get(&self.tier) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.as_str().into(),
            _ => self.default_tier.clone(),
        };
        let tools: Arc<[String]> = match claims.get(&self.tools) {
            Some(value) => words(value)
                .ok_or(TokenFailure::Invalid("the token's tools claim is not a list of globs"))?
                .into(),
            None if !self.scope_tools.is_empty() => {
                let scopes: Vec<String> = ["scope", "scp"]
                    .iter()
                    .filter_map(|c| claims.get(*c))
                    .filter_map(words)
                    .flatten()
                    .collect();
                let mut tools: Vec<String> = Vec::new();
                let granted = self.scope_tools.iter().filter(|(scope, _)| scopes.contains(scope));
                for glob in granted.flat_map(|(_, globs)| globs) {
                    if !tools.contains(glob) {
                        tools.push(glob.clone());
                    }
                }
                tools.into()
            }
            None => self.default_tools.clone(),
        };
        let globs = |claim: &str, default: &Arc<[String]>, bad: &'static str| match claims.get(claim) {
            Some(value) => words(value).map(Arc::from).ok_or(TokenFailure::Invalid(bad)),
            None => Ok(default.clone()),
        };
        let resources = globs(
            &self.resources,
            &self.default_resources,
            "the token's resources claim is not a list of globs",
        )?;
        let prompts =
            globs(&self.prompts, &self.default_prompts, "the token's prompts claim is not a list of globs")?;
        Ok(Principal::token(name, tier, tools).with_grants(resources, prompts))
    }
}

/// A list of strings, or one space-separated string (the OAuth `scope` form).
fn words(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// Whether a credential is shaped like a JWT: three base64url segments (the last empty only for an unsigned
/// token, which is then refused as such rather than looked up as an API key).
pub(crate) fn looks_like_jwt(credential: &str) -> bool {
    let mut segments = credential.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return false;
    };
    let base64url = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    !header.is_empty()
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{EncodingKey, Header};
    use mcpgate_config::Secret;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs256(secret: &str) -> JwtConfig {
        JwtConfig { secret: Some(Secret::new(secret)), ..Default::default() }
    }

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn jwt_shaped_credentials_are_told_from_api_keys() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        for not in ["mcpg_abc123", "a.b", "a.b.c.d", ".b.c", "a b.c.d", "a.b+c.d", ""] {
            assert!(!looks_like_jwt(not), "{not}");
        }
    }

    #[tokio::test]
    async fn claims_become_the_principal() {
        let auth = JwtAuth::new(&hs256(SECRET), None).unwrap();
        let token = sign(
            json!({ "sub": "alice", "tier": "paid", "tools": ["search_*"], "exp": in_an_hour() }),
            SECRET,
        );
        let principal = auth.authenticate(&token).await.unwrap();
        assert_eq!((&*principal.name, principal.tier.as_deref()), ("alice", Some("paid")));
        assert_eq!(&principal.tools[..], ["search_*".to_owned()]);
        assert!(!principal.anonymous);
        // Defaults: tier `default`, every tool; a space-separated tools claim is a list too.
        let token = sign(json!({ "sub": "bob", "exp": in_an_hour() }), SECRET);
        let principal = auth.authenticate(&token).await.unwrap();
        assert_eq!(
            (principal.tier.as_deref(), &principal.tools[..]),
            (Some("default"), &["*".to_owned()][..])
        );
        let token = sign(json!({ "sub": "carol", "tools": "add echo", "exp": in_an_hour() }), SECRET);
        assert_eq!(auth.authenticate(&token).await.unwrap().tools.len(), 2);
    }

    #[tokio::test]
    async fn resources_and_prompts_come_from_their_claims_else_the_defaults() {
        let mut config = hs256(SECRET);
        config.default_prompts = vec!["public_*".into()];
        let auth = JwtAuth::new(&config, None).unwrap();
        let token =
            sign(json!({ "sub": "dana", "resources": "docs://* wiki://*", "exp": in_an_hour() }), SECRET);
        let principal = auth.authenticate(&token).await.unwrap();
        assert_eq!(&principal.resources[..], ["docs://*".to_owned(), "wiki://*".to_owned()]);
        assert_eq!(&principal.prompts[..], ["public_*".to_owned()], "no claim: the default");
        let token = sign(json!({ "sub": "dana", "prompts": 3, "exp": in_an_hour() }), SECRET);
        assert!(auth.authenticate(&token).await.is_err(), "a malformed claim is refused");
    }

    #[tokio::test]
    async fn scopes_map_to_tools_when_no_tools_claim_is_given() {
        let mut config = hs256(SECRET);
        config.scope_tools.insert("tools:math".into(), vec!["add".into()]);
        config.scope_tools.insert("tools:talk".into(), vec!["echo".into(), "add".into()]);
        let auth = JwtAuth::new(&config, None).unwrap();
        let tools = |claims: Value| {
            let token = sign(claims, SECRET);
            let auth = &auth;
            async move { auth.authenticate(&token).await.map(|p| p.tools.to_vec()) }
        };
        let exp = in_an_hour();
        assert_eq!(
            tools(json!({ "sub": "a", "exp": exp, "scope": "openid tools:math" })).await.unwrap(),
            ["add"]
        );
        assert_eq!(
            tools(json!({ "sub": "a", "exp": exp, "scp": ["tools:math", "tools:talk"] })).await.unwrap(),
            ["add", "echo"]
        );
        assert!(tools(json!({ "sub": "a", "exp": exp, "scope": "openid" })).await.unwrap().is_empty());
        assert!(tools(json!({ "sub": "a", "exp": exp })).await.unwrap().is_empty());
        // The tools claim wins; a malformed one is refused.
        assert_eq!(
            tools(json!({ "sub": "a", "exp": exp, "tools": ["x"], "scope": "tools:math" })).await.unwrap(),
            ["x"]
        );
        assert!(matches!(
            tools(json!({ "sub": "a", "exp": exp, "tools": 7 })).await,
            Err(TokenFailure::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn claims_are_checked_after_the_signature() {
        let mut config = hs256(SECRET);
        config.issuers = vec!["https://idp.example.com".into()];
        config.audiences = vec!["mcpgate".into()];
        config.leeway = mcpgate_config::HumanDuration::secs(0);
        let auth = JwtAuth::new(&config, None).unwrap();
        let good =
            json!({ "sub": "a", "iss": "https://idp.example.com", "aud": "mcpgate", "exp": in_an_hour() });
        assert!(auth.authenticate(&sign(good.clone(), SECRET)).await.is_ok());
        let with = |field: &str, value: Value| {
            let mut claims = good.clone();
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(field);
            } else {
                claims[field] = value;
            }
            sign(claims, SECRET)
        };
        let now = jsonwebtoken::get_current_timestamp();
        for (token, expected) in [
            (with("exp", json!(now - 10)), TokenFailure::Expired),
            (with("exp", Value::Null), TokenFailure::Invalid("the token has no expiry (exp)")),
            (with("nbf", json!(now + 600)), TokenFailure::Invalid("the token is not valid yet (nbf)")),
            (
                with("iss", json!("https://evil.example.com")),
                TokenFailure::Invalid("the token's issuer (iss) is not accepted"),
            ),
            (with("iss", Value::Null), TokenFailure::Invalid("the token has no issuer (iss)")),
            (
                with("aud", json!("another-api")),
                TokenFailure::Invalid("the token was not issued for this server (aud)"),
            ),
            (with("sub", Value::Null), TokenFailure::Invalid("the token does not name its subject")),
            (sign(good.clone(), "another secret, also 32 bytes long!"), TokenFailure::Invalid(BAD_SIGNATURE)),
            ("not.a.jwt".to_owned(), TokenFailure::Invalid("the token is not a well-formed JWT")),
        ] {
            assert_eq!(auth.authenticate(&token).await.err(), Some(expected), "{expected:?}");
        }
        // An expired token with a forged signature is a bad signature, not "expired".
        let forged = sign(json!({ "sub": "a", "exp": now - 10 }), "another secret, also 32 bytes long!");
        assert_eq!(auth.authenticate(&forged).await.err(), Some(TokenFailure::Invalid(BAD_SIGNATURE)));
    }

    #[tokio::test]
    async fn the_audience_defaults_to_the_oauth_resource_and_none_refuses_named_audiences() {
        let oauth = OAuthResourceConfig {
            resource: "https://mcp.example.com/mcp".into(),
            authorization_servers: vec!["https://idp.example.com".into()],
            scopes_supported: vec![],
            resource_name: None,
            resource_documentation: None,
        };
        let auth = JwtAuth::new(&hs256(SECRET), Some(&oauth)).unwrap();
        let for_us =
            sign(json!({ "sub": "a", "aud": "https://mcp.example.com/mcp", "exp": in_an_hour() }), SECRET);
        assert!(auth.authenticate(&for_us).await.is_ok());
        let unbound = sign(json!({ "sub": "a", "exp": in_an_hour() }), SECRET);
        assert_eq!(
            auth.authenticate(&unbound).await.err(),
            Some(TokenFailure::Invalid("the token has no audience (aud)"))
        );
        // No audience configured at all: a token meant for someone else is still refused.
        let plain = JwtAuth::new(&hs256(SECRET), None).unwrap();
        assert!(plain.authenticate(&unbound).await.is_ok());
        let elsewhere = sign(json!({ "sub": "a", "aud": "billing-api", "exp": in_an_hour() }), SECRET);
        assert!(plain.authenticate(&elsewhere).await.is_err());
    }

    #[tokio::test]
    async fn unsigned_and_unlisted_algorithms_are_refused() {
        let auth = JwtAuth::new(&hs256(SECRET), None).unwrap();
        let b64 = |v: Value| {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string())
        };
        let unsigned =
            format!("{}.{}.", b64(json!({ "alg": "none" })), b64(json!({ "sub": "a", "exp": in_an_hour() })));
        assert!(matches!(auth.authenticate(&unsigned).await, Err(TokenFailure::Invalid(_))));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({ "sub": "a", "exp": in_an_hour() }),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(&hs512).await.err(),
            Some(TokenFailure::Invalid("the token's signing algorithm is not accepted"))
        );
    }

    #[test]
    fn a_bad_public_key_is_a_build_error_naming_its_field() {
        let config = JwtConfig {
            public_key_pem: Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()),
            ..Default::default()
        };
        let problems = JwtAuth::new(&config, None).err().unwrap();
        assert!(problems[0].contains("security.jwt.public_key_pem: not a PEM public key"), "{problems:?}");
        let config = JwtConfig { public_key_file: Some("/nonexistent/key.pem".into()), ..Default::default() };
        let problems = JwtAuth::new(&config, None).err().unwrap();
        assert!(problems[0].contains("cannot read /nonexistent/key.pem"), "{problems:?}");
    }

    #[test]
    fn a_reload_that_leaves_the_key_set_alone_keeps_its_cache() {
        let jwks = |url: &str| JwtConfig { jwks_url: Some(url.into()), ..Default::default() };
        let before = JwtAuth::new(&jwks("https://issuer.example/jwks"), None).unwrap();
        let same = |auth: &JwtAuth| Arc::ptr_eq(auth.jwks.as_ref().unwrap(), before.jwks.as_ref().unwrap());

        let mut reloaded = JwtAuth::new(&jwks("https://issuer.example/jwks"), None).unwrap();
        assert!(!same(&reloaded), "built afresh");
        reloaded.keep_key_set(&before);
        assert!(same(&reloaded), "the same URL and timings: the cached set is kept");

        let mut moved = JwtAuth::new(&jwks("https://other.example/jwks"), None).unwrap();
        moved.keep_key_set(&before);
        assert!(!same(&moved), "another URL starts empty");
        let mut retimed = jwks("https://issuer.example/jwks");
        retimed.jwks_ttl = mcpgate_config::HumanDuration::secs(1);
        let mut retimed = JwtAuth::new(&retimed, None).unwrap();
        retimed.keep_key_set(&before);
        assert!(!same(&retimed), "another TTL starts empty");
    }
}
