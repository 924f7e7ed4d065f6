//! [`Server::serve`]: the accept loop, SIGHUP reloads and the graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use ws_core::__runtime;

use super::Server;
use super::connection::handle_tcp;
use crate::accept;
use crate::tasks;

impl Server {
    /// Serves connections from `listener` until `shutdown` completes, then
    /// shuts down gracefully: stops accepting, stops the components' timers
    /// and tasks, closes every connection with 1001, and waits up to
    /// `shutdown_timeout` for clients to answer.
    ///
    /// With TLS, SIGHUP reloads the certificate ([`reload_tls`](Self::reload_tls));
    /// the handler is installed before the first connection is accepted.
    ///
    /// # Errors
    /// Only when a signal handler cannot be installed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let shared = &self.shared;
        let mut work = Vec::new();
        for m in &shared.mounted {
            let mut ctx = __runtime::context(&m.info.path, self.shared.hub.clone());
            Arc::clone(&m.component).configure(&mut ctx);
            work.extend(
                __runtime::into_tasks(ctx)
                    .into_iter()
                    .map(|t| (m.info.component.clone(), t)),
            );
        }
        let mut background = tasks::start(work)?;
        if shared.tls.is_some() {
            background.spawn(reload_on_hangup(self.clone(), hangup()?));
        }
        tokio::pin!(shutdown);
        // Out of file descriptors and the like: back off (no busy loop),
        // keep serving the open connections, log once per episode.
        let mut failures = accept::Failures::new("WebSocket");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        failures.accepted();
                        let shared = Arc::clone(&self.shared);
                        let pipeline = Arc::clone(&self.pipeline);
                        self.shared.tracker.spawn(handle_tcp(shared, pipeline, stream, peer));
                    }
                    Err(e) => if failures.failed(&e) == accept::Next::BackOff {
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(accept::BACKOFF) => {}
                        }
                    },
                },
            }
        }
        drop(listener);
        tracing::info!(
            open = self.open_connections(),
            "shutting down: closing connections with 1001"
        );
        background.abort_all();
        while background.join_next().await.is_some() {}
        shared.sessions.close_all();
        shared.tracker.close();
        // Sessions bound their own close handshake by shutdown_timeout; the
        // margin covers handshakes in flight and on_close hooks.
        let limit = shared.config.shutdown_timeout
            + shared.config.handshake_timeout.min(Duration::from_secs(2));
        if tokio::time::timeout(limit, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.open_connections(),
                "connections still open after the shutdown timeout"
            );
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

fn hangup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Reloads the certificate on every SIGHUP until aborted at shutdown.
async fn reload_on_hangup(server: Server, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        let s = server.clone();
        match tokio::task::spawn_blocking(move || s.reload_tls()).await {
            Ok(Ok(())) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed, keeping the certificate in use");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload task failed"),
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
