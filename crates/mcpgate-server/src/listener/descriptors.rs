//! The process's open-file limit against `server.max_connections`. At start the soft limit is raised to the hard
//! one, as Go's runtime and nginx's `worker_rlimit_nofile` do, so that a default soft limit of 1024 (systemd's)
//! does not cap a gateway configured for 10,000 connections; when even the hard limit leaves too little, a warning
//! says so — otherwise accepts would fail with EMFILE before the connection cap bites.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for what is not a client connection: upstream pipes and sockets, child processes' pipes, the
/// audit log, databases, the metrics port's connections.
const RESERVED: u64 = 256;

/// Raise the soft open-file limit to the hard one; warn when the limit in force is below `max_connections` +
/// [`RESERVED`]. The limit in force afterwards, when it could be read.
pub(crate) fn raise_open_file_limit(max_connections: usize) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let mut limit = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!(from = soft, to = hard, "raised the open-file limit to its hard limit");
                limit = hard;
            }
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        }
    }
    let wanted = (max_connections as u64).saturating_add(RESERVED);
    if limit < wanted {
        tracing::warn!(
            open_file_limit = limit,
            max_connections,
            "the open-file limit is below server.max_connections + {RESERVED} (upstreams, logs): past it accepts \
             fail (EMFILE) before the connection cap bites; raise it (ulimit -n, systemd LimitNOFILE=) or lower \
             server.max_connections"
        );
    }
    Some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Lowered first (allowed without privileges), so that there is something to raise.
        setrlimit(Resource::RLIMIT_NOFILE, 512.min(hard), hard).unwrap();
        assert_eq!(raise_open_file_limit(100), Some(hard));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }
}
