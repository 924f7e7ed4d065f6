//! Amortised sweeping of per-address maps, so memory stays bounded however
//! many addresses appear.
//!
//! A map is swept (every removable entry dropped in one pass) when it has grown
//! to twice its size after the last sweep (and at least [`MIN_SWEEP_LEN`]), or
//! when one recovery period has passed since the last sweep. The first trigger
//! pays for each pass with the insertions that doubled the map (O(1) amortised
//! per insertion); the second makes stale entries go away once time moves on,
//! even when no new address arrives, at most one pass per period.

use std::collections::HashMap;
use std::hash::Hash;

/// Below this size a map is not swept for growth (time still sweeps it).
pub(crate) const MIN_SWEEP_LEN: usize = 64;

/// When to sweep a map.
#[derive(Debug)]
pub(crate) struct Sweeper {
    len_after_last: usize,
    last_at: u64,
    period: u64,
}

impl Sweeper {
    /// A sweeper that sweeps at least once per `period` nanoseconds of activity.
    pub(crate) fn new(period: u64) -> Self {
        Self {
            len_after_last: 0,
            last_at: 0,
            period,
        }
    }

    /// Sweeps `map` if due at `now`, keeping the entries for which `keep` holds.
    pub(crate) fn maybe_sweep<K: Eq + Hash, V>(
        &mut self,
        map: &mut HashMap<K, V>,
        now: u64,
        mut keep: impl FnMut(&V) -> bool,
    ) {
        let len = map.len();
        let grown = len >= MIN_SWEEP_LEN.max(self.len_after_last.saturating_mul(2));
        let stale = len > 0 && now >= self.last_at.saturating_add(self.period);
        if grown || stale {
            map.retain(|_, v| keep(v));
            self.len_after_last = map.len();
            self.last_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_on_growth_and_on_time() {
        let mut s = Sweeper::new(1000);
        let mut map: HashMap<u32, bool> = HashMap::new();
        // Keep odd keys only.
        for k in 0..(MIN_SWEEP_LEN as u32 - 1) {
            map.insert(k, k % 2 == 1);
            s.maybe_sweep(&mut map, 0, |v| *v);
        }
        assert_eq!(map.len(), MIN_SWEEP_LEN - 1, "not yet grown");
        map.insert(1000, false);
        s.maybe_sweep(&mut map, 0, |v| *v);
        assert_eq!(map.len(), MIN_SWEEP_LEN / 2 - 1, "swept on growth");

        map.insert(2000, false);
        s.maybe_sweep(&mut map, 999, |v| *v);
        assert!(map.contains_key(&2000), "neither grown nor a period later");
        s.maybe_sweep(&mut map, 1000, |v| *v);
        assert!(!map.contains_key(&2000), "swept a period later");
    }
}
