//! Behind a reverse proxy, for real: `ws-cli start --prefix /socket.io`
//! behind Debian's nginx and Apache httpd, both on loopback, each proxy
//! configured with the very files in `deploy/` that docs/deployment.md and
//! the README show (only the upstream port is replaced). Clients come from
//! distinct 127.0.0.x source addresses, so the server must tell them apart
//! by the proxy's `X-Forwarded-For` (trusted: loopback, the default).
//!
//! Also the default `trusted_proxies` without a proxy: headers from
//! loopback are believed, from any other address ignored (a non-loopback
//! address of this machine, when it has one; and always a configuration
//! that leaves the sender out), with one warning naming `trusted_proxies`.
//!
//! nginx and apache2 missing: skipped outside CI, a failure under `CI=true`
//! (`.ci/run` installs both). `cargo xtask e2e` runs this file against the
//! release binary.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Running, tail};
use futures_util::future::join_all;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use ws_test_support::{ChildGuard, TempDir, find_in_path, free_port, skip_or_fail};
use ws_tests::tls::{Issued, TestCa};

/// The prefix the README's proxy snippets use.
const PREFIX: &str = "/socket.io";
/// The longest one exchange may take.
const LIMIT: Duration = Duration::from_secs(10);
/// Clients that connect through the proxy at once, each from its own address.
const CLIENTS: u8 = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `deploy/<rel>` as text.
fn deploy_file(rel: &str) -> String {
    let path = root().join("deploy").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with the one `127.0.0.1:18080` (the documented backend) replaced
/// by the test's backend.
fn with_backend(text: &str, backend: SocketAddr) -> String {
    assert_eq!(
        text.matches("127.0.0.1:18080").count(),
        1,
        "the snippet names the backend 127.0.0.1:18080 once:\n{text}"
    );
    text.replace("127.0.0.1:18080", &backend.to_string())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A TCP connection from `source` (port chosen by the kernel) to `addr`.
async fn tcp_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// A refused handshake as `STATUS BODY`, anything else as text.
fn ws_error(e: WsError) -> String {
    match e {
        WsError::Http(resp) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            format!("{} {body}", resp.status().as_u16())
        }
        other => other.to_string(),
    }
}

/// The WebSocket handshake for `url` over `stream`, with extra headers.
async fn handshake<S>(
    stream: S,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = url.into_client_request().map_err(ws_error)?;
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let (ws, _) = tokio::time::timeout(LIMIT, tokio_tungstenite::client_async(req, stream))
        .await
        .map_err(|_| format!("no handshake answer within {LIMIT:?}"))?
        .map_err(ws_error)?;
    Ok(ws)
}

/// `ws://` to `addr` for `path`, from `source`.
async fn ws_from(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<TcpStream>, String> {
    let tcp = tcp_from(source, addr)
        .await
        .map_err(|e| format!("connect {source} → {addr}: {e}"))?;
    handshake(
        tcp,
        &format!("ws://localhost:{}{path}", addr.port()),
        headers,
    )
    .await
}

/// `wss://localhost` to `addr` for `path`, from `source`, trusting `ca`.
async fn wss_from(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
    ca: &TestCa,
) -> Result<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = tcp_from(source, addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        LIMIT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS: {e}"))?;
    handshake(tls, &format!("wss://localhost:{}{path}", addr.port()), &[]).await
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, text: &str) {
    ws_tests::send(ws, Message::text(text)).await;
}

async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> serde_json::Value {
    let text = ws_tests::next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// What `whoami` says the client's address is (its IP).
async fn whoami<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> String {
    send(ws, "who").await;
    let v = next_json(ws).await;
    let client: SocketAddr = v["client"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no client address in {v}"));
    client.ip().to_string()
}

/// Which reverse proxy.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Apache,
}

/// A running proxy: plain HTTP on `http`, TLS on `https`; stopped with
/// SIGTERM (which stops its workers too) when dropped.
struct Proxy {
    kind: Kind,
    guard: ChildGuard,
    http: SocketAddr,
    https: SocketAddr,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {:?} error log ---{}", self.kind, tail(&self.log));
        }
        self.guard
            .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    }
}

/// Writes the test's frame around the deploy/ snippets into `dir` and
/// starts the proxy in the foreground; `None`: not installed (skipped).
fn start_proxy(kind: Kind, backend: SocketAddr, cert: &Issued, dir: &TempDir) -> Option<Proxy> {
    let (program, package) = match kind {
        Kind::Nginx => ("nginx", "nginx"),
        Kind::Apache => ("apache2", "apache2"),
    };
    let Some(bin) = find_in_path(program) else {
        return skip_or_fail(program, package);
    };
    let (crt, key) = cert.write(dir, "proxy");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let d = dir.path().display();
    let (crt, key) = (crt.display(), key.display());
    let log = dir.join("error.log");
    let mut cmd = Command::new(&bin);
    match kind {
        Kind::Nginx => {
            let upstream = dir.join("ws-provider-upstream.conf");
            std::fs::write(
                &upstream,
                with_backend(&deploy_file("nginx/ws-provider-upstream.conf"), backend),
            )
            .unwrap();
            let location = root().join("deploy/nginx/ws-provider.conf");
            let location = location.display();
            let conf = format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n\
                   client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
                   scgi_temp_path {d}/scgi;\n\
                   include {d}/ws-provider-upstream.conf;\n\
                   server {{\n    listen {http};\n    include {location};\n  }}\n\
                   server {{\n    listen {https} ssl;\n    ssl_certificate {crt};\n\
                     ssl_certificate_key {key};\n    include {location};\n  }}\n}}\n"
            );
            let path = dir.join("nginx.conf");
            std::fs::write(&path, conf).unwrap();
            cmd.arg("-p").arg(dir.path()).arg("-c").arg(&path);
            cmd.arg("-e").arg(&log);
        }
        Kind::Apache => {
            let location = dir.join("ws-provider.conf");
            std::fs::write(
                &location,
                with_backend(&deploy_file("apache/ws-provider.conf"), backend),
            )
            .unwrap();
            let modules = "/usr/lib/apache2/modules";
            let load = [
                "mpm_event",
                "authz_core",
                "headers",
                "proxy",
                "proxy_http",
                "proxy_wstunnel",
                "socache_shmcb",
                "ssl",
            ]
            .iter()
            .map(|m| format!("LoadModule {m}_module {modules}/mod_{m}.so\n"))
            .collect::<String>();
            // Root starts httpd with a user to switch to; anyone else runs
            // it as themselves.
            let user = if nix::unistd::geteuid().is_root() {
                "User nobody\nGroup nogroup\n"
            } else {
                ""
            };
            let conf = format!(
                "ServerRoot {d}\nServerName localhost\nPidFile {d}/httpd.pid\n\
                 DefaultRuntimeDir {d}\nErrorLog {d}/error.log\nLogLevel warn\n{load}{user}\
                 StartServers 2\nServerLimit 4\nThreadsPerChild 100\nMaxRequestWorkers 400\n\
                 Listen {http}\nListen {https}\n\
                 <VirtualHost {http}>\n  Include {location}\n</VirtualHost>\n\
                 <VirtualHost {https}>\n  SSLEngine on\n  SSLCertificateFile {crt}\n\
                 SSLCertificateKeyFile {key}\n  Include {location}\n</VirtualHost>\n",
                location = location.display(),
            );
            let path = dir.join("httpd.conf");
            std::fs::write(&path, conf).unwrap();
            cmd.arg("-f").arg(&path).arg("-DFOREGROUND");
        }
    }
    let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let guard = ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env_remove("APACHE_CONFDIR"),
    )
    .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let mut proxy = Proxy {
        kind,
        guard,
        http,
        https,
        log,
    };
    // Up once both ports answer.
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = proxy.guard.try_exited() {
            panic!(
                "{kind:?} exited at start ({status}){}{}",
                tail(&dir.join("stderr.log")),
                tail(&proxy.log)
            );
        }
        if std::net::TcpStream::connect(http).is_ok() && std::net::TcpStream::connect(https).is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?} not listening within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.log = dir.join("error.log");
    Some(proxy)
}

/// Every scenario through one proxy in front of one `ws-cli start --prefix
/// /socket.io` with the default configuration.
fn through(kind: Kind) {
    let dir = TempDir::new(&format!("proxy-{kind:?}"));
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    let srv = Running::start_logged(&state, &["--prefix", PREFIX], &dir.join("ws-cli.log"));
    let ca = TestCa::new("proxy test CA");
    let Some(proxy) = start_proxy(kind, srv.addr, &ca.server(), &dir) else {
        return;
    };
    let (http, https) = (proxy.http, proxy.https);
    let url = |route: &str| format!("{PREFIX}{route}");
    rt().block_on(async {
        // Every demo route, through the proxy.
        let me = v4(127, 0, 0, 2);
        let mut ws = ws_from(me, http, &url("/echo"), &[]).await.unwrap();
        send(&mut ws, "hello").await;
        assert_eq!(ws_tests::next_text(&mut ws).await, "hello");
        ws_tests::send(&mut ws, Message::binary(vec![0u8, 1, 2])).await;
        assert_eq!(
            ws_tests::next(&mut ws).await,
            Message::binary(vec![0u8, 1, 2])
        );
        let mut ws = ws_from(me, http, &url("/demo_echo_Reverse"), &[])
            .await
            .unwrap();
        send(&mut ws, "abc").await;
        assert_eq!(ws_tests::next_text(&mut ws).await, "cba");
        let mut ws = ws_from(me, http, &url("/ticker"), &[]).await.unwrap();
        let tick = ws_tests::next_text(&mut ws).await;
        assert!(tick.starts_with("tick "), "{tick}");
        let mut ws = ws_from(me, http, &url("/demo_echo_Whoami"), &[])
            .await
            .unwrap();
        send(&mut ws, "who").await;
        let v = next_json(&mut ws).await;
        assert_eq!(v["path"], url("/demo_echo_Whoami"), "{v}");
        let mut ws = ws_from(me, http, &url("/chat/lobby"), &[]).await.unwrap();
        let presence = next_json(&mut ws).await;
        assert_eq!(presence["type"], "presence", "{presence}");
        assert_eq!(presence["room"], "lobby", "{presence}");
        send(&mut ws, "hi room").await;
        loop {
            let m = next_json(&mut ws).await;
            if m["type"] == "message" {
                assert_eq!(m["text"], "hi room", "{m}");
                break;
            }
        }
        let mut ws = ws_from(me, http, &url("/broadcast"), &[]).await.unwrap();
        send(&mut ws, "to all").await;
        assert_eq!(ws_tests::next_text(&mut ws).await, "to all");
        // Outside the prefix: the proxy's own 404, never the server.
        let err = ws_from(me, http, "/echo", &[]).await.unwrap_err();
        assert!(err.starts_with("404"), "{err}");

        // whoami sees each client's own address, and a client's own
        // X-Forwarded-For changes nothing.
        for last in 11..=14 {
            let source = v4(127, 0, 0, last);
            let mut ws = ws_from(source, http, &url("/demo_echo_Whoami"), &[])
                .await
                .unwrap();
            assert_eq!(whoami(&mut ws).await, source.to_string());
        }
        let liar = v4(127, 0, 0, 15);
        let mut ws = ws_from(
            liar,
            http,
            &url("/demo_echo_Whoami"),
            &[("X-Forwarded-For", "203.0.113.9")],
        )
        .await
        .unwrap();
        assert_eq!(whoami(&mut ws).await, liar.to_string());

        // Per-address limits apply per client: 10 open from one address
        // (max_connections_per_address), the 11th refused, another client
        // still welcome.
        let greedy = v4(127, 0, 0, 21);
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(ws_from(greedy, http, &url("/echo"), &[]).await.unwrap());
        }
        let err = ws_from(greedy, http, &url("/echo"), &[]).await.unwrap_err();
        assert!(
            err.starts_with("429") && err.contains("127.0.0.21/32"),
            "{err}"
        );
        let mut other = ws_from(v4(127, 0, 0, 22), http, &url("/echo"), &[])
            .await
            .unwrap();
        send(&mut other, "still welcome").await;
        assert_eq!(ws_tests::next_text(&mut other).await, "still welcome");
        drop(held);

        // 200 clients at once, each from its own address, with the default
        // configuration: every one connects and is answered.
        let clients = join_all((1..=CLIENTS).map(|i| async move {
            let source = v4(127, 0, 1, i);
            let mut ws = ws_from(source, http, &url("/echo"), &[]).await?;
            let text = format!("client {i}");
            send(&mut ws, &text).await;
            if ws_tests::next_text(&mut ws).await != text {
                return Err(format!("client {i}: wrong echo"));
            }
            Ok::<_, String>(ws)
        }))
        .await;
        let failed: Vec<&String> = clients.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} of {CLIENTS} clients failed through {kind:?}: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        // All of them still open: each answers again.
        for (i, ws) in clients.into_iter().enumerate() {
            let mut ws = ws.unwrap();
            send(&mut ws, "again").await;
            assert_eq!(ws_tests::next_text(&mut ws).await, "again", "client {i}");
        }

        // TLS ends at the proxy: wss:// to it, ws:// behind it.
        let secure = v4(127, 0, 0, 31);
        let mut ws = wss_from(secure, https, &url("/demo_echo_Whoami"), &ca)
            .await
            .unwrap();
        assert_eq!(whoami(&mut ws).await, secure.to_string());
        let mut ws = wss_from(secure, https, &url("/echo"), &ca).await.unwrap();
        send(&mut ws, "over TLS").await;
        assert_eq!(ws_tests::next_text(&mut ws).await, "over TLS");
    });
    drop(proxy);
    // The server saw no error worth a warning: in particular not the one
    // about untrusted forwarding headers.
    let log = std::fs::read_to_string(dir.join("ws-cli.log")).unwrap_or_default();
    assert!(!log.contains("trusted_proxies"), "{log}");
}

#[test]
fn nginx_in_front() {
    through(Kind::Nginx);
}

#[test]
fn apache_in_front() {
    through(Kind::Apache);
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
}

/// The client address `whoami` reports for a request from `source` with
/// `X-Forwarded-For: 203.0.113.7`.
async fn claimed(srv: &Running, source: IpAddr) -> String {
    let mut ws = ws_from(
        source,
        srv.addr,
        "/demo_echo_Whoami",
        &[("X-Forwarded-For", "203.0.113.7")],
    )
    .await
    .unwrap();
    whoami(&mut ws).await
}

/// How many times `log` holds the untrusted-forwarder warning.
fn warnings(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("is not in `trusted_proxies`"))
        .count()
}

#[test]
fn by_default_loopback_is_trusted_and_nobody_else() {
    let dir = TempDir::new("proxy-default");
    let log = dir.join("ws-cli.log");
    let srv = Running::start_logged(dir.path(), &[], &log);
    rt().block_on(async {
        // A proxy on this host is believed.
        assert_eq!(claimed(&srv, v4(127, 0, 0, 1)).await, "203.0.113.7");
        assert_eq!(claimed(&srv, v4(127, 0, 0, 9)).await, "203.0.113.7");
        assert_eq!(warnings(&log), 0);
        // Anyone else's header is ignored, with one warning.
        match non_loopback_address() {
            Some(outside) => {
                for _ in 0..3 {
                    assert_eq!(claimed(&srv, outside).await, outside.to_string());
                }
                common::eventually(LIMIT, "the warning is logged", || async {
                    warnings(&log) > 0
                })
                .await;
                assert_eq!(warnings(&log), 1, "{}", tail(&log));
                let line = std::fs::read_to_string(&log).unwrap();
                assert!(line.contains(&outside.to_string()), "{line}");
            }
            None => eprintln!("no non-loopback address here: the configured case covers it"),
        }
    });
}

#[test]
fn an_untrusted_sender_cannot_choose_its_address_and_is_warned_about_once() {
    let dir = TempDir::new("proxy-untrusted");
    let config = dir.join("config.toml");
    // Loopback, but not the address the test sends from.
    std::fs::write(
        &config,
        "[server]\ntrusted_proxies = [\"127.0.0.2\"]\nmax_connections_per_address_per_second = 0\n",
    )
    .unwrap();
    let log = dir.join("ws-cli.log");
    let srv = Running::start_logged(dir.path(), &["--config", config.to_str().unwrap()], &log);
    rt().block_on(async {
        let me = v4(127, 0, 0, 1);
        for _ in 0..3 {
            assert_eq!(claimed(&srv, me).await, "127.0.0.1");
        }
        // The configured proxy is believed.
        assert_eq!(claimed(&srv, v4(127, 0, 0, 2)).await, "203.0.113.7");
        // The per-address limit counts the sender, whatever it claims.
        let me = v4(127, 0, 0, 5);
        let mut held = Vec::new();
        for i in 0..10 {
            let xff = format!("198.51.100.{i}");
            held.push(
                ws_from(me, srv.addr, "/echo", &[("X-Forwarded-For", &xff)])
                    .await
                    .unwrap(),
            );
        }
        let err = ws_from(me, srv.addr, "/echo", &[("Forwarded", "for=198.51.100.99")])
            .await
            .unwrap_err();
        assert!(
            err.starts_with("429") && err.contains("127.0.0.5/32"),
            "{err}"
        );
        drop(held);
        common::eventually(LIMIT, "the warning is logged", || async {
            warnings(&log) > 0
        })
        .await;
    });
    assert_eq!(warnings(&log), 1, "{}", tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("127.0.0.1") && text.contains("X-Forwarded-For"),
        "{text}"
    );

    // Per-address limits off: nothing to warn about.
    let quiet_dir = TempDir::new("proxy-quiet");
    let quiet_config = quiet_dir.join("config.toml");
    std::fs::write(
        &quiet_config,
        "[server]\ntrusted_proxies = []\nmax_connections_per_address = 0\n\
         max_connections_per_address_per_second = 0\n",
    )
    .unwrap();
    let quiet_log = quiet_dir.join("ws-cli.log");
    let quiet = Running::start_logged(
        quiet_dir.path(),
        &["--config", quiet_config.to_str().unwrap()],
        &quiet_log,
    );
    rt().block_on(async {
        assert_eq!(claimed(&quiet, v4(127, 0, 0, 1)).await, "127.0.0.1");
    });
    drop(quiet);
    assert_eq!(warnings(&quiet_log), 0, "{}", tail(&quiet_log));
}

/// Every `<!-- deploy/FILE -->` marker in `doc` is followed by a fenced
/// block holding exactly that file; the files found.
fn check_snippets(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let mut lines = text.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let Some(rel) = line
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
            .filter(|l| l.starts_with("deploy/"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{doc}: no code block after {line}"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let file = std::fs::read_to_string(root().join(rel)).unwrap();
        assert_eq!(
            block.join("\n"),
            file.trim_end(),
            "{doc} shows {rel} other than it is: copy the file into the doc"
        );
        found.push(rel.to_owned());
    }
    found
}

#[test]
fn docs_show_the_tested_files() {
    let shown = check_snippets("docs/deployment.md");
    for rel in [
        "deploy/nginx/ws-provider-upstream.conf",
        "deploy/nginx/ws-provider.conf",
        "deploy/apache/ws-provider.conf",
        "deploy/systemd/ws-provider.service",
    ] {
        assert!(
            shown.iter().any(|s| s == rel),
            "docs/deployment.md lacks {rel}"
        );
    }
    let readme = check_snippets("README.md");
    assert!(
        readme.iter().any(|s| s == "deploy/nginx/ws-provider.conf"),
        "README.md shows the nginx location"
    );
}
