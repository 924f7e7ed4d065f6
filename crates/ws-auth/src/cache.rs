//! A small time-bounded, size-bounded cache of answers, keyed by credential.
//!
//! Every entry lives for the same TTL, so insertion order is expiry order:
//! a FIFO queue beside the map evicts the oldest entries first, in O(1)
//! amortised per insert, without scanning.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers of one source, by credential.
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, (Instant, V)>,
    order: VecDeque<(String, Instant)>,
}

impl<V: Clone> TtlCache<V> {
    /// A cache that keeps at most `capacity` entries for `ttl` each; a zero
    /// TTL or capacity caches nothing.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The live answer for `key`, if any.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (at, value) = inner.map.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// Remembers `value` for `key` from `now` on.
    pub(crate) fn insert(&self, key: &str, value: V, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { map, order } = &mut *inner;
        // Drop expired entries and, when full, the oldest live ones. A queue
        // entry whose time differs from the map's was superseded.
        while let Some((k, at)) = order.front() {
            let expired = now.saturating_duration_since(*at) >= self.ttl;
            if !expired && map.len() < self.capacity {
                break;
            }
            if map.get(k).is_some_and(|(t, _)| t == at) {
                map.remove(k);
            }
            order.pop_front();
        }
        map.insert(key.to_owned(), (now, value));
        order.push_back((key.to_owned(), now));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let c = TtlCache::new(Duration::from_secs(5), 3);
        c.insert("a", 1, t0);
        assert_eq!(c.get("a", t0 + 4 * s), Some(1));
        assert_eq!(c.get("a", t0 + 5 * s), None);
        for (i, k) in ["b", "c", "d", "e"].into_iter().enumerate() {
            c.insert(k, i, t0 + s);
        }
        assert!(c.len() <= 3);
        assert_eq!(c.get("b", t0 + s), None, "oldest evicted");
        assert_eq!(c.get("e", t0 + s), Some(3));
        // Re-inserting a key refreshes it; its stale queue entry is skipped.
        c.insert("c", 9, t0 + 3 * s);
        c.insert("f", 4, t0 + 6 * s + s / 2);
        assert_eq!(c.get("c", t0 + 6 * s + s / 2), Some(9));
        let off = TtlCache::new(Duration::ZERO, 3);
        off.insert("a", 1, t0);
        assert_eq!(off.get("a", t0), None);
    }
}
