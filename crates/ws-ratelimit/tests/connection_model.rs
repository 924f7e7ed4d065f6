//! Model test: `ConnectionLimiter` against a naive reference model, on random
//! sequences of acquires (from a small set of addresses, time moving forward)
//! and drops.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ws_ratelimit::{ConnectionLimiter, ConnectionLimits, ConnectionPermit, Limit};

/// Client addresses and the group each belongs to under the default /32, /64.
const ADDRESSES: [(&str, usize); 6] = [
    ("10.0.0.1", 0),
    ("::ffff:10.0.0.1", 0),
    ("10.0.0.2", 1),
    ("2001:db8::1", 2),
    ("2001:db8::ffff:2", 2),
    ("2001:db8:0:1::1", 3),
];
const GROUPS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Advance {
    Millis(u64),
    Nanos(u64),
    /// Whole emission intervals of the per-second limit, to hit its edges.
    Intervals(u32),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Acquire { addr: usize, advance: Advance },
    Drop { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let advance = prop_oneof![
        3 => (0u64..400).prop_map(Advance::Millis),
        1 => (0u64..2_000).prop_map(Advance::Nanos),
        1 => (0u32..3).prop_map(Advance::Intervals),
    ];
    prop_oneof![
        3 => (0..ADDRESSES.len(), advance).prop_map(|(addr, advance)| Op::Acquire { addr, advance }),
        1 => any::<usize>().prop_map(|index| Op::Drop { index }),
    ]
}

/// The reference: a list of held permits, and per group a list of admission
/// times plus a GCRA state kept as an `Instant`.
struct Model {
    limits: ConnectionLimits,
    interval: Duration,
    tolerance: Duration,
    held: Vec<usize>,
    tat: [Option<Instant>; GROUPS],
    admitted: [VecDeque<Instant>; GROUPS],
}

impl Model {
    fn new(limits: ConnectionLimits) -> Self {
        let rate = limits.max_connections_per_address_per_second;
        let interval = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(rate)))
        };
        Self {
            limits,
            interval,
            tolerance: interval * rate.saturating_sub(1),
            held: Vec::new(),
            tat: [None; GROUPS],
            admitted: Default::default(),
        }
    }

    /// `Ok(())` if a connection from `group` at `now` is under every limit,
    /// else the first limit over and its retry-after.
    fn decide(&self, group: usize, now: Instant) -> Result<(), (Limit, Duration)> {
        let l = &self.limits;
        if l.max_connections != 0 && self.held.len() >= l.max_connections as usize {
            return Err((Limit::MaxConnections, Duration::from_secs(1)));
        }
        let open = self.held.iter().filter(|&&g| g == group).count();
        if l.max_connections_per_address != 0 && open >= l.max_connections_per_address as usize {
            return Err((Limit::PerAddress, Duration::from_secs(1)));
        }
        if l.max_connections_per_address_per_second != 0
            && let Some(tat) = self.tat[group]
            && tat > now + self.tolerance
        {
            return Err((Limit::PerAddressPerSecond, tat - self.tolerance - now));
        }
        Ok(())
    }

    fn admit(&mut self, group: usize, now: Instant) {
        self.held.push(group);
        let tat = self.tat[group].map_or(now, |tat| tat.max(now));
        self.tat[group] = Some(tat + self.interval);
        let window = &mut self.admitted[group];
        window.push_back(now);
        while window
            .front()
            .is_some_and(|&t| t + Duration::from_secs(1) < now)
        {
            window.pop_front();
        }
    }

    /// Admissions of `group` in the closed second ending at the last one.
    fn admitted_last_second(&self, group: usize) -> usize {
        self.admitted[group].len()
    }
}

fn limits() -> impl Strategy<Value = ConnectionLimits> {
    (0u32..6, 0u32..4, 0u32..6).prop_map(|(total, per_address, per_second)| ConnectionLimits {
        max_connections: total,
        max_connections_per_address: per_address,
        max_connections_per_address_per_second: per_second,
        ..ConnectionLimits::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn limiter_matches_the_model(limits in limits(), ops in prop::collection::vec(op(), 0..200)) {
        let limiter = ConnectionLimiter::new(limits).unwrap();
        let mut model = Model::new(limits);
        let mut permits: Vec<ConnectionPermit> = Vec::new();
        let mut now = Instant::now();

        for op in ops {
            match op {
                Op::Acquire { addr, advance } => {
                    now += match advance {
                        Advance::Millis(n) => Duration::from_millis(n),
                        Advance::Nanos(n) => Duration::from_nanos(n),
                        Advance::Intervals(n) => model.interval * n,
                    };
                    let (text, group) = ADDRESSES[addr];
                    let ip: IpAddr = text.parse().unwrap();
                    let expected = model.decide(group, now);
                    match (limiter.try_acquire(ip, now), expected) {
                        (Ok(permit), Ok(())) => {
                            model.admit(group, now);
                            permits.push(permit);
                        }
                        (Err(refusal), Err((limit, retry_after))) => {
                            prop_assert_eq!(refusal.limit, limit);
                            prop_assert_eq!(refusal.retry_after, retry_after);
                        }
                        (got, want) => {
                            prop_assert!(false, "at {:?}: got {:?}, model says {:?}", addr, got, want);
                        }
                    }
                    // Invariants that do not depend on the model's GCRA.
                    if limits.max_connections != 0 {
                        prop_assert!(limiter.active() <= limits.max_connections as usize);
                    }
                    let per_second = limits.max_connections_per_address_per_second as usize;
                    if per_second != 0 {
                        prop_assert!(model.admitted_last_second(group) <= 2 * per_second);
                    }
                }
                Op::Drop { index } => {
                    if !permits.is_empty() {
                        let i = index % permits.len();
                        drop(permits.swap_remove(i));
                        model.held.swap_remove(i);
                    }
                }
            }
            prop_assert_eq!(limiter.active(), permits.len());
            prop_assert!(limiter.tracked_addresses() <= GROUPS);
        }

        // Every close path releases exactly what was taken.
        drop(permits);
        prop_assert_eq!(limiter.active(), 0);
        let later = now + Duration::from_secs(2);
        drop(limiter.try_acquire(ADDRESSES[0].0.parse().unwrap(), later).unwrap());
        prop_assert!(limiter.tracked_addresses() <= 1);
        prop_assert_eq!(limiter.active(), 0);
    }
}
