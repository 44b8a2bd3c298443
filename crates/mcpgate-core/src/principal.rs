//! Who is calling: the identity authentication establishes at the HTTP edge, for authorization, rate limits and
//! audit to use.

use std::{net::IpAddr, sync::Arc};

/// Who is calling, and from where. Built once per API key at startup; a request gets a copy with its client
/// address (the fields are shared, so the copy costs one allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name: an API key's name, or `anonymous`.
    pub name: Arc<str>,
    /// Rate-limit tier, when one applies (anonymous callers have none).
    pub tier: Option<Arc<str>>,
    /// Tools the principal may call, as globs (`*`, `search_*`).
    pub tools: Arc<[String]>,
    /// Whether no credential was presented.
    pub anonymous: bool,
    /// The client's address: the socket peer, or what a trusted proxy forwarded. `None` off HTTP (stdio).
    pub client_ip: Option<IpAddr>,
}

impl Principal {
    /// The principal of unauthenticated requests: every tool, no tier, no address.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            tier: None,
            tools: Arc::new(["*".into()]),
            anonymous: true,
            client_ip: None,
        }
    }

    /// An authenticated principal (an API key's holder), without an address yet.
    pub fn named(name: &str, tier: &str, tools: &[String]) -> Self {
        Self {
            name: name.into(),
            tier: Some(tier.into()),
            tools: tools.into(),
            anonymous: false,
            client_ip: None,
        }
    }

    /// This principal, calling from `ip`.
    pub fn with_client_ip(&self, ip: Option<IpAddr>) -> Self {
        Self { client_ip: ip, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_copy_shares_the_identity_and_adds_the_address() {
        let key = Principal::named("ci", "paid", &["search_*".into()]);
        let ip: IpAddr = [192, 0, 2, 7].into();
        let request = key.with_client_ip(Some(ip));
        assert!(Arc::ptr_eq(&request.name, &key.name) && Arc::ptr_eq(&request.tools, &key.tools));
        assert_eq!(
            (request.client_ip, request.anonymous, request.tier.as_deref()),
            (Some(ip), false, Some("paid"))
        );
        let anonymous = Principal::anonymous();
        assert!(anonymous.anonymous && anonymous.tier.is_none() && anonymous.tools[..] == ["*".to_owned()]);
    }
}
