//! The issuer's JSON Web Key Set, fetched and cached for JWT verification (`security.jwt.jwks_url`).
//!
//! A set is used for `ttl` after it was fetched. A token whose key id the set lacks (the issuer rotated its
//! keys) triggers a fetch, as does a stale set — but never more than once per `min_refresh`, so made-up key ids
//! cannot flood the issuer. One fetch at a time: concurrent requests wait for it. When fetches fail the last good
//! set keeps serving for one more `ttl` (an issuer's blip does not lock everyone out); after that, and before any
//! fetch succeeded, tokens are refused. Never does a failure admit a token unchecked.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, Jwk, PublicKeyUse},
};
use tokio::{sync::Mutex, time::Instant};

/// The largest key set read: real ones are a few KiB.
const MAX_BODY: usize = 1 << 20;

/// Why no key set is at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable;

/// One verification key of the set.
pub(crate) struct SetKey {
    kid: Option<String>,
    /// The `alg` the key is restricted to, when the set says.
    alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// A fetched key set.
pub(crate) struct KeySet {
    keys: Vec<SetKey>,
    fetched: Instant,
}

impl KeySet {
    /// The keys that may verify a token signed with `alg` and naming `kid`: with a `kid`, the key of that id;
    /// without, every key of the algorithm's kind. A key restricted to another `alg` never matches.
    pub(crate) fn matching(&self, kid: Option<&str>, alg: Algorithm) -> impl Iterator<Item = &SetKey> {
        let family = alg.family();
        self.keys.iter().filter(move |k| {
            k.key.family() == family
                && k.alg.is_none_or(|a| a == alg)
                && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
        })
    }

    fn has(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.matching(kid, alg).next().is_some()
    }
}

/// A cached key set and how to fetch it again.
pub(crate) struct Jwks {
    url: String,
    client: reqwest::Client,
    ttl: Duration,
    min_refresh: Duration,
    timeout: Duration,
    current: ArcSwapOption<KeySet>,
    /// When the last fetch began; held while fetching, so fetches happen one at a time.
    last_attempt: Mutex<Option<Instant>>,
}

impl Jwks {
    /// A cache of the set at `url`; nothing is fetched until a token needs it.
    pub(crate) fn new(
        url: &str,
        ttl: Duration,
        min_refresh: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect could lead from https to a plain-http copy of the keys.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("security.jwt.jwks_url: cannot build an HTTP client: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            ttl,
            min_refresh,
            timeout,
            current: ArcSwapOption::empty(),
            last_attempt: Mutex::new(None),
        })
    }

    /// Whether `other` fetches the same set the same way: a reload that leaves the settings alone keeps the
    /// cached set (and its fetch schedule) rather than starting empty, which would make every token after the
    /// reload wait for a fetch — and fail while the issuer is out of reach.
    pub(crate) fn same_as(&self, other: &Jwks) -> bool {
        (&self.url, self.ttl, self.min_refresh, self.timeout)
            == (&other.url, other.ttl, other.min_refresh, other.timeout)
    }

    /// A key set in which to look for the key of `kid` / `alg`: the cached one while fresh and holding such a
    /// key, else a freshly fetched one when a fetch is due, else the cached one within its grace period.
    pub(crate) async fn key_set(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, Unavailable> {
        let usable = |set: &Arc<KeySet>| set.fetched.elapsed() < self.ttl && set.has(kid, alg);
        if let Some(set) = self.current.load_full().filter(usable) {
            return Ok(set);
        }
        let mut last_attempt = self.last_attempt.lock().await;
        // Another request may have fetched while this one waited.
        let current = self.current.load_full();
        if let Some(set) = current.clone().filter(usable) {
            return Ok(set);
        }
        if last_attempt.is_none_or(|at| at.elapsed() >= self.min_refresh) {
            *last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    tracing::info!(url = %self.url, keys = set.keys.len(), "JWKS fetched");
                    let set = Arc::new(set);
                    self.current.store(Some(set.clone()));
                    return Ok(set);
                }
                Err(error) => tracing::warn!(url = %self.url, %error, "JWKS fetch failed"),
            }
        }
        match current {
            Some(set) if set.fetched.elapsed() < self.ttl * 2 => Ok(set),
            _ => Err(Unavailable),
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the key set is larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_key_set(&body)?;
        Ok(KeySet { keys, fetched: Instant::now() })
    }
}

/// The signature-verification keys of a JWKS document. Keys of a kind not understood, meant for encryption, or
/// symmetric (a secret published in a key set is no secret) are skipped; a set left with none is an error.
fn parse_key_set(body: &[u8]) -> Result<Vec<SetKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWK set ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = Vec::with_capacity(document.keys.len());
    for (index, value) in document.keys.into_iter().enumerate() {
        match signature_key(value) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => tracing::debug!(index, "JWKS key for encryption or symmetric: skipped"),
            Err(reason) => tracing::warn!(index, %reason, "JWKS key not understood: skipped"),
        }
    }
    if keys.is_empty() {
        return Err("the set holds no usable signature key".into());
    }
    Ok(keys)
}

/// One JWK as a signature-verification key: `None` for a key that is not one (encryption, symmetric), an error
/// for one not understood.
fn signature_key(value: serde_json::Value) -> Result<Option<SetKey>, String> {
    let kid = value.get("kid").and_then(serde_json::Value::as_str).map(str::to_owned);
    let named = |e: &dyn std::fmt::Display| format!("kid {kid:?}: {e}");
    let jwk = serde_json::from_value::<Jwk>(value).map_err(|e| named(&e))?;
    let for_encryption = matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    if for_encryption || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| named(&e))?;
    // A key restricted to an algorithm that signs nothing (an encryption one) is not a signature key.
    let alg = match jwk.common.key_algorithm {
        Some(alg) => match alg.to_string().parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            Err(_) => return Ok(None),
        },
        None => None,
    };
    Ok(Some(SetKey { kid: jwk.common.key_id, alg, key }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    /// A 2048-bit RSA modulus (any odd value of the right size parses as a public key).
    fn rsa(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let n = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xC3u8; 256]);
        let mut key = json!({ "kty": "RSA", "kid": kid, "n": n, "e": "AQAB" });
        if let Some(alg) = alg {
            key["alg"] = json!(alg);
        }
        key
    }

    #[test]
    fn only_signature_keys_of_known_kinds_are_kept() {
        let document = json!({ "keys": [
            rsa("a", Some("RS256")),
            rsa("b", None),
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "weird", "kid": "w" },
        ]});
        let keys = parse_key_set(document.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["a", "b"]);
        let set = KeySet { keys, fetched: Instant::now() };
        assert_eq!(set.matching(Some("a"), Algorithm::RS256).count(), 1);
        // Key `a` is restricted to RS256; `b` is not restricted.
        assert_eq!(set.matching(Some("a"), Algorithm::PS256).count(), 0);
        assert_eq!(set.matching(None, Algorithm::PS256).count(), 1);
        assert_eq!(set.matching(None, Algorithm::RS256).count(), 2);
        // An RSA key never verifies an HMAC or EC token.
        assert_eq!(set.matching(None, Algorithm::HS256).count(), 0);
        assert_eq!(set.matching(None, Algorithm::ES256).count(), 0);
        assert_eq!(set.matching(Some("zzz"), Algorithm::RS256).count(), 0);
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        for body in [r#"{"keys": []}"#, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#, "[]", "not json"] {
            assert!(parse_key_set(body.as_bytes()).is_err(), "{body}");
        }
    }

    /// A key set at port 9 on loopback, where nothing listens (a connection is refused at once): TTL 60 s,
    /// refetched at most every 10 s, 1 s per fetch.
    fn unreachable() -> Jwks {
        let (ttl, min_refresh, timeout) =
            (Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(1));
        Jwks::new("http://127.0.0.1:9/jwks", ttl, min_refresh, timeout).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_set_is_unavailable_and_fetches_are_spaced() {
        let jwks = unreachable();
        assert_eq!(jwks.key_set(Some("k"), Algorithm::RS256).await.err(), Some(Unavailable));
        let first = jwks.last_attempt.lock().await.unwrap();
        // Within min_refresh, but late enough that a second fetch would record another time.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(jwks.key_set(Some("k"), Algorithm::RS256).await.err(), Some(Unavailable));
        assert_eq!(jwks.last_attempt.lock().await.unwrap(), first, "no second fetch within min_refresh");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(jwks.key_set(Some("k"), Algorithm::RS256).await.is_err());
        assert!(jwks.last_attempt.lock().await.unwrap() > first, "fetched again after min_refresh");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_set_serves_through_its_grace_period_then_stops() {
        let jwks = unreachable();
        let keys = parse_key_set(json!({ "keys": [rsa("a", None)] }).to_string().as_bytes()).unwrap();
        jwks.current.store(Some(Arc::new(KeySet { keys, fetched: Instant::now() })));
        assert!(jwks.key_set(Some("a"), Algorithm::RS256).await.is_ok());
        // Stale: the refresh fails, the old set still serves (grace) …
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(jwks.key_set(Some("a"), Algorithm::RS256).await.is_ok());
        // … until twice the TTL: then nothing is admitted.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(jwks.key_set(Some("a"), Algorithm::RS256).await.err(), Some(Unavailable));
    }
}
