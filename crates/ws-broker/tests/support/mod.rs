//! Test helpers: the broker's configuration for the tests, connections and
//! what they receive. The real `redis-server` is `ws_test_support::Redis`.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use ws_broker::BrokerConfig;
use ws_core::__runtime::{self, Outbox, Outgoing, RegisteredOutbox};
use ws_core::{Connection, HandshakeInfo, Hub, Message, UserAspect};

/// The prefix the tests use.
pub const PREFIX: &str = "ws-test";

/// A configuration with short timers: heartbeat 100 ms, expiry 400 ms.
pub fn config(url: &str) -> BrokerConfig {
    BrokerConfig {
        prefix: PREFIX.to_owned(),
        presence_heartbeat: Duration::from_millis(100),
        presence_expiry: Duration::from_millis(400),
        reconnect_max_delay: Duration::from_millis(400),
        command_timeout: Duration::from_secs(2),
        ..BrokerConfig::with_url(url)
    }
}

/// A connection on `hub`, logged in as `user` (id, name) when given.
pub fn open(hub: &Hub, user: Option<(&str, &str)>, cap: usize) -> (Connection, RegisteredOutbox) {
    let mut info = HandshakeInfo::new(([127, 0, 0, 1], 40000).into(), "/chat");
    if let Some((id, name)) = user {
        info.aspects
            .insert("frontend.user", UserAspect::user(id).with_username(name));
    }
    __runtime::open_registered(info, cap, hub.clone())
}

/// Waits for `n` messages, for at most `limit`.
pub async fn recv_n(outbox: &mut Outbox, n: usize, limit: Duration) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let want = n - buf.len();
        match tokio::time::timeout_at(deadline, outbox.recv(&mut buf, want)).await {
            Ok(Some(Outgoing::Messages(_))) => {}
            Ok(other) => panic!("unexpected {other:?} after {} messages", buf.len()),
            Err(_) => panic!(
                "only {} of {n} messages within {limit:?}: {buf:?}",
                buf.len()
            ),
        }
    }
    buf
}

/// Asserts nothing more arrives within `wait`.
pub async fn assert_quiet(outbox: &mut Outbox, wait: Duration) {
    let mut buf = Vec::new();
    if let Ok(got) = tokio::time::timeout(wait, outbox.recv(&mut buf, 16)).await {
        panic!("expected nothing more, got {got:?}: {buf:?}");
    }
}

/// Polls `check` every 10 ms until it holds; returns how long that took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
