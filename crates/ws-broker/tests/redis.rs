//! Two `RedisHub`s in one process act as two servers sharing a real
//! `redis-server` (started per test on a loopback port): delivery exactly
//! once everywhere, plain `PUBLISH` from any client, order over 10,000
//! messages, Redis restarts, crashed servers leaving presence, and clean
//! leaves and shutdowns.

mod support;

use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use support::{PREFIX, assert_quiet, config, eventually, open, recv_n};
use ws_broker::{BrokerConfig, BrokerError, ConnectionAddr, RedisHub};
use ws_core::budget::MemoryBudget;
use ws_core::hub::{HubBackend as _, Target};
use ws_core::{HubError, Message};
use ws_test_support::Redis;

const WAIT: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(300);

async fn two_servers(redis: &Redis) -> (RedisHub, RedisHub) {
    let a = RedisHub::connect(config(&redis.url())).await.unwrap();
    let b = RedisHub::connect(config(&redis.url())).await.unwrap();
    assert_ne!(a.server_id(), b.server_id());
    (a, b)
}

async fn members(hub: &RedisHub, channel: &str) -> Vec<String> {
    hub.hub()
        .presence(channel)
        .await
        .unwrap()
        .into_iter()
        .map(|m| format!("{} {}", m.connection, m.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_reaches_every_server_exactly_once() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (ha, hb) = (a.hub(), b.hub());
    let (a1, mut oa1) = open(&ha, Some(("7", "ann")), 64);
    let (b1, mut ob1) = open(&hb, Some(("7", "ann")), 64);
    let (b2, mut ob2) = open(&hb, None, 64);
    for c in [&a1, &b1, &b2] {
        c.join("room").unwrap();
    }

    // A channel, from A (text) and from B (binary).
    assert_eq!(ha.publish("room", "from a").unwrap(), 1);
    assert_eq!(
        hb.publish("room", Message::binary(vec![0u8, 159, 146, 150]))
            .unwrap(),
        2
    );
    let bin = Message::binary(vec![0u8, 159, 146, 150]);
    assert_eq!(
        recv_n(&mut oa1, 2, WAIT).await,
        vec![Message::from("from a"), bin.clone()]
    );
    for o in [&mut ob1, &mut ob2] {
        // B's own publication is local (at once), A's comes through Redis:
        // no order between two publishers.
        let got = recv_n(o, 2, WAIT).await;
        assert!(
            got.contains(&Message::from("from a")) && got.contains(&bin),
            "{got:?}"
        );
    }

    // A user, on both servers.
    assert_eq!(ha.send_to_user("7", "for ann").unwrap(), 1);
    assert_eq!(
        recv_n(&mut oa1, 1, WAIT).await,
        vec![Message::from("for ann")]
    );
    assert_eq!(
        recv_n(&mut ob1, 1, WAIT).await,
        vec![Message::from("for ann")]
    );

    // One connection on the other server, by address; one on this server.
    let addr: ConnectionAddr = b.addr_of(b2.id()).to_string().parse().unwrap();
    assert_eq!(a.send_to(&addr, "to b2").unwrap(), 0);
    assert_eq!(
        recv_n(&mut ob2, 1, WAIT).await,
        vec![Message::from("to b2")]
    );
    assert_eq!(a.send_to(&a.addr_of(a1.id()), "to a1").unwrap(), 1);
    assert_eq!(
        recv_n(&mut oa1, 1, WAIT).await,
        vec![Message::from("to a1")]
    );
    // A bare connection id means this process: never forwarded.
    assert_eq!(
        a.publish(&Target::Connection(b2.id()), Message::from("lost"))
            .unwrap(),
        0
    );

    // Nothing twice, nothing else.
    for o in [&mut oa1, &mut ob1, &mut ob2] {
        assert_quiet(o, QUIET).await;
    }

    // Presence: the same merged list from both servers.
    let want = {
        let mut w = vec![
            format!("{} ann", a.addr_of(a1.id())),
            format!("{} ann", b.addr_of(b1.id())),
            format!("{} anonymous", b.addr_of(b2.id())),
        ];
        w.sort();
        w
    };
    eventually(WAIT, "presence on A", || async {
        members(&a, "room").await == want
    })
    .await;
    assert_eq!(members(&b, "room").await, want);
    let full = ha.presence("room").await.unwrap();
    assert!(
        full.iter()
            .any(|m| m.user_id.as_deref() == Some("7") && m.name == "ann")
    );

    let (sa, sb) = (a.status(), b.status());
    assert!(sa.is_healthy() && sb.is_healthy(), "{sa}\n{sb}");
    assert_eq!((sa.refused, sa.lost, sa.missed, sa.malformed), (0, 0, 0, 0));
    assert_eq!(sa.forwarded, 3); // channel, user, connection
    assert_eq!(sb.received, 3); // A's three
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_publish_from_any_redis_client_reaches_every_server() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (ha, hb) = (a.hub(), b.hub());
    let (a1, mut oa1) = open(&ha, Some(("42", "zoe")), 64);
    let (b1, mut ob1) = open(&hb, None, 64);
    a1.join("news").unwrap();
    b1.join("news").unwrap();

    // The web application's own Redis client.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut app = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{PREFIX}:channel:news");
    let receivers: usize = app.publish(&channel, r#"{"headline":"ok"}"#).await.unwrap();
    assert_eq!(receivers, 2, "one subscription per server");
    for o in [&mut oa1, &mut ob1] {
        assert_eq!(
            recv_n(o, 1, WAIT).await,
            vec![Message::from(r#"{"headline":"ok"}"#)]
        );
    }
    // Not UTF-8: arrives as binary.
    let _: usize = app.publish(&channel, &[0xffu8, 0xfe][..]).await.unwrap();
    for o in [&mut oa1, &mut ob1] {
        assert_eq!(
            recv_n(o, 1, WAIT).await,
            vec![Message::binary(vec![0xff, 0xfe])]
        );
    }
    // To a user.
    let _: usize = app
        .publish(format!("{PREFIX}:user:42"), "hi zoe")
        .await
        .unwrap();
    assert_eq!(
        recv_n(&mut oa1, 1, WAIT).await,
        vec![Message::from("hi zoe")]
    );

    // redis-cli, as an operator or a shell script would.
    if let Some(cli) = ws_test_support::find_in_path("redis-cli") {
        let out = std::process::Command::new(cli)
            .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
            .args(["PUBLISH", &channel, "from redis-cli"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
        for o in [&mut oa1, &mut ob1] {
            assert_eq!(
                recv_n(o, 1, WAIT).await,
                vec![Message::from("from redis-cli")]
            );
        }
    }
    // An invalid channel name is ignored.
    let _: usize = app
        .publish(format!("{PREFIX}:channel:"), "nowhere")
        .await
        .unwrap();
    for o in [&mut oa1, &mut ob1] {
        assert_quiet(o, QUIET).await;
    }
    assert_eq!(a.status().malformed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_over_10000_messages_without_duplicates() {
    const N: usize = 10_000;
    let Some(redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (ha, hb) = (a.hub(), b.hub());
    let (a1, mut oa1) = open(&ha, None, N + 10);
    let (b1, mut ob1) = open(&hb, None, N + 10);
    a1.join("seq").unwrap();
    b1.join("seq").unwrap();

    let start = Instant::now();
    for i in 0..N {
        // Every fourth message binary, to carry both kinds.
        let msg = if i % 4 == 3 {
            Message::binary((i as u64).to_be_bytes().to_vec())
        } else {
            Message::from(i.to_string())
        };
        assert_eq!(ha.publish("seq", msg).unwrap(), 1, "message {i}");
    }
    let published = start.elapsed();
    let remote = recv_n(&mut ob1, N, Duration::from_secs(20)).await;
    let arrived = start.elapsed();
    let local = recv_n(&mut oa1, N, WAIT).await;
    for (name, got) in [("on A", &local), ("on B", &remote)] {
        for (i, m) in got.iter().enumerate() {
            let n = match m {
                Message::Text(t) => t.parse::<usize>().unwrap(),
                Message::Binary(b) => u64::from_be_bytes(b[..].try_into().unwrap()) as usize,
            };
            assert_eq!(n, i, "{name}: message {i} out of order");
        }
    }
    assert_quiet(&mut ob1, QUIET).await;
    assert_quiet(&mut oa1, Duration::ZERO).await;
    let sb = b.status();
    assert_eq!((sb.received, sb.missed), (N as u64, 0));
    eprintln!(
        "measured: {N} publications queued in {published:?}; all received on the other server after {arrived:?} ({:.0} msg/s)",
        N as f64 / arrived.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_refuses_publications_then_resumes() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (ha, hb) = (a.hub(), b.hub());
    let (a1, mut oa1) = open(&ha, Some(("1", "ann")), 256);
    let (b1, mut ob1) = open(&hb, Some(("2", "bob")), 256);
    a1.join("room").unwrap();
    b1.join("room").unwrap();
    ha.publish("room", "before").unwrap();
    assert_eq!(
        recv_n(&mut ob1, 1, WAIT).await,
        vec![Message::from("before")]
    );
    let _ = recv_n(&mut oa1, 1, WAIT).await;

    redis.kill();
    let noticed = eventually(WAIT, "both servers notice Redis is gone", || async {
        let (sa, sb) = (a.status(), b.status());
        !sa.connected && !sa.subscribed && !sb.connected && !sb.subscribed
    })
    .await;

    // During the gap: local delivery goes on, forwarding is refused, loudly.
    for i in 0..20 {
        let e = ha.publish("room", format!("gap {i}")).unwrap_err();
        assert!(matches!(e, HubError::Unavailable(_)), "{e}");
        let e = hb.publish("room", format!("gap {i}")).unwrap_err();
        assert!(matches!(e, HubError::Unavailable(_)), "{e}");
    }
    assert_eq!(recv_n(&mut oa1, 20, WAIT).await.len(), 20);
    assert_eq!(recv_n(&mut ob1, 20, WAIT).await.len(), 20);
    assert!(matches!(
        ha.presence("room").await,
        Err(HubError::Unavailable(_))
    ));
    assert_eq!(a.local_members("room").len(), 1);
    // A join while Redis is away is announced when it is back.
    let (a2, mut oa2) = open(&ha, Some(("3", "cy")), 256);
    a2.join("room").unwrap();

    // Long enough for the reconnection backoff to reach its cap.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let down = Instant::now();
    redis.restart();
    let restarted = down.elapsed();
    let back = eventually(
        Duration::from_secs(5),
        "both servers resubscribe",
        || async { a.status().is_healthy() && b.status().is_healthy() },
    )
    .await;

    hb.publish("room", "after from b").unwrap();
    for o in [&mut oa1, &mut oa2, &mut ob1] {
        assert_eq!(
            recv_n(o, 1, WAIT).await,
            vec![Message::from("after from b")]
        );
    }
    ha.publish("room", "after from a").unwrap();
    for o in [&mut oa1, &mut oa2, &mut ob1] {
        assert_eq!(
            recv_n(o, 1, WAIT).await,
            vec![Message::from("after from a")]
        );
    }
    for o in [&mut oa1, &mut oa2, &mut ob1] {
        assert_quiet(o, QUIET).await;
    }
    // Presence was re-announced into the empty Redis.
    eventually(WAIT, "presence re-announced", || async {
        let m = members(&b, "room").await;
        m.len() == 3 && m.iter().any(|m| m.ends_with(" cy"))
    })
    .await;

    let (sa, sb) = (a.status(), b.status());
    assert_eq!((sa.refused, sb.refused), (20, 20), "{sa}\n{sb}");
    assert_eq!((sa.lost, sb.lost), (0, 0), "{sa}\n{sb}");
    eprintln!(
        "measured: Redis loss noticed by both after {noticed:?}; restart took {restarted:?}; both resubscribed {back:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_racing_a_redis_crash_arrive_are_refused_or_are_reported() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (b1, mut ob1) = open(&b.hub(), None, 100_000);
    b1.join("race").unwrap();
    let ha = a.hub();
    ha.publish("race", "0").unwrap();
    assert_eq!(recv_n(&mut ob1, 1, WAIT).await, vec![Message::from("0")]);

    // A publishes without pause while Redis dies and comes back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (ha, stop) = (ha.clone(), stop.clone());
        async move {
            let (mut ok, mut refused, mut i) = (1u64, 0u64, 1u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match ha.publish("race", i.to_string()) {
                    Ok(_) => ok += 1,
                    Err(HubError::Unavailable(_)) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
                i += 1;
                if i % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (ok, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    eventually(Duration::from_secs(5), "both servers back", || async {
        a.status().is_healthy() && b.status().is_healthy()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, refused) = publisher.await.unwrap();
    // A last one shows B any gap left at the end.
    ha.publish("race", "end").unwrap();
    ok += 1;

    let mut got = Vec::new();
    loop {
        let m = recv_n(&mut ob1, 1, WAIT).await.remove(0);
        if m == Message::from("end") {
            break;
        }
        got.push(m.as_text().unwrap().parse::<u64>().unwrap());
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order or duplicates");
    let arrived = got.len() as u64 + 2; // with "0" and "end"
    let (sa, sb) = (a.status(), b.status());
    assert_eq!(sb.received, arrived, "{sb}");
    // Every publication A accepted either reached B or shows in B's gap
    // count; every other one was refused to the caller.
    assert_eq!(arrived + sb.missed, ok, "{sa}\n{sb}");
    assert_eq!(sa.refused, refused, "{sa}");
    assert!(refused > 0, "the crash must be visible to publishers");
    eprintln!(
        "measured: around a Redis crash: {ok} accepted ({arrived} arrived, {} reported missing by B, {} reported lost by A), {refused} refused",
        sb.missed, sa.lost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_leaves_presence_within_the_expiry() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let expiry = Duration::from_secs(1);
    let cfg = BrokerConfig {
        presence_heartbeat: Duration::from_millis(200),
        presence_expiry: expiry,
        ..config(&redis.url())
    };
    let a = RedisHub::connect(cfg.clone()).await.unwrap();
    // Server B runs on a runtime of its own, so that it can die the way a
    // SIGKILLed process does: every task and socket gone, no cleanup.
    let rt_b = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let b = rt_b.spawn(RedisHub::connect(cfg)).await.unwrap().unwrap();
    let (a1, _oa1) = open(&a.hub(), None, 8);
    let (b1, _ob1) = open(&b.hub(), Some(("9", "ghost")), 8);
    a1.join("room").unwrap();
    b1.join("room").unwrap();
    let ghost = format!("{} ghost", b.addr_of(b1.id()));
    eventually(WAIT, "B's member visible on A", || async {
        members(&a, "room").await.contains(&ghost)
    })
    .await;

    rt_b.shutdown_background();
    let crashed = Instant::now();
    // No cleanup happened: the entry is still there right after the crash...
    assert!(members(&a, "room").await.contains(&ghost));
    // ...and gone within the expiry.
    eventually(
        expiry + Duration::from_millis(500),
        "ghost expired",
        || async { !members(&a, "room").await.contains(&ghost) },
    )
    .await;
    let gone = crashed.elapsed();
    assert_eq!(members(&a, "room").await.len(), 1);

    // A's heartbeat forgets the dead server.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let dead = b.server_id().to_string();
    eventually(WAIT, "dead server forgotten", || {
        let mut c = c.clone();
        let dead = dead.clone();
        async move {
            let servers: Vec<String> = c.smembers(format!("{PREFIX}:servers")).await.unwrap();
            !servers.contains(&dead)
        }
    })
    .await;
    let servers: Vec<String> = c.smembers(format!("{PREFIX}:servers")).await.unwrap();
    assert_eq!(servers, vec![a.server_id().to_string()]);
    eprintln!(
        "measured: crashed server's member gone from presence {gone:?} after the crash (expiry {expiry:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_close_refresh_and_shutdown_update_presence_at_once() {
    let Some(redis) = Redis::start() else {
        return;
    };
    // A long expiry: only explicit removal can explain a quick disappearance.
    let cfg = BrokerConfig {
        presence_heartbeat: Duration::from_secs(10),
        presence_expiry: Duration::from_secs(30),
        ..config(&redis.url())
    };
    let a = RedisHub::connect(cfg.clone()).await.unwrap();
    let b = RedisHub::connect(cfg).await.unwrap();
    let hb = b.hub();
    let (b1, _ob1) = open(&hb, Some(("1", "ann")), 8);
    let (b2, ob2) = open(&hb, Some(("2", "bob")), 8);
    b1.join("room").unwrap();
    b2.join("room").unwrap();
    b1.join("other").unwrap();
    let quick = Duration::from_secs(1);
    eventually(quick, "two members", || async {
        members(&a, "room").await.len() == 2
    })
    .await;

    b2.leave("room");
    eventually(quick, "leave", || async {
        members(&a, "room").await == vec![format!("{} ann", b.addr_of(b1.id()))]
    })
    .await;
    b2.join("room").unwrap();
    eventually(quick, "rejoin", || async {
        members(&a, "room").await.len() == 2
    })
    .await;
    drop(ob2); // the connection ends: it leaves everything
    eventually(quick, "close", || async {
        members(&a, "room").await.len() == 1
    })
    .await;
    // What the server does when a session is revalidated.
    ws_core::__runtime::set_aspect(
        &b1,
        "frontend.user",
        ws_core::UserAspect::user("1").with_username("annie"),
    );
    ws_core::__runtime::backend(&hb).refresh(&b1);
    eventually(quick, "new name", || async {
        members(&a, "room").await == vec![format!("{} annie", b.addr_of(b1.id()))]
    })
    .await;

    b.shutdown().await;
    assert!(members(&a, "room").await.is_empty());
    assert!(members(&a, "other").await.is_empty());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = c
        .keys(format!("{PREFIX}:*{}*", b.server_id()))
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let servers: Vec<String> = c.smembers(format!("{PREFIX}:servers")).await.unwrap();
    assert_eq!(servers, vec![a.server_id().to_string()]);

    // After shutdown: local delivery only, and said so.
    let (b3, mut ob3) = open(&hb, None, 8);
    b3.join("room").unwrap();
    assert!(matches!(
        hb.publish("room", "late"),
        Err(HubError::Unavailable(_))
    ));
    assert_eq!(recv_n(&mut ob3, 1, WAIT).await, vec![Message::from("late")]);
    assert!(!b.status().connected);
    b.shutdown().await; // twice is fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_and_nothing_accepted_is_lost() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let cfg = BrokerConfig {
        queue_size: 1,
        ..config(&redis.url())
    };
    let a = RedisHub::connect(cfg.clone()).await.unwrap();
    let b = RedisHub::connect(cfg).await.unwrap();
    let (b1, mut ob1) = open(&b.hub(), None, 5000);
    b1.join("q").unwrap();
    let ha = a.hub();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        if i % 20 == 0 {
            // Let the writer take some: the rest arrive faster than it sends.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match ha.publish("q", i.to_string()) {
            Ok(_) => accepted.push(Message::from(i.to_string())),
            Err(HubError::Unavailable(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "a queue of 1 must overflow");
    assert_eq!(recv_n(&mut ob1, accepted.len(), WAIT).await, accepted);
    assert_quiet(&mut ob1, QUIET).await;
    let s = a.status();
    assert_eq!((s.refused, s.lost), (refused, 0));
    assert_eq!(s.forwarded, accepted.len() as u64);
    eprintln!(
        "measured: queue of 1: {} of 2000 accepted, {refused} refused",
        accepted.len()
    );
}

#[tokio::test]
async fn connect_errors_are_typed() {
    let e = RedisHub::connect(BrokerConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::Config {
                key: "redis_url",
                ..
            }
        ),
        "{e}"
    );
    let e = RedisHub::connect(BrokerConfig::with_url("http://x"))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidUrl { .. }), "{e}");
    // TLS is not built in: said at start, not at the first publication.
    let e = RedisHub::connect(BrokerConfig::with_url("rediss://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidUrl { .. }), "{e}");
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = RedisHub::connect(BrokerConfig::with_url(format!(
        "redis://:secret@127.0.0.1:{port}"
    )))
    .await
    .unwrap_err();
    assert!(
        matches!(e, BrokerError::Connect { .. } | BrokerError::Timeout { .. }),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&port.to_string()) && !text.contains("secret"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_others_after_a_restart_keeps_this_servers_keys_alive() {
    // After a reconnection a server waits (up to twice reconnect_max_delay)
    // for as many servers as before to listen again. That wait can outlast
    // presence_expiry; the server's keys must be renewed meanwhile, else
    // the others forget it and drop its members until its next heartbeat.
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let cfg = config(&redis.url()); // heartbeat 100 ms, expiry 400 ms, wait up to 800 ms
    assert!(cfg.reconnect_max_delay * 2 > cfg.presence_expiry);
    // B first, so that A counts two servers when it announces itself; B
    // runs on a runtime of its own so that it can crash: it will never
    // listen again, and A waits the whole grace period.
    let rt_b = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let b = rt_b
        .spawn(RedisHub::connect(cfg.clone()))
        .await
        .unwrap()
        .unwrap();
    let a = RedisHub::connect(cfg.clone()).await.unwrap();
    let (a1, _oa1) = open(&a.hub(), Some(("1", "ann")), 8);
    a1.join("room").unwrap();
    eventually(WAIT, "A's member visible on A", || async {
        members(&a, "room").await.len() == 1
    })
    .await;
    // B crashes and Redis goes away before A's heartbeat can notice B is
    // gone (B's key lives for the expiry).
    rt_b.shutdown_background();
    drop(b);
    redis.kill();
    eventually(WAIT, "A notices", || async { !a.status().connected }).await;
    redis.restart();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let alive = format!("{PREFIX}:server:{}", a.server_id());
    let hash = format!("{PREFIX}:presence:{}:room", a.server_id());
    let start = Instant::now();
    let mut announced = None;
    while !a.status().connected {
        assert!(
            start.elapsed() < WAIT,
            "A never accepted publications again"
        );
        let (k, h): (bool, bool) = redis::pipe()
            .exists(&alive)
            .exists(&hash)
            .query_async(&mut c)
            .await
            .unwrap();
        match announced {
            None if k && h => announced = Some(Instant::now()),
            None => {}
            Some(t) => assert!(
                k && h,
                "A's keys expired {:?} after it announced itself, while it waited for the others \
                 (server key {k}, presence hash {h})",
                t.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = announced.expect("A announced itself").elapsed();
    assert!(
        waited > cfg.presence_expiry,
        "the wait ({waited:?}) must outlast the expiry for this test to mean anything"
    );
    let servers: Vec<String> = c.smembers(format!("{PREFIX}:servers")).await.unwrap();
    assert!(servers.contains(&a.server_id().to_string()), "{servers:?}");
    a.shutdown().await;
}

/// Confirmed publications (what the admin API's 202 rests on) while Redis
/// is killed with SIGKILL and restarted: every one answered `Ok` reaches
/// the other server exactly once and in each publisher's order; every other
/// one was answered `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_publications_racing_a_redis_crash_arrive_or_are_refused() {
    const PUBLISHERS: u64 = 4;
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (b1, mut ob1) = open(&b.hub(), None, 100_000);
    b1.join("sure").unwrap();
    let ha = a.hub();
    assert_eq!(ha.publish_confirmed("sure", "first").await.unwrap(), 0);
    assert_eq!(
        recv_n(&mut ob1, 1, WAIT).await,
        vec![Message::from("first")]
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (ha, stop) = (ha.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut confirmed, mut refused) = (Vec::new(), Vec::new());
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    match ha.publish_confirmed("sure", format!("{p}:{i}")).await {
                        Ok(_) => confirmed.push(i),
                        Err(HubError::Unavailable(_)) => {
                            refused.push(i);
                            // A refusal is immediate while Redis is away:
                            // leave the runtime to the others.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    let took = started.elapsed();
                    assert!(
                        took < Duration::from_secs(2) + Duration::from_millis(500),
                        "a confirmed publication waited {took:?} (command_timeout 2s)"
                    );
                    i += 1;
                }
                (confirmed, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    eventually(Duration::from_secs(5), "both servers back", || async {
        a.status().is_healthy() && b.status().is_healthy()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut confirmed = Vec::new();
    let mut refused = 0;
    for p in publishers {
        let (c, r) = p.await.unwrap();
        refused += r.len();
        confirmed.push(c);
    }
    let total_confirmed: usize = confirmed.iter().map(Vec::len).sum();
    ha.publish_confirmed("sure", "end").await.unwrap();

    // What B got, per publisher, in arrival order.
    let mut got: Vec<Vec<u64>> = vec![Vec::new(); PUBLISHERS as usize];
    loop {
        let m = recv_n(&mut ob1, 1, WAIT).await.remove(0);
        let t = m.as_text().unwrap().to_owned();
        if t == "end" {
            break;
        }
        let (p, i) = t.split_once(':').unwrap();
        got[p.parse::<usize>().unwrap()].push(i.parse().unwrap());
    }
    assert_quiet(&mut ob1, QUIET).await;
    for (p, (got, confirmed)) in got.iter().zip(&confirmed).enumerate() {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "publisher {p}: out of order or twice: {got:?}"
        );
        let missing: Vec<_> = confirmed
            .iter()
            .filter(|i| got.binary_search(i).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "publisher {p}: confirmed but never arrived on B: {missing:?}"
        );
    }
    assert!(refused > 0, "the crash must be visible to publishers");
    assert!(
        confirmed.iter().all(|c| c.len() > 1),
        "every publisher got confirmations before and after the crash: {confirmed:?}"
    );
    let arrived: usize = got.iter().map(Vec::len).sum();
    let (sa, sb) = (a.status(), b.status());
    eprintln!(
        "measured: confirmed publications around a Redis crash (300ms down): {total_confirmed} confirmed, \
         all arrived on B; {refused} refused ({} of them arrived anyway); A: {sa}; B: {sb}",
        arrived - total_confirmed,
    );
}

/// SIGSTOP (Redis hangs, connections stay open): a confirmed publication is
/// refused within `command_timeout`, `publish` never blocks, and both work
/// again after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_refuses_confirmed_publications_within_command_timeout() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let cfg = BrokerConfig {
        command_timeout: timeout,
        ..config(&redis.url())
    };
    let a = RedisHub::connect(cfg.clone()).await.unwrap();
    let b = RedisHub::connect(cfg).await.unwrap();
    let (b1, mut ob1) = open(&b.hub(), None, 1000);
    b1.join("hang").unwrap();
    let ha = a.hub();
    ha.publish_confirmed("hang", "before").await.unwrap();
    assert_eq!(
        recv_n(&mut ob1, 1, WAIT).await,
        vec![Message::from("before")]
    );
    // A heartbeat or two, so each server counts the other among the live
    // ones (A connected first: it waits for B's subscription after the
    // outage only once it knows B).
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.pause();
    let paused = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answers = Vec::new();
    // For longer than the writer needs to notice (a command timing out, or
    // the heartbeat's PING): every answer comes within command_timeout.
    while paused.elapsed() < timeout * 4 {
        let started = Instant::now();
        let r = ha.publish_confirmed("hang", "during").await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(
            matches!(r, Err(HubError::Unavailable(_))),
            "Redis is stopped, yet: {r:?}"
        );
        assert!(
            took <= timeout + Duration::from_millis(250),
            "refused after {took:?} (command_timeout {timeout:?})"
        );
        answers.push(took);
        // Fire-and-forget never waits for Redis.
        let started = Instant::now();
        let _ = ha.publish("hang", "during, unconfirmed");
        assert!(started.elapsed() < Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    redis.resume();
    let resumed = Instant::now();
    eventually(
        Duration::from_secs(10),
        "confirmed again after SIGCONT",
        || async { ha.publish_confirmed("hang", "after").await.is_ok() },
    )
    .await;
    let back = resumed.elapsed();
    // "after" arrives (what was written before the writer gave up may
    // arrive too, each at most once).
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "\"after\" never arrived on B");
        let m = recv_n(&mut ob1, 1, WAIT).await.remove(0);
        if m == Message::from("after") {
            break;
        }
    }
    eprintln!(
        "measured: Redis stopped: {} confirmed publications refused, slowest answer {slowest:?} \
         (command_timeout {timeout:?}); confirmed again {back:?} after SIGCONT",
        answers.len()
    );
}

/// Publications waiting for a hanging Redis, and those kept for sending
/// again, count against the server's memory budget: past it, publishing is
/// refused (naming the setting) instead of the queue growing to
/// `queue_size` × message size; nothing accepted is lost, and the budget is
/// given back once Redis took them and the resend window passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_publications_count_against_the_memory_budget() {
    let Some(redis) = Redis::start() else {
        return;
    };
    const LIMIT: usize = 256 * 1024;
    let budget = MemoryBudget::new(LIMIT);
    // A long command_timeout: the writer waits for the stopped Redis
    // instead of giving the connection (and the queue) up.
    let cfg = BrokerConfig {
        command_timeout: Duration::from_secs(10),
        ..config(&redis.url())
    };
    let a = RedisHub::connect_with_budget(cfg.clone(), budget.clone())
        .await
        .unwrap();
    let b = RedisHub::connect(cfg).await.unwrap();
    let (b1, mut ob1) = open(&b.hub(), None, 1000);
    b1.join("big").unwrap();
    let ha = a.hub();
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.pause();
    let payload = "x".repeat(16 * 1024);
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..100 {
        let text = format!("{i:03}{payload}");
        match ha.publish("big", text.clone()) {
            Ok(_) => accepted.push(Message::from(text)),
            Err(HubError::Unavailable(why)) => {
                refusal = Some(why);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(budget.used() <= LIMIT, "{} counted", budget.used());
    }
    let why = refusal.expect("a 256 KiB budget cannot queue 100 publications of 16 KiB");
    assert!(why.contains("max_buffered_memory_in_mb"), "{why}");
    let held = budget.used();
    assert!(
        held > LIMIT - 2 * (16 << 10),
        "refused with only {held} of {LIMIT} bytes counted"
    );
    assert!(
        (12..=16).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    redis.resume();

    // Nothing accepted is lost; the bytes are given back once Redis took
    // them and they are past the resend window (the writer forgets on its
    // heartbeat).
    assert_eq!(recv_n(&mut ob1, accepted.len(), WAIT * 3).await, accepted);
    eventually(Duration::from_secs(5), "the budget given back", || async {
        budget.used() == 0
    })
    .await;
    assert_eq!(a.status().lost, 0);
    ha.publish("big", "after").unwrap();
    assert_eq!(
        recv_n(&mut ob1, 1, WAIT).await,
        vec![Message::from("after")]
    );
    eprintln!(
        "measured: Redis stopped: {} publications of 16 KiB queued, {held} of {LIMIT} bytes \
         counted, then refused: {why}",
        accepted.len()
    );
}
