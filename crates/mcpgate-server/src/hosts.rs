//! The `Host` check against DNS rebinding (`server.allowed_hosts`), for the surfaces the gateway serves itself:
//! the fast path of `/mcp` and the REST facade. (rmcp checks `/mcp` requests it serves on its own.)

use http::HeaderMap;

/// The `Host` values `server.allowed_hosts` admits: a bare name (or IP) with any port, an entry with a port
/// only itself; `*` admits every host. Checked on every request, so the entries are read once, here, and a
/// request's `Host` is compared without copying it.
pub(crate) struct AllowedHosts {
    any: bool,
    hosts: Vec<Entry>,
}

/// One `allowed_hosts` entry, lower-cased.
struct Entry {
    text: String,
    /// Whether it names a port, and so matches only a `Host` with that port.
    has_port: bool,
}

impl AllowedHosts {
    pub(crate) fn new(allowed_hosts: &[String]) -> Self {
        let hosts: Vec<Entry> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .map(|text| Entry { has_port: has_port(&text), text })
            .collect();
        Self { any: hosts.iter().any(|h| h.text == "*"), hosts }
    }

    /// Whether the request's `Host` is admitted. `[v6]:port` and `[v6]` match the entry `v6`.
    pub(crate) fn admit(&self, headers: &HeaderMap) -> bool {
        if self.any {
            return true;
        }
        let Some(host) = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()) else { return false };
        let bare = match host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(address, _)| address),
            None => match host.rsplit_once(':') {
                Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            },
        };
        self.hosts
            .iter()
            .any(|h| h.text.eq_ignore_ascii_case(host) || (!h.has_port && h.text.eq_ignore_ascii_case(bare)))
    }
}

/// Whether an allowed-host entry names a port (`name:443`, `[::1]:443`), as opposed to a bare name or address
/// (`::1` has colons and no port).
fn has_port(entry: &str) -> bool {
    if entry.starts_with('[') {
        return entry.contains("]:");
    }
    matches!(entry.split_once(':'), Some((_, port)) if port.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admits(allowed: &[&str], host: &str) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|h| (*h).to_owned()).collect();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, host.parse().unwrap());
        AllowedHosts::new(&allowed).admit(&headers)
    }

    #[test]
    fn names_match_any_port_and_entries_with_a_port_only_themselves() {
        let allowed = ["localhost", "127.0.0.1", "::1", "api.example.com:443"];
        for host in ["localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1:8000", "[::1]:8000", "[::1]"] {
            assert!(admits(&allowed, host), "{host}");
        }
        for host in
            ["evil.example", "localhost.evil:80", "api.example.com", "api.example.com:444", "[::2]:80"]
        {
            assert!(!admits(&allowed, host), "{host}");
        }
        assert!(admits(&allowed, "api.example.com:443"));
        assert!(admits(&["*"], "anything:1"));
        assert!(!AllowedHosts::new(&["localhost".into()]).admit(&HeaderMap::new()));
    }
}
