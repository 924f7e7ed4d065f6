//! The optional per-address message rate
//! (`max_messages_per_address_per_second`), shared by all connections from one
//! address group.
//!
//! The key is the grouped address ([`AddressKey`]), so a host cannot spread a
//! flood over many connections or many addresses of its /64. The map is only
//! touched when a connection opens; each connection then holds its group's
//! budget (one atomic word) and checks it lock-free per message, so no global
//! lock sits on the message path.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::address::{AddressGrouping, AddressKey};
use crate::clock::{Clock, Since};
use crate::gcra::{Gcra, NANOS_PER_SEC};
use crate::sweep::Sweeper;

/// Hands out per-address message budgets; shared by every connection.
///
/// Cloning is cheap and clones share the budgets. An address group's budget is
/// dropped once no connection holds it and it has fully recovered (by an
/// amortised sweep when connections open), so memory stays bounded.
///
/// ```
/// use std::net::IpAddr;
/// use std::time::Instant;
/// use ws_ratelimit::{AddressGrouping, AddressMessageLimiter};
///
/// let limiter = AddressMessageLimiter::new(2, AddressGrouping::default());
/// let t0 = Instant::now();
/// // Two connections from the same /64 share one budget of 2 per second.
/// let mut a = limiter.rate_for("2001:db8::1".parse::<IpAddr>()?, t0);
/// let mut b = limiter.rate_for("2001:db8::2".parse::<IpAddr>()?, t0);
/// assert!(a.check(t0).is_ok());
/// assert!(b.check(t0).is_ok());
/// assert!(a.check(t0).is_err());
/// assert!(b.check(t0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AddressMessageLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    gcra: Gcra,
    grouping: AddressGrouping,
    state: Mutex<State>,
}

struct State {
    clock: Clock,
    budgets: HashMap<AddressKey, Arc<Budget>>,
    sweeper: Sweeper,
}

/// One address group's GCRA state.
#[derive(Debug)]
struct Budget {
    tat: AtomicU64,
}

impl AddressMessageLimiter {
    /// `per_second` messages per second per address group, in bursts of the
    /// same number; 0 means unlimited (nothing is tracked).
    pub fn new(per_second: u32, grouping: AddressGrouping) -> Self {
        let gcra = Gcra::per_second(per_second);
        Self {
            shared: Arc::new(Shared {
                gcra,
                grouping,
                state: Mutex::new(State {
                    clock: Clock::default(),
                    budgets: HashMap::new(),
                    sweeper: Sweeper::new(gcra.recovery().max(NANOS_PER_SEC)),
                }),
            }),
        }
    }

    /// The budget of `addr`'s group, for a connection opening at `now`. The
    /// connection keeps it and calls [`AddressMessageRate::check`] per message.
    pub fn rate_for(&self, addr: IpAddr, now: Instant) -> AddressMessageRate {
        let shared = &self.shared;
        let address = shared.grouping.key(addr);
        if shared.gcra.is_unlimited() {
            return AddressMessageRate {
                address,
                gcra: shared.gcra,
                since: Since::new(now),
                budget: None,
            };
        }
        let mut guard = shared.lock();
        let state = &mut *guard;
        let t = state.clock.observe(now);
        let base = state.clock.base().unwrap_or(now);
        // Only the map holds a budget no connection uses; nobody can take it
        // meanwhile, since budgets are handed out under this lock.
        state.sweeper.maybe_sweep(&mut state.budgets, t, |b| {
            Arc::strong_count(b) > 1 || b.tat.load(Ordering::Relaxed) > t
        });
        let budget = state.budgets.entry(address).or_insert_with(|| {
            Arc::new(Budget {
                tat: AtomicU64::new(0),
            })
        });
        AddressMessageRate {
            address,
            gcra: shared.gcra,
            since: Since::new(base),
            budget: Some(Arc::clone(budget)),
        }
    }

    /// Address groups whose budget is currently held in memory.
    pub fn tracked_addresses(&self) -> usize {
        self.shared.lock().budgets.len()
    }
}

impl fmt::Debug for AddressMessageLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressMessageLimiter")
            .field("gcra", &self.shared.gcra)
            .field("grouping", &self.shared.grouping)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Locks the state; poisoning is ignored (no panic leaves it half-updated).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's handle on its address group's message budget.
///
/// `check` takes no lock: one atomic compare-and-swap, retried only when
/// another connection of the same group raced it.
#[derive(Clone, Debug)]
pub struct AddressMessageRate {
    address: AddressKey,
    gcra: Gcra,
    since: Since,
    budget: Option<Arc<Budget>>,
}

impl AddressMessageRate {
    /// The grouped address whose budget this is.
    pub fn address(&self) -> AddressKey {
        self.address
    }

    /// Admits a message arriving at `now`, or returns how long until one from
    /// this address group would be admitted. A refused message uses no budget.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let now = self.since.nanos(now);
        // Relaxed is enough: the word is the only state, nothing else is published.
        let mut tat = budget.tat.load(Ordering::Relaxed);
        loop {
            let new = self.gcra.check(tat, now).map_err(Duration::from_nanos)?;
            match budget
                .tat
                .compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_budget_per_group() {
        let l = AddressMessageLimiter::new(3, AddressGrouping::default());
        let t0 = Instant::now();
        let mut a = l.rate_for(ip("2001:db8::1"), t0);
        let mut b = l.rate_for(ip("2001:db8::2"), t0 + ms(5));
        let mut other = l.rate_for(ip("2001:db8:0:1::1"), t0);
        assert_eq!(a.address(), b.address());
        assert_eq!(a.address().to_string(), "2001:db8::/64");
        a.check(t0).unwrap();
        b.check(t0).unwrap();
        a.check(t0).unwrap();
        assert_eq!(b.check(t0), Err(Duration::from_nanos(333_333_334)));
        assert!(other.check(t0).is_ok());
        assert!(a.check(t0 + Duration::from_nanos(333_333_334)).is_ok());
        assert_eq!(l.tracked_addresses(), 2);
    }

    #[test]
    fn mapped_ipv4_shares_with_ipv4() {
        let l = AddressMessageLimiter::new(1, AddressGrouping::default());
        let t0 = Instant::now();
        let mut a = l.rate_for(ip("::ffff:10.0.0.1"), t0);
        let mut b = l.rate_for(ip("10.0.0.1"), t0);
        a.check(t0).unwrap();
        assert_eq!(b.check(t0), Err(Duration::from_secs(1)));
    }

    #[test]
    fn zero_is_unlimited_and_untracked() {
        let l = AddressMessageLimiter::new(0, AddressGrouping::default());
        let t0 = Instant::now();
        let mut a = l.rate_for(ip("10.0.0.1"), t0);
        for _ in 0..10_000 {
            a.check(t0).unwrap();
        }
        assert_eq!(l.tracked_addresses(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let l = AddressMessageLimiter::new(10, AddressGrouping::default());
        let t0 = Instant::now();
        let mut max_tracked = 0;
        for i in 0..100_000u32 {
            let now = t0 + ms(u64::from(i));
            let mut rate = l.rate_for(IpAddr::V4(i.into()), now);
            rate.check(now).unwrap();
            drop(rate);
            max_tracked = max_tracked.max(l.tracked_addresses());
        }
        assert!(max_tracked <= 2_100, "tracked {max_tracked}");
        let later = t0 + ms(100_000 + 1_100);
        let mut held = l.rate_for(ip("10.0.0.1"), later);
        assert_eq!(l.tracked_addresses(), 1);
        // A budget in use is never swept, even when recovered.
        let much_later = later + Duration::from_secs(10);
        let _other = l.rate_for(ip("10.0.0.2"), much_later);
        assert_eq!(l.tracked_addresses(), 2);
        assert!(held.check(much_later).is_ok());
    }

    #[test]
    fn threads_share_one_budget_exactly() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<AddressMessageLimiter>();
        assert_send_sync::<AddressMessageRate>();

        let l = AddressMessageLimiter::new(1000, AddressGrouping::default());
        let t0 = Instant::now();
        let admitted: usize = (0..8)
            .map(|_| {
                let mut rate = l.rate_for(ip("10.0.0.1"), t0);
                std::thread::spawn(move || (0..500).filter(|_| rate.check(t0).is_ok()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 1000);
    }
}
