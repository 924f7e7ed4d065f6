//! Pipelined echo: `conns` connections each keep `window` messages of
//! `size` bytes in flight. Every reply read is answered by as many new
//! messages, written together in one `write` from a buffer encoded up front,
//! so the client spends a few nanoseconds per message and the server is the
//! bottleneck. Reported: echoed messages per second and the server's CPU
//! time per echoed message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use crate::common::{Errors, Phase, Server, Window, open_many};
use crate::conn::{Opened, Target};
use crate::wire::{self, FrameReader, OP_BINARY, OP_CLOSE, OP_TEXT};

/// Parameters of a pipelined echo run.
#[derive(Clone, Debug)]
pub(crate) struct EchoParams {
    /// Connections.
    pub(crate) conns: usize,
    /// Messages in flight per connection.
    pub(crate) window: usize,
    /// Payload bytes per message.
    pub(crate) size: usize,
    /// Text frames (the payload is ASCII) instead of binary ones.
    pub(crate) text: bool,
    /// Loopback source addresses to spread connections over.
    pub(crate) sources: usize,
    /// Time before measuring.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// The server, for its CPU time.
    pub(crate) server: Server,
}

/// Runs the scenario against `target`.
pub(crate) async fn run(target: Arc<Target>, p: EchoParams) -> Result<Value> {
    let conns = open_many(&target, p.conns, p.sources, 1, 64)
        .await
        .map_err(|(n, e)| anyhow!("opening connection {} failed: {e}", n + 1))?;
    let frame = wire::client_frame(
        if p.text { OP_TEXT } else { OP_BINARY },
        &wire::payload(p.size),
    );
    let batch: Arc<[u8]> = frame.repeat(p.window).into();
    let frame_len = frame.len();
    let phase = Arc::new(Phase::default());
    let echoed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let mut tasks = JoinSet::new();
    for c in conns {
        tasks.spawn(connection(
            c,
            Arc::clone(&batch),
            frame_len,
            p.size,
            Arc::clone(&phase),
            Arc::clone(&echoed),
            Arc::clone(&errors),
        ));
    }
    let w = Window::run(&phase, &echoed, p.warmup, p.duration, p.server).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut out = w.json();
    out.insert("errors".into(), errors.count().into());
    out.insert("first_error".into(), json!(errors.first()));
    out.insert(
        "params".into(),
        json!({"conns": p.conns, "window": p.window, "size": p.size, "text": p.text}),
    );
    Ok(Value::Object(out))
}

async fn connection(
    c: Opened,
    batch: Arc<[u8]>,
    frame_len: usize,
    size: usize,
    phase: Arc<Phase>,
    echoed: Arc<AtomicU64>,
    errors: Arc<Errors>,
) {
    let Opened { mut stream, rest } = c;
    let mut reader = FrameReader::new((4 * (size + 14)).max(64 * 1024), &rest);
    if let Err(e) = stream.write_all(&batch).await {
        errors.record(e);
        return;
    }
    while !phase.stopped() {
        match reader.fill(&mut stream).await {
            Ok(0) => {
                errors.record("server closed the connection");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                errors.record(e);
                return;
            }
        }
        let mut got = 0usize;
        while let Some((h, _)) = reader.next_frame() {
            if h.is_data() && h.fin {
                if h.len != size {
                    errors.record(format!("echo of {} bytes, sent {size}", h.len));
                }
                got += 1;
            } else if h.opcode == OP_CLOSE {
                errors.record("server sent a close frame");
                return;
            }
        }
        if got > 0 {
            echoed.fetch_add(got as u64, Ordering::Relaxed);
            let n = got.min(batch.len() / frame_len);
            if let Err(e) = stream.write_all(&batch[..n * frame_len]).await {
                errors.record(e);
                return;
            }
        }
    }
}
