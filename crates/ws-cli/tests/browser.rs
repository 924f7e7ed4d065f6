//! A real browser: headless Chromium loads a page from a web application on
//! this host, which set a session cookie; the page opens a WebSocket to the
//! `whoami` demo and reports what the server resolved from that cookie.
//!
//! The application is a tiny HTTP server in this test; the session is a
//! JWT (HS256) in the cookie `fe_session`, which the server resolves into
//! the `frontend.user` aspect. Chromium comes from Debian's `chromium`
//! package; under `CI=true` a missing browser is a failure.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ws_test_support::{ChildGuard, TempDir};

const SECRET: &str = "browser-test-secret-0123456789abcdef";

fn chromium() -> Option<PathBuf> {
    ws_test_support::find_in_path("chromium")
        .or_else(|| ws_test_support::find_in_path("chromium-browser"))
}

fn jwt() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({
        "sub": "4711", "name": "Erika Musterfrau", "groups": ["editors"], "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The web application: `/` sets the session cookie and serves the page;
/// `POST /report` hands the page's finding to the test.
fn serve_app(
    listener: TcpListener,
    ws_addr: SocketAddr,
    token: String,
    report: mpsc::Sender<String>,
) {
    let page = format!(
        r#"<!doctype html><html><body><pre id="out">waiting</pre><script>
const ws = new WebSocket("ws://{ws_addr}/demo_echo_Whoami");
ws.onopen = () => ws.send("who am i?");
ws.onmessage = (e) => {{
  document.getElementById("out").textContent = e.data;
  fetch("/report", {{ method: "POST", body: e.data }});
}};
ws.onerror = () => fetch("/report", {{ method: "POST", body: "websocket error" }});
</script></body></html>"#
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let answer = if line.starts_with("POST /report") {
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let _ = report.send(String::from_utf8_lossy(&body).into_owned());
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned()
            } else if line.starts_with("GET / ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Set-Cookie: fe_session={token}; Path=/; HttpOnly; SameSite=Lax\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = s.write_all(answer.as_bytes());
        }
    });
}

/// `ws-cli start` with the `frontend.user` aspect: an HS256 JWT in the
/// cookie `fe_session`, its secret in a key file.
fn start_server(dir: &TempDir) -> common::Running {
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let config = dir.join("ws.toml");
    std::fs::write(
        &config,
        format!(
            "[[aspect]]\nname = \"frontend.user\"\ncredential = {{ cookie = \"fe_session\" }}\n\
             [aspect.jwt]\nalgorithm = \"HS256\"\nkey_file = {:?}\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    common::Running::start(dir.path(), &["--config", config.to_str().unwrap()])
}

#[test]
fn chromium_session_cookie_becomes_the_aspect() {
    let Some(browser) =
        chromium().or_else(|| ws_test_support::skip_or_fail("chromium", "chromium"))
    else {
        return;
    };
    let dir = TempDir::new("browser");
    let server = start_server(&dir);
    let ws_addr = server.addr;

    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = app.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    serve_app(app, ws_addr, jwt(), tx);

    let profile = dir.join("profile");
    let _browser = ChildGuard::new(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("http://{app_addr}/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium"),
    );
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the page reports within 60 s");
    let v: serde_json::Value =
        serde_json::from_str(&report).unwrap_or_else(|_| panic!("the page reported {report:?}"));
    let user = &v["aspects"]["frontend.user"];
    assert_eq!(user["logged_in"], true, "{v}");
    assert_eq!(user["id"], "4711", "{v}");
    assert_eq!(user["username"], "Erika Musterfrau", "{v}");
    assert_eq!(user["groups"][0], "editors", "{v}");
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    drop(_browser);
    let _ = TcpStream::connect(app_addr);
    drop(server);
}
