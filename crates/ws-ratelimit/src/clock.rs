//! Time as whole nanoseconds since a base [`Instant`]: the one representation the
//! rate arithmetic works in.
//!
//! Callers pass `Instant`s in; nothing here reads the system clock.

use std::time::Instant;

/// Nanoseconds from `base` to `now`.
///
/// An instant before `base` counts as 0; the result saturates at `u64::MAX`
/// (about 584 years), so no input can overflow the arithmetic built on it.
#[inline]
pub(crate) fn nanos_since(base: Instant, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(base);
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// [`nanos_since`] for one fixed base, remembering the last conversion:
/// callers that pass the same instant many times in a row (every message of
/// one socket read carries that read's time) convert it once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Since {
    base: Instant,
    last: Instant,
    last_nanos: u64,
}

impl Since {
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            base,
            last: base,
            last_nanos: 0,
        }
    }

    /// Nanoseconds from the base to `now`.
    #[inline]
    pub(crate) fn nanos(&mut self, now: Instant) -> u64 {
        if now != self.last {
            self.last = now;
            self.last_nanos = nanos_since(self.base, now);
        }
        self.last_nanos
    }
}

/// The clock of a shared limiter.
///
/// The base is the first instant the limiter is shown, and time never goes
/// back: an instant older than one already seen (two threads racing for the
/// lock with slightly different `now`s) counts as the latest one seen.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    base: Option<Instant>,
    latest: u64,
}

impl Clock {
    /// Records `now` and returns the limiter's current time in nanoseconds.
    pub(crate) fn observe(&mut self, now: Instant) -> u64 {
        let base = *self.base.get_or_insert(now);
        self.latest = self.latest.max(nanos_since(base, now));
        self.latest
    }

    /// The latest time observed, in nanoseconds since the base (0 before any).
    pub(crate) fn latest(&self) -> u64 {
        self.latest
    }

    /// The base instant, once an instant has been observed.
    pub(crate) fn base(&self) -> Option<Instant> {
        self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_converts_each_instant_like_nanos_since() {
        let base = Instant::now();
        let mut since = Since::new(base);
        for ms in [0u64, 5, 5, 7, 3, 3, 1000] {
            let at = base + Duration::from_millis(ms);
            assert_eq!(since.nanos(at), nanos_since(base, at));
        }
    }

    #[test]
    fn nanos_since_saturates_below_base() {
        let base = Instant::now();
        let later = base + Duration::from_millis(1500);
        assert_eq!(nanos_since(base, later), 1_500_000_000);
        assert_eq!(nanos_since(later, base), 0);
    }

    #[test]
    fn clock_never_goes_back() {
        let base = Instant::now();
        let mut clock = Clock::default();
        assert_eq!(clock.latest(), 0);
        assert_eq!(clock.observe(base + Duration::from_secs(1)), 0);
        assert_eq!(clock.base(), Some(base + Duration::from_secs(1)));
        assert_eq!(clock.observe(base + Duration::from_secs(3)), 2_000_000_000);
        assert_eq!(clock.observe(base + Duration::from_secs(2)), 2_000_000_000);
        assert_eq!(clock.observe(base), 2_000_000_000);
        assert_eq!(clock.latest(), 2_000_000_000);
    }
}
