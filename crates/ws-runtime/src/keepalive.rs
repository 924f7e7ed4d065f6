//! The session's keepalive decisions as plain logic, time passed in (as in
//! ws-ratelimit): when to ping a silent client, when to give up on it, and
//! when to look next. The session does the I/O (the ping, the close) and
//! reads the clocks; nothing here reads one, so the tests build instants as
//! `base + Duration` and check exact results.
//!
//! # Decisions
//!
//! - **Silence, not round trips.** Any frame read counts as a sign of life
//!   (the read times come from the socket adapter: no clock is read per
//!   message). A client silent for one interval is pinged; one still silent
//!   one interval after the ping is gone (closed with 1001, `keepalive
//!   timeout`). A client that keeps talking is never pinged.
//! - **One look per interval at most.** While the client talks, the next
//!   look is one interval after the last read, so a busy connection's timer
//!   fires once per interval, never per message.
//! - **The interval is passed in** rather than kept: this state lives in
//!   every connection's session, and two instants are all it needs.
//! - **Zero means off**: no look is ever due.

use std::time::{Duration, Instant};

/// The keepalive state of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Keepalive {
    /// When the keepalive next looks at the connection (`None`: off).
    ping_at: Option<Instant>,
    /// When the last ping went out, if nothing was read since.
    ping_sent: Option<Instant>,
}

/// What the keepalive wants done after a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing (the client talked lately, or the look was not due).
    Wait,
    /// Send a ping, then call [`Keepalive::pinged`].
    Ping,
    /// The client did not answer the last ping within an interval: close.
    TimedOut,
}

impl Keepalive {
    /// Off: no look is due (until [`new`](Self::new) replaces it).
    pub(crate) const OFF: Self = Self {
        ping_at: None,
        ping_sent: None,
    };

    /// Keepalive every `interval` (zero: off), starting at `now`.
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            ping_at: (!interval.is_zero()).then(|| now + interval),
            ping_sent: None,
        }
    }

    /// When the next look is due (`None`: never).
    pub(crate) fn due(&self) -> Option<Instant> {
        self.ping_at
    }

    /// Looks at the connection at `now`, the client last heard from at
    /// `last_seen`, with the `interval` it was made with.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        last_seen: Instant,
        interval: Duration,
    ) -> Verdict {
        if self.ping_at.is_none_or(|at| at > now) {
            return Verdict::Wait;
        }
        let silent = now.saturating_duration_since(last_seen) >= interval;
        let pinged = self.ping_sent.is_some_and(|sent| last_seen < sent);
        if pinged && silent {
            // Nothing read since the last ping either: the peer is gone.
            return Verdict::TimedOut;
        }
        if silent {
            self.ping_sent = Some(now);
            return Verdict::Ping;
        }
        self.ping_sent = None;
        self.ping_at = Some(last_seen + interval);
        Verdict::Wait
    }

    /// The ping asked for went out at `now`: the next look is one interval
    /// later.
    pub(crate) fn pinged(&mut self, now: Instant, interval: Duration) {
        self.ping_at = Some(now + interval);
    }
}

/// The earlier of two due times, either of which may be absent: the one
/// instant the session's timer waits for.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const I: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn zero_is_off() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(Duration::ZERO, t0);
        assert_eq!(k.due(), None);
        assert_eq!(k.check(t0 + I * 100, t0, Duration::ZERO), Verdict::Wait);
    }

    #[test]
    fn a_talking_client_is_never_pinged_and_looked_at_once_per_interval() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(I, t0);
        assert_eq!(k.due(), Some(t0 + I));
        // Read 4 s before the look: the next look is an interval after it.
        assert_eq!(k.check(t0 + I, t0 + ms(6_000), I), Verdict::Wait);
        assert_eq!(k.due(), Some(t0 + ms(16_000)));
        // Not due yet: nothing changes.
        assert_eq!(k.check(t0 + ms(15_000), t0 + ms(6_000), I), Verdict::Wait);
        assert_eq!(k.due(), Some(t0 + ms(16_000)));
    }

    #[test]
    fn silent_for_an_interval_is_pinged_then_closed_an_interval_later() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(I, t0);
        assert_eq!(k.check(t0 + I, t0, I), Verdict::Ping);
        k.pinged(t0 + I + ms(1), I);
        assert_eq!(k.due(), Some(t0 + I * 2 + ms(1)));
        assert_eq!(k.check(t0 + I * 2 + ms(1), t0, I), Verdict::TimedOut);
    }

    #[test]
    fn an_answered_ping_is_forgotten() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(I, t0);
        assert_eq!(k.check(t0 + I, t0, I), Verdict::Ping);
        k.pinged(t0 + I, I);
        // The pong (any frame) came 50 ms after the ping.
        let pong = t0 + I + ms(50);
        assert_eq!(k.check(t0 + I * 2, pong, I), Verdict::Wait);
        assert_eq!(k.due(), Some(pong + I));
        // Silent again from the pong on: pinged again, not closed.
        assert_eq!(k.check(pong + I, pong, I), Verdict::Ping);
    }

    #[test]
    fn earliest_of_two() {
        let t0 = Instant::now();
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t0), None), Some(t0));
        assert_eq!(earliest(None, Some(t0)), Some(t0));
        assert_eq!(earliest(Some(t0 + I), Some(t0)), Some(t0));
    }

    /// Drives the keepalive as the session does — a look at each due time,
    /// the ping sent at once — against a client that reads at `reads`
    /// (milliseconds, sorted); returns when it timed out, if it did within
    /// `horizon` ms.
    fn run(interval_ms: u64, reads: &[u64], horizon: u64) -> Option<u64> {
        let t0 = Instant::now();
        let interval = ms(interval_ms);
        let mut k = Keepalive::new(interval, t0);
        let mut looks = 0;
        while let Some(due) = k.due() {
            let now = due.duration_since(t0).as_millis() as u64;
            if now > horizon {
                return None;
            }
            looks += 1;
            assert!(looks < 10_000, "looks without end");
            let last = reads
                .iter()
                .copied()
                .filter(|&r| r <= now)
                .max()
                .unwrap_or(0);
            match k.check(due, t0 + ms(last), interval) {
                Verdict::Wait => assert!(k.due() > Some(due), "the next look is later"),
                Verdict::Ping => k.pinged(due, interval),
                Verdict::TimedOut => return Some(now),
            }
        }
        None
    }

    proptest! {
        /// A client never silent for a whole interval is never closed.
        #[test]
        fn talking_clients_stay(interval in 10u64..1_000, gaps in prop::collection::vec(1u64..1_000, 0..50)) {
            let gaps: Vec<u64> = gaps.into_iter().map(|g| g.min(interval - 1)).collect();
            let reads: Vec<u64> = gaps.iter().scan(0, |t, g| { *t += g; Some(*t) }).collect();
            let horizon = reads.last().copied().unwrap_or(0);
            prop_assert_eq!(run(interval, &reads, horizon), None);
        }

        /// A client that falls silent is closed, after at least two
        /// intervals of silence (one to the ping, one for the answer) and
        /// within three.
        #[test]
        fn silent_clients_go(interval in 10u64..1_000, gaps in prop::collection::vec(1u64..3_000, 0..20)) {
            let reads: Vec<u64> = gaps.iter().scan(0, |t, g| { *t += g; Some(*t) }).collect();
            let last = reads.last().copied().unwrap_or(0);
            let closed = run(interval, &reads, last + 4 * interval);
            let Some(at) = closed else {
                return Err(TestCaseError::fail("a silent client was never closed"));
            };
            // Closed only for a silence of two intervals at least...
            let heard = reads.iter().copied().filter(|&r| r <= at).max().unwrap_or(0);
            prop_assert!(at - heard >= 2 * interval, "closed at {} after a read at {}", at, heard);
            // ...and, after the last read, within three.
            if at >= last {
                prop_assert!(at - last <= 3 * interval, "closed at {} after the last read at {}", at, last);
            }
        }
    }
}
