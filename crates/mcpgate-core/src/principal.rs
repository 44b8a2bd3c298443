//! Who is calling: the identity authentication establishes at the HTTP edge, for authorization, rate limits and
//! audit to use.

use std::{
    net::IpAddr,
    sync::{Arc, LazyLock},
};

/// Who is calling, and from where. Built once per API key at startup; a request gets a copy with its client
/// address (the fields are shared, so the copy costs one allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name: an API key's name, a token's subject, or `anonymous`. What logs and the audit log show.
    pub name: Arc<str>,
    /// What rate limits and the cache tell principals apart by: the name with the kind of credential that
    /// proved it (`key:ci-bot`, `jwt:alice`, `anonymous`), so a token whose subject is an API key's name shares
    /// nothing with that key.
    pub id: Arc<str>,
    /// Rate-limit tier, when one applies (anonymous callers have none).
    pub tier: Option<Arc<str>>,
    /// Tools the principal may see and call, as globs (`*`, `search_*`).
    pub tools: Arc<[String]>,
    /// Resources the principal may see, read and subscribe to, as URI globs (`*`, `docs://*`).
    pub resources: Arc<[String]>,
    /// Prompts the principal may see and get, as name globs.
    pub prompts: Arc<[String]>,
    /// Whether no credential was presented.
    pub anonymous: bool,
    /// The client's address: the socket peer, or what a trusted proxy forwarded. `None` off HTTP (stdio).
    pub client_ip: Option<IpAddr>,
    /// How the principal meets the tools: directly, or through code mode.
    pub mode: Mode,
}

/// The tools code mode offers, under their public names. In code mode they are the principal's whatever its
/// globs say (the globs bound what the programs reach); in direct mode they do not exist.
pub const CODE_TOOLS: [&str; 3] = ["search_tools", "describe_tools", "execute"];

/// How a principal meets the tools its globs name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every tool is listed and called directly (`tools/list`, `tools/call`).
    #[default]
    Direct,
    /// Code mode: the principal is offered the code-mode tools (`search_tools`, `describe_tools`, `execute`) and,
    /// directly, only the tools these globs name (none in `code` mode; hybrid's `direct_tools`). Its programs
    /// reach every tool its own globs name.
    Code {
        /// Tools still listed and called directly, as globs.
        direct: Arc<[String]>,
    },
}

impl Principal {
    /// The principal of unauthenticated requests: every tool, no tier, no address. A copy of the one made once:
    /// its fields are shared, so this allocates nothing.
    pub fn anonymous() -> Self {
        ANONYMOUS.as_ref().clone()
    }

    /// The one anonymous principal every [`Principal::anonymous`] copies, shared: what a context without an
    /// identity of its own points at (a clone is a reference count, not the nine allocations of a new one).
    pub fn shared_anonymous() -> Arc<Self> {
        ANONYMOUS.clone()
    }

    /// An authenticated principal (an API key's holder) that may use `tools` and every resource and prompt,
    /// without an address yet.
    pub fn named(name: &str, tier: &str, tools: &[String]) -> Self {
        Self {
            name: name.into(),
            id: format!("key:{name}").into(),
            tier: Some(tier.into()),
            tools: tools.into(),
            resources: everything(),
            prompts: everything(),
            anonymous: false,
            client_ip: None,
            mode: Mode::Direct,
        }
    }

    /// The principal a verified bearer token names by its `subject`, that may use `tools` and every resource and
    /// prompt, without an address yet.
    pub fn token(subject: Arc<str>, tier: Arc<str>, tools: Arc<[String]>) -> Self {
        Self {
            id: format!("jwt:{subject}").into(),
            name: subject,
            tier: Some(tier),
            tools,
            resources: everything(),
            prompts: everything(),
            anonymous: false,
            client_ip: None,
            mode: Mode::Direct,
        }
    }

    /// This principal, limited to the resources and prompts these globs name.
    pub fn with_grants(self, resources: Arc<[String]>, prompts: Arc<[String]>) -> Self {
        Self { resources, prompts, ..self }
    }

    /// This principal, meeting the tools as `mode` says.
    pub fn with_mode(self, mode: Mode) -> Self {
        Self { mode, ..self }
    }

    /// This principal, calling from `ip`.
    pub fn with_client_ip(&self, ip: Option<IpAddr>) -> Self {
        Self { client_ip: ip, ..self.clone() }
    }
}

/// The anonymous principal, made on first use.
static ANONYMOUS: LazyLock<Arc<Principal>> = LazyLock::new(|| {
    Arc::new(Principal {
        name: "anonymous".into(),
        id: "anonymous".into(),
        tier: None,
        tools: everything(),
        resources: everything(),
        prompts: everything(),
        anonymous: true,
        client_ip: None,
        mode: Mode::Direct,
    })
});

/// The globs that name everything: `["*"]`.
fn everything() -> Arc<[String]> {
    Arc::new(["*".into()])
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

    #[test]
    fn a_token_named_like_an_api_key_is_another_principal() {
        let key = Principal::named("ops", "paid", &["*".into()]);
        let token = Principal::token("ops".into(), "paid".into(), Arc::new(["*".into()]));
        assert_eq!((&*key.name, &*token.name), ("ops", "ops"), "both show as ops");
        assert_eq!((&*key.id, &*token.id), ("key:ops", "jwt:ops"));
        assert_ne!(key, token);
        assert_eq!(&*Principal::anonymous().id, "anonymous");
        assert!(Arc::ptr_eq(&Principal::anonymous().tools, &Principal::shared_anonymous().tools));
    }
}
