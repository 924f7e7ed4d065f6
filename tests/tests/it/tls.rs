//! TLS: `wss://` with a certificate made in the test, files that fail the
//! build by name, reloading (by method and by SIGHUP) for new connections
//! only, client certificates (mutual TLS), and a flood of clients that
//! stall mid-handshake, dropped at the handshake deadline.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;
use ws_runtime::{BuildError, Server, ServerConfig, TlsError, TlsSettings};
use ws_test_support::TempDir;
use ws_tests::tls::{Issued, TestCa, client_hello, connect_tls};
use ws_tests::{TestServer, next_text, send};

fn tls_config(settings: TlsSettings) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.tls = Some(settings);
    c.handshake_timeout = Duration::from_secs(1);
    c
}

async fn tls_server(settings: TlsSettings) -> TestServer {
    TestServer::start(
        Server::builder()
            .component(demo_echo::Echo)
            .config(tls_config(settings)),
    )
    .await
}

async fn echo_once(ws: &mut ws_tests::tls::TlsClient, text: &str) {
    send(ws, text).await;
    assert_eq!(next_text(ws).await, text);
}

#[tokio::test]
async fn wss_echo_with_a_generated_certificate() {
    let dir = TempDir::new("tls");
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server().write(&dir, "server");
    let srv = tls_server(TlsSettings::new(cert, key)).await;
    let mut ws = connect_tls(srv.addr, "/echo", ca.roots(), None)
        .await
        .unwrap();
    echo_once(&mut ws, "over TLS").await;

    // A client that does not trust the CA fails the TLS handshake.
    let other = TestCa::new("other CA");
    let err = connect_tls(srv.addr, "/echo", other.roots(), None)
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("TLS"), "{err}");
    // A plain-text client gets no WebSocket.
    assert!(
        tokio_tungstenite::connect_async(srv.url("/echo"))
            .await
            .is_err()
    );
    // A client that never starts TLS is dropped by the handshake deadline.
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "dropped before the test's limit");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The open connection still works.
    echo_once(&mut ws, "still here").await;
    drop(ws);
    srv.shutdown().await;
}

#[test]
fn unusable_files_fail_the_build_naming_the_file() {
    let dir = TempDir::new("tls");
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server().write(&dir, "a");
    let (_, other_key) = ca.server().write(&dir, "b");
    let build = |settings: TlsSettings| {
        Server::builder()
            .component(demo_echo::Echo)
            .config(tls_config(settings))
            .build()
    };
    assert!(build(TlsSettings::new(&cert, &key)).is_ok());

    let missing = dir.join("missing.crt");
    let Err(BuildError::Tls(e)) = build(TlsSettings::new(&missing, &key)) else {
        panic!("a missing certificate must fail the build");
    };
    assert!(
        matches!(
            e,
            TlsError::Read {
                key: "tls.cert",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");

    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let Err(BuildError::Tls(e)) = build(TlsSettings::new(&cert, &garbage)) else {
        panic!("a file without a key must fail the build");
    };
    assert!(
        e.to_string().starts_with(&format!(
            "`tls.key` file {} holds no private key",
            garbage.display()
        )),
        "{e}"
    );
    // A key file given as the certificate.
    let Err(BuildError::Tls(e)) = build(TlsSettings::new(&key, &key)) else {
        panic!("a file without a certificate must fail the build");
    };
    assert!(e.to_string().contains("holds no certificate"), "{e}");

    let Err(BuildError::Tls(e)) = build(TlsSettings::new(&cert, &other_key)) else {
        panic!("a mismatched key must fail the build");
    };
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&cert.display().to_string()) && msg.contains(&other_key.display().to_string()),
        "{msg}"
    );

    let bad_ca = dir.join("ca.pem");
    std::fs::write(&bad_ca, "").unwrap();
    let Err(BuildError::Tls(e)) = build(TlsSettings::new(&cert, &key).with_client_ca(&bad_ca))
    else {
        panic!("an empty client CA file must fail the build");
    };
    assert!(e.to_string().contains("`tls.client_ca`"), "{e}");
}

/// Replaces the server's certificate files with `issued`.
fn replace(issued: &Issued, cert: &std::path::Path, key: &std::path::Path) {
    std::fs::write(cert, &issued.cert_pem).unwrap();
    std::fs::write(key, &issued.key_pem).unwrap();
}

#[tokio::test]
async fn reload_uses_the_new_certificate_for_new_connections_only() {
    let dir = TempDir::new("tls");
    let (ca_a, ca_b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let (cert, key) = ca_a.server().write(&dir, "server");
    let srv = tls_server(TlsSettings::new(&cert, &key)).await;
    let mut old = connect_tls(srv.addr, "/echo", ca_a.roots(), None)
        .await
        .unwrap();

    replace(&ca_b.server(), &cert, &key);
    // Nothing changes before the reload.
    assert!(
        connect_tls(srv.addr, "/echo", ca_b.roots(), None)
            .await
            .is_err()
    );
    srv.server.reload_tls().unwrap();
    let mut new = connect_tls(srv.addr, "/echo", ca_b.roots(), None)
        .await
        .unwrap();
    echo_once(&mut new, "new certificate").await;
    assert!(
        connect_tls(srv.addr, "/echo", ca_a.roots(), None)
            .await
            .is_err()
    );
    echo_once(&mut old, "old connection kept").await;

    // A failed reload keeps the certificate in use.
    std::fs::write(&key, "garbage").unwrap();
    let e = srv.server.reload_tls().unwrap_err();
    assert!(e.to_string().contains("`tls.key`"), "{e}");
    let mut again = connect_tls(srv.addr, "/echo", ca_b.roots(), None)
        .await
        .unwrap();
    echo_once(&mut again, "still B").await;

    // Without TLS there is nothing to reload.
    let plain = Server::builder()
        .component(demo_echo::Echo)
        .build()
        .unwrap();
    assert!(matches!(plain.reload_tls(), Err(TlsError::NotConfigured)));
    drop((old, new, again));
    srv.shutdown().await;
}

/// SIGHUP goes to the whole process, so this runs in a child of its own.
#[test]
fn sighup_reloads_the_certificate() {
    ws_test_support::in_child_process("tls::sighup_reloads_the_certificate", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(sighup_reload());
    });
}

async fn sighup_reload() {
    use tokio::signal::unix::{SignalKind, signal};
    // Ours too, so that SIGHUP can never take the default action (exit)
    // here, whatever the order of events.
    let mut hup = signal(SignalKind::hangup()).unwrap();
    let dir = TempDir::new("tls");
    let (ca_a, ca_b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let (cert, key) = ca_a.server().write(&dir, "server");
    let srv = tls_server(TlsSettings::new(&cert, &key)).await;
    // A served connection proves the server's handler is installed (it is
    // installed before the first accept).
    let mut old = connect_tls(srv.addr, "/echo", ca_a.roots(), None)
        .await
        .unwrap();
    replace(&ca_b.server(), &cert, &key);
    send_sighup_to_self();
    tokio::time::timeout(ws_tests::WAIT, hup.recv())
        .await
        .expect("SIGHUP delivered");
    let deadline = Instant::now() + ws_tests::WAIT;
    let mut new = loop {
        match connect_tls(srv.addr, "/echo", ca_b.roots(), None).await {
            Ok(ws) => break ws,
            Err(e) => {
                assert!(Instant::now() < deadline, "never reloaded: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    echo_once(&mut new, "reloaded by SIGHUP").await;
    echo_once(&mut old, "old connection kept").await;
    drop((old, new));
    srv.shutdown().await;
}

/// Sends SIGHUP to this process with the `kill` command (no `unsafe`
/// `libc::kill` needed).
fn send_sighup_to_self() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(
        status.success(),
        "kill -HUP {}: {status}",
        std::process::id()
    );
}

#[tokio::test]
async fn client_certificates_from_client_ca_are_required() {
    let dir = TempDir::new("tls");
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (cert, key) = server_ca.server().write(&dir, "server");
    let ca_file = dir.join("client-ca.pem");
    std::fs::write(&ca_file, client_ca.cert_pem()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let srv = TestServer::start(
        Server::builder()
            .component(demo_echo::Echo)
            .layer(ws_runtime::handshake_fn(
                move |req: ws_runtime::HandshakeRequest, next: ws_runtime::Next| {
                    let record = std::sync::Arc::clone(&record);
                    async move {
                        let chain = req
                            .extensions()
                            .get::<ws_runtime::ClientCertificates>()
                            .map(|c| c.0.len());
                        record.lock().unwrap().push(chain);
                        next.run(req).await
                    }
                },
            ))
            .config(tls_config(
                TlsSettings::new(&cert, &key).with_client_ca(&ca_file),
            )),
    )
    .await;
    // Without a certificate: refused.
    let err = connect_tls(srv.addr, "/echo", server_ca.roots(), None)
        .await
        .err()
        .unwrap();
    assert!(!err.is_empty());
    // With one from another CA: refused.
    let stranger = TestCa::new("stranger CA").client("mallory");
    assert!(
        connect_tls(srv.addr, "/echo", server_ca.roots(), Some(&stranger))
            .await
            .is_err()
    );
    // With one from client_ca: accepted, and the chain reaches the pipeline.
    let alice = client_ca.client("alice");
    let mut ws = connect_tls(srv.addr, "/echo", server_ca.roots(), Some(&alice))
        .await
        .unwrap();
    echo_once(&mut ws, "mutual").await;
    assert_eq!(*seen.lock().unwrap(), [Some(1)]);
    drop(ws);
    srv.shutdown().await;
}

/// Clients in the TLS handshake flood.
const STALLED: usize = 150;

/// What a stalled client sends before it stops: nothing, half a
/// ClientHello, or a whole one (the server answers, and waits for the
/// client's next flight forever).
fn stalled_bytes(i: usize, hello: &[u8]) -> &[u8] {
    match i % 3 {
        0 => &[],
        1 => &hello[..hello.len() / 2],
        _ => hello,
    }
}

/// Connects, sends `bytes`, then only reads (whatever the server answers)
/// until the server drops the connection; how long after connecting.
async fn stall(addr: std::net::SocketAddr, bytes: Vec<u8>) -> Result<Duration, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    s.write_all(&bytes).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {} // the ServerHello and the rest of its flight
            Err(_) => return Err("still open after 10 s".to_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stalled_tls_handshakes_is_dropped_at_the_deadline() {
    let timeout = Duration::from_secs(1);
    let dir = TempDir::new("tls");
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server().write(&dir, "server");
    let srv = tls_server(TlsSettings::new(cert, key)).await;
    let mut before = connect_tls(srv.addr, "/echo", ca.roots(), None)
        .await
        .unwrap();
    let hello = client_hello();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");

    let addr = srv.addr;
    let flood = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..STALLED {
            set.spawn(stall(addr, stalled_bytes(i, &hello).to_vec()));
        }
        let mut dropped_after = Vec::with_capacity(STALLED);
        while let Some(joined) = set.join_next().await {
            dropped_after.push(
                joined
                    .expect("stalled client")
                    .expect("dropped by the server"),
            );
        }
        dropped_after
    });
    // Meanwhile, real wss clients connect and echo (one at a time, within
    // the default per-address limits).
    let mut during = 0;
    let started = Instant::now();
    while !flood.is_finished() && started.elapsed() < ws_tests::WAIT {
        let mut ws = connect_tls(srv.addr, "/echo", ca.roots(), None)
            .await
            .expect("a wss client connects during the flood");
        echo_once(&mut ws, "during the flood").await;
        echo_once(&mut before, "open before the flood").await;
        during += 1;
        drop(ws);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped_after = flood.await.expect("flood task");
    let earliest = dropped_after.iter().min().copied().unwrap_or_default();
    let latest = dropped_after.iter().max().copied().unwrap_or_default();
    println!(
        "{STALLED} stalled TLS handshakes dropped after {earliest:?} to {latest:?}; \
         {during} wss clients connected meanwhile"
    );
    assert_eq!(dropped_after.len(), STALLED);
    assert!(
        earliest >= timeout - Duration::from_millis(100),
        "not before the deadline: {earliest:?}"
    );
    assert!(
        // Slack for a loaded 2-core machine running the suite in parallel
        // (seen: 2.0 s there); a missing deadline would leave them open
        // for the whole 10 s the clients wait.
        latest <= timeout + Duration::from_secs(3),
        "every stalled handshake is dropped within handshake_timeout + 3 s; the last took {latest:?}"
    );
    assert!(during > 0, "a wss client connected during the flood");
    echo_once(&mut before, "after").await;
    drop(before);
    srv.shutdown().await;
}
