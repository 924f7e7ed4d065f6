//! Connection admission: `max_connections`, `max_connections_per_address` and
//! `max_connections_per_address_per_second`, checked before the upgrade.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::address::{
    AddressGrouping, AddressKey, DEFAULT_IPV4_PREFIX_LEN, DEFAULT_IPV6_PREFIX_LEN,
};
use crate::clock::Clock;
use crate::error::LimitError;
use crate::gcra::{Gcra, NANOS_PER_SEC};
use crate::refusal::{Limit, Refusal};
use crate::sweep::Sweeper;

/// How long a refusal by a count limit tells the client to wait.
const COUNT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Connection limits. A limit of 0 means unlimited.
///
/// The default is the original's: 1000 connections, 10 per address, 10 new
/// ones per address per second, addresses grouped by /32 (IPv4) and /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections, all addresses together (0: unlimited).
    pub max_connections: u32,
    /// Open connections per address group (0: unlimited).
    pub max_connections_per_address: u32,
    /// New connections per address group per second, in bursts of the same
    /// number (0: unlimited).
    pub max_connections_per_address_per_second: u32,
    /// Prefix length IPv4 addresses are grouped by (0..=32).
    pub ipv4_prefix_len: u8,
    /// Prefix length IPv6 addresses are grouped by (0..=128).
    pub ipv6_prefix_len: u8,
}

impl ConnectionLimits {
    /// No limit at all, default address grouping.
    pub const fn unlimited() -> Self {
        Self {
            max_connections: 0,
            max_connections_per_address: 0,
            max_connections_per_address_per_second: 0,
            ipv4_prefix_len: DEFAULT_IPV4_PREFIX_LEN,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }

    /// The validated address grouping of these limits.
    pub fn grouping(&self) -> Result<AddressGrouping, LimitError> {
        AddressGrouping::new(self.ipv4_prefix_len, self.ipv6_prefix_len)
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_connections_per_address: 10,
            max_connections_per_address_per_second: 10,
            ipv4_prefix_len: DEFAULT_IPV4_PREFIX_LEN,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}

/// Admits or refuses connections; shared by every handshake.
///
/// Cloning is cheap and every clone shares the same counts. Admission returns
/// a [`ConnectionPermit`] that holds the connection's place until dropped.
///
/// ```
/// use std::net::IpAddr;
/// use std::time::{Duration, Instant};
/// use ws_ratelimit::{ConnectionLimiter, ConnectionLimits, Limit};
///
/// let limiter = ConnectionLimiter::new(ConnectionLimits {
///     max_connections_per_address: 2,
///     ..ConnectionLimits::default()
/// })?;
/// let addr: IpAddr = "192.0.2.1".parse()?;
/// let t0 = Instant::now();
///
/// let a = limiter.try_acquire(addr, t0)?;
/// let _b = limiter.try_acquire(addr, t0)?;
/// let refusal = limiter.try_acquire(addr, t0).unwrap_err();
/// assert_eq!(refusal.limit, Limit::PerAddress);
/// assert_eq!(refusal.retry_after_secs(), 1);
///
/// drop(a); // the connection closed
/// assert!(limiter.try_acquire(addr, t0 + Duration::from_millis(1)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    limits: ConnectionLimits,
    grouping: AddressGrouping,
    rate: Gcra,
    /// False when both per-address limits are off: no per-address state at all.
    track_addresses: bool,
    state: Mutex<State>,
}

struct State {
    clock: Clock,
    active: usize,
    addresses: HashMap<AddressKey, AddressState>,
    sweeper: Sweeper,
}

/// An address group's entry; dropped once `open == 0` and `tat <= now`, when
/// it is indistinguishable from a fresh one.
#[derive(Clone, Copy, Debug, Default)]
struct AddressState {
    open: usize,
    /// GCRA theoretical arrival time for new connections.
    tat: u64,
}

impl AddressState {
    fn removable(&self, now: u64) -> bool {
        self.open == 0 && self.tat <= now
    }
}

impl ConnectionLimiter {
    /// A limiter enforcing `limits`; fails if a prefix length is out of range.
    pub fn new(limits: ConnectionLimits) -> Result<Self, LimitError> {
        let grouping = limits.grouping()?;
        let rate = Gcra::per_second(limits.max_connections_per_address_per_second);
        let track_addresses = limits.max_connections_per_address != 0 || !rate.is_unlimited();
        let state = State {
            clock: Clock::default(),
            active: 0,
            addresses: HashMap::new(),
            sweeper: Sweeper::new(rate.recovery().max(NANOS_PER_SEC)),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                limits,
                grouping,
                rate,
                track_addresses,
                state: Mutex::new(state),
            }),
        })
    }

    /// Admits a connection from `addr` at `now`, or says which limit refuses it.
    ///
    /// Limits are checked in the order `max_connections`,
    /// `max_connections_per_address`, `max_connections_per_address_per_second`;
    /// the first that refuses is reported. A refused attempt changes nothing:
    /// it uses no per-second budget.
    pub fn try_acquire(&self, addr: IpAddr, now: Instant) -> Result<ConnectionPermit, Refusal> {
        let shared = &self.shared;
        let limits = &shared.limits;
        let address = shared.grouping.key(addr);
        let refuse = |limit, retry_after, max| Refusal {
            limit,
            retry_after,
            address,
            max,
        };

        let mut guard = shared.lock();
        let state = &mut *guard;
        let now = state.clock.observe(now);

        let max = limits.max_connections;
        if max != 0 && state.active >= max as usize {
            return Err(refuse(Limit::MaxConnections, COUNT_RETRY_AFTER, max));
        }

        if shared.track_addresses {
            state
                .sweeper
                .maybe_sweep(&mut state.addresses, now, |a| !a.removable(now));
            let current = state.addresses.get(&address).copied().unwrap_or_default();

            let max = limits.max_connections_per_address;
            if max != 0 && current.open >= max as usize {
                return Err(refuse(Limit::PerAddress, COUNT_RETRY_AFTER, max));
            }
            let tat = shared.rate.check(current.tat, now).map_err(|wait| {
                refuse(
                    Limit::PerAddressPerSecond,
                    Duration::from_nanos(wait),
                    limits.max_connections_per_address_per_second,
                )
            })?;
            state.addresses.insert(
                address,
                AddressState {
                    open: current.open + 1,
                    tat,
                },
            );
        }

        state.active += 1;
        Ok(ConnectionPermit {
            shared: Arc::clone(shared),
            address,
            tracked: shared.track_addresses,
        })
    }

    /// Connections currently admitted (permits alive).
    pub fn active(&self) -> usize {
        self.shared.lock().active
    }

    /// Address groups currently held in memory.
    ///
    /// An entry is kept while its group has an open connection or its
    /// per-second budget has not fully recovered (about one second after its
    /// last connection); others are dropped when their last permit is, or by
    /// the next amortised sweep. So this stays near the number of groups with
    /// open connections plus those that connected in the last second or so,
    /// however many addresses have come and gone.
    pub fn tracked_addresses(&self) -> usize {
        self.shared.lock().addresses.len()
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.shared.limits
    }

    /// How this limiter groups addresses.
    pub fn grouping(&self) -> AddressGrouping {
        self.shared.grouping
    }
}

impl fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Locks the state. Poisoning is ignored: no code panics while holding the
    /// lock with the state half-updated, so the state is always consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, address: AddressKey, tracked: bool) {
        let mut guard = self.lock();
        let state = &mut *guard;
        debug_assert!(state.active > 0, "released more permits than admitted");
        state.active = state.active.saturating_sub(1);
        if tracked {
            let now = state.clock.latest();
            if let MapEntry::Occupied(mut entry) = state.addresses.entry(address) {
                let a = entry.get_mut();
                debug_assert!(a.open > 0, "entry without open connections");
                a.open = a.open.saturating_sub(1);
                if a.removable(now) {
                    entry.remove();
                }
            } else {
                debug_assert!(false, "permit for an untracked address");
            }
        }
    }
}

/// An admitted connection's place in the limits; dropping it releases the
/// place (total and per-address counts), exactly once.
///
/// Keep it for the whole life of the connection, whatever path closes it.
/// It is `Send` and `'static`, so it can move into the connection's task.
#[must_use = "dropping the permit releases the connection's place at once"]
pub struct ConnectionPermit {
    shared: Arc<Shared>,
    address: AddressKey,
    tracked: bool,
}

impl ConnectionPermit {
    /// The grouped address the connection counts against.
    pub fn address(&self) -> AddressKey {
        self.address
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.shared.release(self.address, self.tracked);
    }
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limiter(total: u32, per_address: u32, per_second: u32) -> ConnectionLimiter {
        ConnectionLimiter::new(ConnectionLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            max_connections_per_address_per_second: per_second,
            ..ConnectionLimits::default()
        })
        .unwrap()
    }

    #[test]
    fn defaults_are_the_originals() {
        let d = ConnectionLimits::default();
        assert_eq!(d.max_connections, 1000);
        assert_eq!(d.max_connections_per_address, 10);
        assert_eq!(d.max_connections_per_address_per_second, 10);
        assert_eq!((d.ipv4_prefix_len, d.ipv6_prefix_len), (32, 64));
        let l = ConnectionLimiter::new(d).unwrap();
        assert_eq!(*l.limits(), d);
        assert_eq!(l.grouping(), AddressGrouping::default());
    }

    #[test]
    fn prefix_lengths_are_validated() {
        let bad4 = ConnectionLimits {
            ipv4_prefix_len: 33,
            ..ConnectionLimits::default()
        };
        assert_eq!(
            ConnectionLimiter::new(bad4).unwrap_err(),
            LimitError::Ipv4PrefixLen(33)
        );
        let bad6 = ConnectionLimits {
            ipv6_prefix_len: 129,
            ..ConnectionLimits::default()
        };
        assert_eq!(
            ConnectionLimiter::new(bad6).unwrap_err(),
            LimitError::Ipv6PrefixLen(129)
        );
        let edge = ConnectionLimits {
            ipv4_prefix_len: 0,
            ipv6_prefix_len: 128,
            ..ConnectionLimits::default()
        };
        assert!(ConnectionLimiter::new(edge).is_ok());
    }

    #[test]
    fn max_connections_refuses_at_exactly_the_limit() {
        let l = limiter(3, 0, 0);
        let t = Instant::now();
        let mut held: Vec<_> = (0..3).map(|i| l.try_acquire(v4(i), t).unwrap()).collect();
        let r = l.try_acquire(v4(99), t).unwrap_err();
        assert_eq!(r.limit, Limit::MaxConnections);
        assert_eq!(r.retry_after, Duration::from_secs(1));
        assert_eq!(r.max, 3);
        assert_eq!(r.to_string(), "too many connections (max_connections = 3)");
        assert_eq!(l.active(), 3);

        held.pop();
        assert_eq!(l.active(), 2);
        held.push(l.try_acquire(v4(99), t).unwrap());
        assert!(l.try_acquire(v4(100), t).is_err());
    }

    #[test]
    fn per_address_refuses_at_exactly_the_limit() {
        let l = limiter(0, 2, 0);
        let t = Instant::now();
        let a = ip("10.0.0.1");
        let p1 = l.try_acquire(a, t).unwrap();
        let _p2 = l.try_acquire(a, t).unwrap();
        let r = l.try_acquire(a, t).unwrap_err();
        assert_eq!(r.limit, Limit::PerAddress);
        assert_eq!(r.retry_after, Duration::from_secs(1));
        assert_eq!(r.address.to_string(), "10.0.0.1/32");
        assert_eq!(
            r.to_string(),
            "too many connections from 10.0.0.1/32 (max_connections_per_address = 2)"
        );
        // Another address is unaffected.
        let _other = l.try_acquire(ip("10.0.0.2"), t).unwrap();
        drop(p1);
        let _p3 = l.try_acquire(a, t).unwrap();
        assert!(l.try_acquire(a, t).is_err());
    }

    #[test]
    fn per_second_refuses_at_exactly_the_limit_with_exact_retry_after() {
        let l = limiter(0, 0, 10);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            drop(l.try_acquire(a, t0).unwrap());
        }
        let r = l.try_acquire(a, t0).unwrap_err();
        assert_eq!(r.limit, Limit::PerAddressPerSecond);
        assert_eq!(r.retry_after, ms(100));
        assert_eq!(r.retry_after_secs(), 1);
        assert_eq!(r.max, 10);

        // Refused attempts use no budget.
        for _ in 0..100 {
            assert_eq!(
                l.try_acquire(a, t0 + ms(50)).unwrap_err().retry_after,
                ms(50)
            );
        }
        assert_eq!(
            l.try_acquire(a, t0 + ms(100) - Duration::from_nanos(1))
                .unwrap_err()
                .retry_after,
            Duration::from_nanos(1)
        );
        drop(l.try_acquire(a, t0 + ms(100)).unwrap());
        assert_eq!(
            l.try_acquire(a, t0 + ms(100)).unwrap_err().retry_after,
            ms(100)
        );

        // Other addresses have their own budget.
        assert!(l.try_acquire(ip("10.0.0.2"), t0 + ms(100)).is_ok());

        // A full second later the whole burst is back.
        let t1 = t0 + ms(1100);
        for _ in 0..10 {
            drop(l.try_acquire(a, t1).unwrap());
        }
        assert!(l.try_acquire(a, t1).is_err());
    }

    #[test]
    fn per_second_with_a_rate_that_does_not_divide_a_second() {
        let l = limiter(0, 0, 3);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            drop(l.try_acquire(a, t0).unwrap());
        }
        let r = l.try_acquire(a, t0).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_nanos(333_333_334));
        assert!(l.try_acquire(a, t0 + r.retry_after).is_ok());
    }

    #[test]
    fn count_limits_are_checked_first_and_refusals_use_no_rate_budget() {
        let l = limiter(2, 1, 1);
        let t = Instant::now();
        let a = ip("10.0.0.1");
        let p = l.try_acquire(a, t).unwrap();
        // Per-address and per-second both refuse; per-address is reported.
        assert_eq!(l.try_acquire(a, t).unwrap_err().limit, Limit::PerAddress);
        let _q = l.try_acquire(ip("10.0.0.2"), t).unwrap();
        // Total first.
        assert_eq!(
            l.try_acquire(a, t).unwrap_err().limit,
            Limit::MaxConnections
        );
        drop(p);
        let r = l.try_acquire(a, t + ms(400)).unwrap_err();
        assert_eq!(r.limit, Limit::PerAddressPerSecond);
        assert_eq!(r.retry_after, ms(600));
        assert!(l.try_acquire(a, t + ms(1000)).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = ConnectionLimiter::new(ConnectionLimits::unlimited()).unwrap();
        let t = Instant::now();
        let held: Vec<_> = (0..10_000)
            .map(|_| l.try_acquire(ip("10.0.0.1"), t).unwrap())
            .collect();
        assert_eq!(l.active(), 10_000);
        assert_eq!(l.tracked_addresses(), 0, "nothing per address to track");
        drop(held);
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn permits_release_exactly_once() {
        let l = limiter(0, 5, 0);
        let t = Instant::now();
        let a = ip("10.0.0.1");
        let p1 = l.try_acquire(a, t).unwrap();
        let p2 = l.try_acquire(a, t).unwrap();
        assert_eq!(p1.address().to_string(), "10.0.0.1/32");
        assert_eq!((l.active(), l.tracked_addresses()), (2, 1));
        drop(p1);
        assert_eq!((l.active(), l.tracked_addresses()), (1, 1));
        // Dropped on another thread.
        std::thread::spawn(move || drop(p2)).join().unwrap();
        assert_eq!((l.active(), l.tracked_addresses()), (0, 0));
        // Budget is whole again.
        let held: Vec<_> = (0..5).map(|_| l.try_acquire(a, t).unwrap()).collect();
        assert!(l.try_acquire(a, t).is_err());
        drop(held);
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn clones_share_counts() {
        let l = limiter(1, 0, 0);
        let t = Instant::now();
        let _p = l.clone().try_acquire(ip("10.0.0.1"), t).unwrap();
        assert_eq!(l.active(), 1);
        assert!(l.try_acquire(ip("10.0.0.2"), t).is_err());
    }

    #[test]
    fn ipv6_is_grouped_by_slash_64() {
        let l = limiter(0, 1, 0);
        let t = Instant::now();
        let _p = l.try_acquire(ip("2001:db8::1"), t).unwrap();
        let r = l.try_acquire(ip("2001:db8::2:3"), t).unwrap_err();
        assert_eq!(r.limit, Limit::PerAddress);
        assert_eq!(
            r.to_string(),
            "too many connections from 2001:db8::/64 (max_connections_per_address = 1)"
        );
        assert!(l.try_acquire(ip("2001:db8:0:1::1"), t).is_ok());
    }

    #[test]
    fn ipv6_prefix_is_configurable() {
        let l = ConnectionLimiter::new(ConnectionLimits {
            max_connections_per_address: 1,
            ipv6_prefix_len: 128,
            ipv4_prefix_len: 24,
            ..ConnectionLimits::unlimited()
        })
        .unwrap();
        let t = Instant::now();
        let _a = l.try_acquire(ip("2001:db8::1"), t).unwrap();
        let _b = l.try_acquire(ip("2001:db8::2"), t).unwrap();
        let _c = l.try_acquire(ip("192.0.2.1"), t).unwrap();
        assert!(l.try_acquire(ip("192.0.2.200"), t).is_err());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let l = limiter(0, 1, 0);
        let t = Instant::now();
        let p = l.try_acquire(ip("::ffff:10.0.0.1"), t).unwrap();
        assert_eq!(p.address().to_string(), "10.0.0.1/32");
        let r = l.try_acquire(ip("10.0.0.1"), t).unwrap_err();
        assert_eq!(r.address.to_string(), "10.0.0.1/32");
        drop(p);
        let _p = l.try_acquire(ip("10.0.0.1"), t).unwrap();
        assert!(l.try_acquire(ip("::ffff:10.0.0.1"), t).is_err());
    }

    #[test]
    fn time_going_back_is_taken_as_the_latest_time() {
        let l = limiter(0, 0, 1);
        let t0 = Instant::now() + Duration::from_secs(10);
        let a = ip("10.0.0.1");
        drop(l.try_acquire(a, t0).unwrap());
        let r = l.try_acquire(a, t0 - Duration::from_secs(5)).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(1));
        assert!(l.try_acquire(a, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn memory_is_bounded_with_many_addresses_over_time() {
        // 100,000 distinct addresses, one new one per millisecond, each
        // connecting once and closing at once.
        let l = ConnectionLimiter::new(ConnectionLimits::default()).unwrap();
        let t0 = Instant::now();
        let mut max_tracked = 0;
        for i in 0..100_000u32 {
            let p = l.try_acquire(v4(i), t0 + ms(u64::from(i))).unwrap();
            drop(p);
            max_tracked = max_tracked.max(l.tracked_addresses());
        }
        // Only the last second or so (~1000 addresses) has to be remembered;
        // sweeping on growth or once per second at most doubles that.
        assert!(max_tracked <= 2_100, "tracked {max_tracked}");
        let later = t0 + ms(100_000 + 1_100);
        drop(l.try_acquire(v4(u32::MAX), later).unwrap());
        assert!(l.tracked_addresses() <= 1, "{}", l.tracked_addresses());
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn memory_is_bounded_with_many_addresses_at_once() {
        let l = ConnectionLimiter::new(ConnectionLimits::default()).unwrap();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            drop(l.try_acquire(v4(i), t0).unwrap());
        }
        // All of them used budget within this second: that must be remembered.
        assert_eq!(l.tracked_addresses(), 100_000);
        drop(l.try_acquire(v4(u32::MAX), t0 + ms(1_100)).unwrap());
        assert!(l.tracked_addresses() <= 1, "{}", l.tracked_addresses());
    }

    #[test]
    fn entries_go_as_soon_as_they_are_removable() {
        let l = limiter(0, 10, 10);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        let p = l.try_acquire(a, t0).unwrap();
        // Closed after its budget recovered (as far as the limiter knows).
        drop(l.try_acquire(ip("10.0.0.2"), t0 + ms(200)).unwrap());
        assert_eq!(l.tracked_addresses(), 2);
        drop(p);
        assert_eq!(l.tracked_addresses(), 1, "10.0.0.1 forgotten at once");
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ConnectionLimiter>();
        assert_send_sync::<ConnectionPermit>();
        assert_send_sync::<Refusal>();

        let l = limiter(50, 5, 0);
        let t = Instant::now();
        let threads: Vec<_> = (0..8u32)
            .map(|n| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..2_000u32 {
                        if let Ok(p) = l.try_acquire(v4(i % 16 + n), t) {
                            held.push(p);
                        }
                        if i % 3 == 0 {
                            held.pop();
                        }
                        assert!(l.active() <= 50);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(l.active(), 0);
        assert_eq!(l.tracked_addresses(), 0);
    }
}
