//! Idle connections: opens `conns` WebSocket connections, spread over
//! loopback source addresses, prints `{"ready": N, ...}` on one line, then
//! holds them without sending anything until standard input closes (or
//! `hold_max` passes), and exits. The caller measures the server's memory
//! while they are held; several of these processes can run side by side
//! (each with its own `base` address) when one process's file limit is too
//! small for the number wanted.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde_json::json;

use crate::common::open_many;
use crate::conn::Target;

/// Parameters of an idle run.
#[derive(Clone, Debug)]
pub(crate) struct IdleParams {
    /// Connections to open and hold.
    pub(crate) conns: usize,
    /// Loopback source addresses to spread them over.
    pub(crate) sources: usize,
    /// Index of the first source address (127.0.0.(base+1)).
    pub(crate) base: usize,
    /// Handshakes at once while opening.
    pub(crate) concurrency: usize,
    /// Longest time to hold them.
    pub(crate) hold_max: Duration,
}

/// Runs the scenario against `target`.
pub(crate) async fn run(target: Arc<Target>, p: IdleParams) -> Result<()> {
    let t0 = Instant::now();
    let conns = open_many(&target, p.conns, p.sources, p.base, p.concurrency)
        .await
        .map_err(|(n, e)| anyhow!("opening connection {} failed: {e}", n + 1))?;
    let opening = t0.elapsed().as_secs_f64();
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            json!({"ready": conns.len(), "opening_secs": opening})
        )?;
        out.flush()?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = tokio::time::timeout(p.hold_max, rx).await;
    drop(conns);
    Ok(())
}
