//! `probe`: one connection, one text message, and the first data message
//! the server answers, printed as `{"reply": TEXT}`.
//!
//! Not a measurement: `cargo xtask bench` asks ws-provider's
//! `/demo_echo_Whoami` this way, with the cookie every scenario sends, to
//! check that the JWT aspect resolves before anything is measured (a token
//! the server does not accept would otherwise measure anonymous
//! connections without anybody noticing).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::conn::{self, Opened, Target};
use crate::wire::{self, FrameReader, OP_CLOSE, OP_TEXT};

/// Largest answer taken; a longer one is an error.
const MAX_REPLY: usize = 64 * 1024;

/// Opens one connection to `target`, sends `message` as text and returns
/// the first complete data message received within `limit`.
pub(crate) async fn run(target: &Target, message: &str, limit: Duration) -> Result<Value> {
    match tokio::time::timeout(limit, ask(target, message)).await {
        Ok(r) => r,
        Err(_) => bail!("no answer within {limit:?}"),
    }
}

async fn ask(target: &Target, message: &str) -> Result<Value> {
    let Opened { mut stream, rest } = conn::open(target, None)
        .await
        .map_err(|e| anyhow!("cannot open a connection: {e}"))?;
    stream
        .write_all(&wire::client_frame(OP_TEXT, message.as_bytes()))
        .await?;
    let mut reader = FrameReader::new(MAX_REPLY + 16, &rest);
    let mut reply = Vec::new();
    let mut in_message = false;
    loop {
        while let Some((h, payload)) = reader.next_frame() {
            if h.opcode == OP_CLOSE {
                let code = payload
                    .get(..2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]).to_string())
                    .unwrap_or_else(|| "none".to_owned());
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                bail!(
                    "the server closed the connection before answering (code {code}, {reason:?})"
                );
            }
            // Pings and pongs are not answers; text and binary are.
            if !h.is_data() || (h.opcode == 0 && !in_message) {
                continue;
            }
            if h.len > payload.len() || reply.len() + h.len > MAX_REPLY {
                bail!("the answer is over {MAX_REPLY} bytes");
            }
            in_message = true;
            reply.extend_from_slice(payload);
            if h.fin {
                let _ = stream.write_all(&wire::close_frame()).await;
                let text = String::from_utf8(reply)
                    .map_err(|_| anyhow!("the answer is not UTF-8 text"))?;
                return Ok(json!({ "reply": text }));
            }
        }
        if reader.fill(&mut stream).await? == 0 {
            bail!("the connection closed before an answer");
        }
    }
}
