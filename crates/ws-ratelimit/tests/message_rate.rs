//! Properties of `MessageRate`: never more than twice the rate in any second,
//! never a refusal for traffic spaced at the rate, exact retry-after.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ws_ratelimit::MessageRate;

/// Gaps between messages: bursts, bursty-ish traffic and long pauses.
fn gap() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => (0u64..5_000_000).prop_map(Duration::from_nanos),
        2 => (0u64..200).prop_map(Duration::from_millis),
        1 => (0u64..3_000).prop_map(Duration::from_millis),
    ]
}

proptest! {
    #[test]
    fn at_most_twice_the_rate_in_any_second(
        rate in 1u32..50,
        gaps in prop::collection::vec(gap(), 0..400),
    ) {
        let base = Instant::now();
        let mut limiter = MessageRate::new(rate, base);
        let mut now = base;
        let mut window: VecDeque<Instant> = VecDeque::new();
        for gap in gaps {
            now += gap;
            match limiter.check(now) {
                Ok(()) => {
                    window.push_back(now);
                    while window.front().is_some_and(|&t| t + Duration::from_secs(1) < now) {
                        window.pop_front();
                    }
                    prop_assert!(window.len() <= 2 * rate as usize, "{} in a second", window.len());
                }
                Err(wait) => {
                    prop_assert!(wait > Duration::ZERO);
                    // The wait is exact: one nanosecond less is still refused...
                    let mut early = limiter.clone();
                    prop_assert!(early.check(now + wait - Duration::from_nanos(1)).is_err());
                    // ...and after it a message is admitted.
                    let mut on_time = limiter.clone();
                    prop_assert!(on_time.check(now + wait).is_ok());
                }
            }
        }
    }

    #[test]
    fn steady_spacing_at_the_rate_is_never_refused(
        rate in 1u32..=100_000,
        extra in prop::collection::vec(prop_oneof![Just(0u64), 0u64..1_000_000], 1..500),
        burst_first in any::<bool>(),
    ) {
        let base = Instant::now();
        let mut limiter = MessageRate::new(rate, base);
        let mut now = base;
        if burst_first {
            // Use the whole burst, then wait one full second before the
            // steady traffic: the budget is back.
            for _ in 0..rate.min(1_000) {
                prop_assert!(limiter.check(now).is_ok());
            }
            now += Duration::from_secs(1);
        }
        // 1/rate in exact arithmetic, rounded up to a whole nanosecond.
        let spacing = Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(rate)));
        for e in extra {
            prop_assert!(limiter.check(now).is_ok(), "refused at {:?}", now - base);
            now += spacing + Duration::from_nanos(e);
        }
    }

    #[test]
    fn a_fresh_limiter_admits_exactly_one_burst(rate in 1u32..2_000) {
        let base = Instant::now();
        let now = base + Duration::from_millis(1);
        let mut limiter = MessageRate::new(rate, base);
        for _ in 0..rate {
            prop_assert!(limiter.check(now).is_ok());
        }
        let wait = limiter.check(now).unwrap_err();
        prop_assert_eq!(wait, Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(rate))));
    }
}
