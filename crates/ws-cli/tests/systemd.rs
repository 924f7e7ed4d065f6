//! systemd's `Type=notify` for real: the `ws-cli start` binary with
//! `NOTIFY_SOCKET` pointing at a unix datagram socket the test owns sends
//! `READY=1` once clients can connect and `STOPPING=1` when SIGTERM starts
//! the shutdown; a socket nobody listens on costs a warning, not the
//! server. And the unit file in `deploy/systemd/` passes
//! `systemd-analyze verify` (no unit is started).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Running, tail};
use nix::sys::signal::Signal;
use tokio_tungstenite::tungstenite::Message;
use ws_test_support::{TempDir, find_in_path, skip_or_fail};

const LIMIT: Duration = Duration::from_secs(10);

/// The next notification on `socket`, as its `KEY=value` lines.
fn next_notification(socket: &UnixDatagram) -> Vec<String> {
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {LIMIT:?}: {e}"));
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn echo(url: &str) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut ws = ws_tests::connect(url).await;
            ws_tests::send(&mut ws, Message::text("ready?")).await;
            assert_eq!(ws_tests::next_text(&mut ws).await, "ready?");
        });
}

#[test]
fn ready_once_listening_and_stopping_on_sigterm() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let env = format!("NOTIFY_SOCKET={}", path.display());
    let log = dir.join("ws-cli.log");
    let mut srv = Running::start_wrapped(dir.path(), &[], &log, &["env", &env]);

    let ready = next_notification(&socket);
    assert!(ready.iter().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=listening on {}", srv.addr)),
        "{ready:?}"
    );
    // Ready means ready: a client is served.
    echo(&srv.url("/echo"));

    srv.signal(Signal::SIGTERM);
    let stopping = next_notification(&socket);
    assert!(stopping.iter().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert_eq!(srv.wait(LIMIT), Some(0), "{}", tail(&log));
    // Nothing else was sent.
    socket.set_nonblocking(true).unwrap();
    assert!(
        socket.recv(&mut [0u8; 64]).is_err(),
        "an extra notification"
    );
}

#[test]
fn an_unreachable_notify_socket_is_a_warning_not_a_failure() {
    let dir = TempDir::new("notify-gone");
    let log = dir.join("ws-cli.log");
    let env = format!("NOTIFY_SOCKET={}", dir.join("nobody-here.sock").display());
    let mut srv = Running::start_wrapped(dir.path(), &[], &log, &["env", &env]);
    echo(&srv.url("/echo"));
    srv.signal(Signal::SIGTERM);
    assert_eq!(srv.wait(LIMIT), Some(0), "{}", tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("cannot notify the service manager (NOTIFY_SOCKET)")
            && text.contains("nobody-here.sock"),
        "{text}"
    );
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("deploy/systemd/ws-provider.service")).unwrap();
    for line in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=ws-provider",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    // No ExecReload= until the server can reload its configuration.
    assert!(!unit.lines().any(|l| l.starts_with("ExecReload=")));
    let Some(analyze) = find_in_path("systemd-analyze") else {
        let _: Option<()> = skip_or_fail("systemd-analyze", "systemd");
        return;
    };
    // The unit as installed, with the binary where this test has it.
    let dir = TempDir::new("unit");
    let documented = "/usr/local/bin/ws-cli";
    assert_eq!(
        unit.matches(documented).count(),
        2,
        "ExecStart and the comment"
    );
    let bin = common::bin();
    let local = unit.replace(documented, bin.to_str().unwrap());
    let path = dir.join("ws-provider.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings: none may show.
    assert!(
        out.status.success() && !stderr.contains("ws-provider.service"),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
