//! The per-connection message rate (`max_messages_per_second`).

use std::time::{Duration, Instant};

use crate::clock::Since;
use crate::gcra::Gcra;

/// Message limits. A limit of 0 means unlimited.
///
/// The default is the original's 100 messages per second per connection, and
/// no per-address message limit (the original had none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Messages per second on one connection, in bursts of the same number
    /// (0: unlimited). Over it, the server closes the connection with 1008.
    pub max_messages_per_second: u32,
    /// Messages per second from one address group, all its connections
    /// together, in bursts of the same number (0: unlimited). See
    /// [`AddressMessageLimiter`](crate::AddressMessageLimiter).
    pub max_messages_per_address_per_second: u32,
}

impl MessageLimits {
    /// The per-connection rate limiter for a connection opened at `base`.
    pub fn connection_rate(&self, base: Instant) -> MessageRate {
        MessageRate::new(self.max_messages_per_second, base)
    }
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_messages_per_second: 100,
            max_messages_per_address_per_second: 0,
        }
    }
}

/// One connection's message rate: owned by the connection's task, no locks.
///
/// [`MessageRate::check`] is a handful of integer operations on nanoseconds
/// since `base` (GCRA: one stored number). It is `Clone` but deliberately not
/// `Copy`, so the state cannot be duplicated by accident and checked twice.
///
/// ```
/// use std::time::{Duration, Instant};
/// use ws_ratelimit::MessageRate;
///
/// let t0 = Instant::now();
/// let mut rate = MessageRate::new(100, t0);
/// for _ in 0..100 {
///     assert!(rate.check(t0).is_ok()); // a burst of 100
/// }
/// // The 101st must wait one emission interval: the server closes with 1008.
/// assert_eq!(rate.check(t0), Err(Duration::from_millis(10)));
/// assert!(rate.check(t0 + Duration::from_millis(10)).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct MessageRate {
    since: Since,
    gcra: Gcra,
    tat: u64,
}

impl MessageRate {
    /// `per_second` messages per second in bursts of `per_second`, with time
    /// counted from `base` (the connection's open). 0 means unlimited.
    pub fn new(per_second: u32, base: Instant) -> Self {
        Self::with_burst(per_second, per_second, base)
    }

    /// `per_second` messages per second in bursts of `burst` (0 is taken as 1).
    /// A rate of 0 means unlimited, whatever the burst.
    pub fn with_burst(per_second: u32, burst: u32, base: Instant) -> Self {
        Self {
            since: Since::new(base),
            gcra: Gcra::new(per_second, burst),
            tat: 0,
        }
    }

    /// Whether every message is admitted.
    pub fn is_unlimited(&self) -> bool {
        self.gcra.is_unlimited()
    }

    /// Admits a message arriving at `now`, or returns how long until one would
    /// be admitted. A refused message uses no budget.
    #[inline]
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        match self.gcra.check(self.tat, self.since.nanos(now)) {
            Ok(tat) => {
                self.tat = tat;
                Ok(())
            }
            Err(wait) => Err(Duration::from_nanos(wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_is_the_originals() {
        let d = MessageLimits::default();
        assert_eq!(d.max_messages_per_second, 100);
        assert_eq!(d.max_messages_per_address_per_second, 0);
        let t0 = Instant::now();
        let mut r = d.connection_rate(t0);
        for _ in 0..100 {
            r.check(t0).unwrap();
        }
        assert_eq!(r.check(t0), Err(ms(10)));
    }

    #[test]
    fn refuses_at_exactly_the_rate_and_refusals_are_free() {
        let t0 = Instant::now();
        let mut r = MessageRate::new(5, t0);
        for _ in 0..5 {
            r.check(t0 + ms(10)).unwrap();
        }
        assert_eq!(r.check(t0 + ms(10)), Err(ms(200)));
        for _ in 0..1000 {
            assert_eq!(r.check(t0 + ms(110)), Err(ms(100)));
        }
        r.check(t0 + ms(210)).unwrap();
        assert_eq!(r.check(t0 + ms(210)), Err(ms(200)));
        // A quiet second restores the whole burst.
        for _ in 0..5 {
            r.check(t0 + ms(1410)).unwrap();
        }
        assert!(r.check(t0 + ms(1410)).is_err());
    }

    #[test]
    fn zero_is_unlimited() {
        let t0 = Instant::now();
        let mut r = MessageRate::new(0, t0);
        assert!(r.is_unlimited());
        for _ in 0..100_000 {
            r.check(t0).unwrap();
        }
        assert!(MessageRate::with_burst(0, 5, t0).is_unlimited());
    }

    #[test]
    fn burst_is_configurable() {
        let t0 = Instant::now();
        let mut r = MessageRate::with_burst(10, 1, t0);
        assert!(!r.is_unlimited());
        r.check(t0).unwrap();
        assert_eq!(r.check(t0 + ms(40)), Err(ms(60)));
        r.check(t0 + ms(100)).unwrap();
    }

    #[test]
    fn instants_before_base_count_as_base() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut r = MessageRate::new(1, t0);
        r.check(t0 - Duration::from_secs(1)).unwrap();
        assert_eq!(r.check(t0), Err(Duration::from_secs(1)));
    }
}
