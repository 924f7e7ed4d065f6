//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), through the
//! `sd-notify` crate: `ws-cli start` tells the service manager `READY=1`
//! once it listens and `STOPPING=1` when a stop signal starts the shutdown,
//! each with a `STATUS=` line for `systemctl status`.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd, or
//! by a unit of another `Type=`) nothing is sent. A socket that cannot be
//! reached is logged as a warning and the server goes on serving: systemd
//! then gives up on the unit after `TimeoutStartSec=`, which is what the
//! operator should see, not a server that refuses to run.
//!
//! Reload (`RELOADING=1` with `MONOTONIC_USEC=`, then `READY=1` again, for
//! `Type=notify-reload`) belongs here once the server can reload its
//! configuration: it cannot yet (SIGHUP only reloads the TLS certificate),
//! so the unit file in `deploy/systemd/` has no `ExecReload=`.

use std::net::SocketAddr;

use sd_notify::NotifyState;

/// `READY=1`: the server listens on `addr` and accepts connections.
pub(crate) fn ready(addr: SocketAddr) {
    let status = format!("listening on {addr}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// `STOPPING=1`: a stop signal came; open connections are being closed.
pub(crate) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: closing connections with 1001"),
    ]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
        tracing::warn!(
            error = %e,
            notify_socket = %socket.to_string_lossy(),
            "cannot notify the service manager (NOTIFY_SOCKET)"
        );
    }
}
