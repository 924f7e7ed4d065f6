//! The descriptor limit at start: every connection is one descriptor, and
//! the soft `RLIMIT_NOFILE` most systems start processes with (1,024) is
//! about the default `max_connections`. As nginx (`worker_rlimit_nofile`)
//! and Go's runtime do, `ws-cli start` raises the soft limit to the hard
//! one, which needs no privilege, and warns when even that leaves no room
//! for `max_connections`.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for what is not a client connection: listeners, the
/// admin API, Redis and session-store connections, log and state files.
pub(crate) const RESERVED: u64 = 64;

/// Highest soft limit asked for when the hard one is unlimited.
const CEILING: u64 = 1 << 20;

/// Raises the soft descriptor limit to the hard one and logs what it did;
/// warns when the limit leaves fewer than `max_connections` (0: unlimited)
/// plus [`RESERVED`] descriptors. Returns the soft limit in force.
pub(crate) fn raise(max_connections: u32) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let mut limit = soft;
    let wanted = hard.min(CEILING);
    if soft < wanted {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = wanted,
                    "raised the descriptor limit (RLIMIT_NOFILE) to the hard limit"
                );
                limit = wanted;
            }
            Err(e) => tracing::warn!(
                error = %e,
                soft,
                hard,
                "cannot raise the descriptor limit (RLIMIT_NOFILE)"
            ),
        }
    }
    let needed = u64::from(max_connections) + RESERVED;
    if max_connections > 0 && limit < needed {
        tracing::warn!(
            limit,
            max_connections,
            "the descriptor limit (RLIMIT_NOFILE) leaves no room for `server.max_connections` \
             (+{RESERVED} for listeners and stores): connections beyond about {} wait in the \
             listen backlog; raise the hard limit (systemd: LimitNOFILE=, shell: ulimit -Hn) \
             or lower max_connections",
            limit.saturating_sub(RESERVED)
        );
    }
    Some(limit)
}
