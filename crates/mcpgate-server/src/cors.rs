//! CORS for browser clients: an origin `server.allowed_origins` accepts gets its preflight (`OPTIONS`) answered
//! before any key is asked for (a preflight never carries credentials), and its responses readable, with the MCP
//! headers a client needs exposed. Other origins get no CORS headers, so the browser keeps their pages out; the
//! `Origin` check of `/mcp` itself stays where it is (DNS-rebinding protection).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Response headers a browser client must be able to read.
const EXPOSED: [&str; 8] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "www-authenticate",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
    "content-encoding",
];

/// How long a browser may keep a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// The CORS layer for `allowed_origins` (entries `scheme://host`, `scheme://host:port`, `scheme://host:*`, or
/// `*` for any origin).
pub(crate) fn layer(allowed_origins: &[String]) -> CorsLayer {
    let origins = Origins::new(allowed_origins);
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|origin| origins.allows(origin))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        // Whatever the preflight asks for: `Mcp-Param-*` names are per tool.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(MAX_AGE)
}

/// Allowed origins, parsed once.
#[derive(Debug, Clone)]
struct Origins {
    any: bool,
    entries: Vec<Origin>,
}

/// One origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    /// `None`: no port (the scheme's default); `Some("*")`: any port.
    port: Option<String>,
}

impl Origin {
    /// `scheme://host[:port]`, hosts lower-cased, IPv6 in brackets; `None` for anything else.
    fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (address, after) = v6.split_once(']')?;
                (format!("[{address}]"), after)
            }
            None => {
                let end = rest.find(':').unwrap_or(rest.len());
                (rest[..end].to_owned(), &rest[end..])
            }
        };
        let port = match port {
            "" => None,
            port => Some(port.strip_prefix(':')?.to_owned()),
        };
        let valid_port = port.as_deref().is_none_or(|p| p == "*" || p.parse::<u16>().is_ok());
        (!scheme.is_empty() && !host.is_empty() && !host.contains('/') && valid_port).then(|| Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        self.scheme == origin.scheme
            && self.host == origin.host
            && (self.port.as_deref() == Some("*") || self.port == origin.port)
    }
}

impl Origins {
    fn new(allowed: &[String]) -> Self {
        Self {
            any: allowed.iter().any(|o| o == "*"),
            entries: allowed.iter().filter_map(|o| Origin::parse(o)).collect(),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.any
            || Origin::parse(origin).is_some_and(|origin| {
                origin.port.as_deref() != Some("*") && self.entries.iter().any(|e| e.matches(&origin))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Origins {
        Origins::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ports_hosts_and_schemes_are_matched_as_configured() {
        let allowed = origins(&["http://localhost:*", "https://app.example.com", "http://[::1]:3000"]);
        for ok in [
            "http://localhost:5173",
            "http://localhost",
            "HTTP://LocalHost:1",
            "https://app.example.com",
            "http://[::1]:3000",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "https://localhost:5173",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://evil.example.com",
            "http://[::1]:3001",
            "http://localhost:*",
            "null",
            "localhost",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
        assert!(origins(&["*"]).allows("https://anything.example"));
        assert!(!origins(&[]).allows("http://localhost"));
    }
}
