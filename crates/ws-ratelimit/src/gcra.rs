//! The generic cell rate algorithm (GCRA), on nanoseconds.
//!
//! GCRA is a leaky bucket kept as one number, the *theoretical arrival time*
//! (TAT): the instant at which the bucket would be empty again. With emission
//! interval `T = 1 s / rate` and burst tolerance `τ = (burst - 1) · T`, an event
//! at `t` conforms when `TAT - τ <= t`; if it does, `TAT := max(TAT, t) + T`;
//! if it does not, nothing changes (a refusal consumes no budget) and the caller
//! may retry after `TAT - τ - t`.
//!
//! Unlike a fixed window it has no boundary at which twice the rate gets
//! through, and unlike a timestamp log it needs eight bytes per key.
//!
//! `T` is rounded **up** to whole nanoseconds, so the limiter never admits more
//! than the configured rate on average, and traffic spaced at `1 s / rate` or
//! more (in exact arithmetic) is never refused.

/// Nanoseconds in one second.
pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Rate parameters; the state (the TAT) is kept by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// `T`, nanoseconds between conforming events at the sustained rate.
    interval: u64,
    /// `τ`, how far ahead of real time the TAT may run.
    tolerance: u64,
}

impl Gcra {
    /// No limit: `T = 0` and an infinite tolerance, so [`Gcra::check`] always
    /// admits and the TAT never runs ahead of time (no branch needed).
    pub(crate) const UNLIMITED: Self = Self {
        interval: 0,
        tolerance: u64::MAX,
    };

    /// `per_second` events per second with bursts of `burst` (a burst of 0 is
    /// taken as 1). A rate of 0 means unlimited.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        if per_second == 0 {
            return Self::UNLIMITED;
        }
        let interval = NANOS_PER_SEC.div_ceil(u64::from(per_second));
        let tolerance = u64::from(burst.max(1) - 1).saturating_mul(interval);
        Self {
            interval,
            tolerance,
        }
    }

    /// `per_second` events per second with bursts of the same size.
    pub(crate) fn per_second(per_second: u32) -> Self {
        Self::new(per_second, per_second)
    }

    /// Whether this admits everything.
    pub(crate) fn is_unlimited(self) -> bool {
        self.interval == 0
    }

    /// Checks an event at `now` against the state `tat`.
    ///
    /// `Ok(new_tat)` if it conforms; `Err(wait)` with the nanoseconds until the
    /// next conforming instant if not (the state must then stay as it was).
    #[inline]
    pub(crate) fn check(self, tat: u64, now: u64) -> Result<u64, u64> {
        let allowed_at = tat.saturating_sub(self.tolerance);
        if now < allowed_at {
            Err(allowed_at - now)
        } else {
            Ok(tat.max(now).saturating_add(self.interval))
        }
    }

    /// The longest a state can stay unrecovered (`tat > now`) after its last
    /// admission: `T + τ`, about one second when `burst = rate`; 0 if unlimited.
    pub(crate) fn recovery(self) -> u64 {
        if self.is_unlimited() {
            0
        } else {
            self.interval.saturating_add(self.tolerance)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let g = Gcra::per_second(4);
        assert_eq!(g.interval, 250_000_000);
        assert_eq!(g.tolerance, 750_000_000);
        let mut tat = 0;
        for _ in 0..4 {
            tat = g.check(tat, 0).unwrap();
        }
        assert_eq!(g.check(tat, 0), Err(250_000_000));
        assert_eq!(g.check(tat, 100_000_000), Err(150_000_000));
        let tat = g.check(tat, 250_000_000).unwrap();
        assert_eq!(g.check(tat, 250_000_000), Err(250_000_000));
    }

    #[test]
    fn interval_rounds_up() {
        let g = Gcra::per_second(3);
        assert_eq!(g.interval, 333_333_334);
        assert_eq!(g.recovery(), 1_000_000_002);
        // More than a billion per second: one per nanosecond.
        assert_eq!(Gcra::per_second(u32::MAX).interval, 1);
    }

    #[test]
    fn zero_is_unlimited() {
        let g = Gcra::per_second(0);
        assert!(g.is_unlimited());
        assert_eq!(g.recovery(), 0);
        let mut tat = 0;
        for _ in 0..1000 {
            tat = g.check(tat, 7).unwrap();
        }
        assert_eq!(tat, 7);
    }

    #[test]
    fn burst_of_one_is_strict_spacing() {
        let g = Gcra::new(10, 1);
        let tat = g.check(0, 0).unwrap();
        assert_eq!(g.check(tat, 99_999_999), Err(1));
        assert!(g.check(tat, 100_000_000).is_ok());
        assert_eq!(Gcra::new(10, 0), g);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let g = Gcra::per_second(1);
        assert_eq!(g.check(0, u64::MAX), Ok(u64::MAX));
        assert_eq!(g.check(u64::MAX, 0), Err(u64::MAX));
    }
}
