//! Entry points for the fuzz targets in `fuzz/` (`cargo xtask fuzz`): the
//! bus envelope, private to this crate, reached through the smallest
//! wrapper that lets a target call it.
//!
//! **Not for users**: hidden from the docs, no stability promise; the hub
//! itself never calls anything here.

use ws_core::{Bytes, Message};

use crate::id::ServerId;

/// A decoded envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope(crate::envelope::Envelope);

impl Envelope {
    /// The origin server.
    pub fn origin(&self) -> ServerId {
        self.0.origin
    }

    /// The origin's sequence number.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// The message carried.
    pub fn msg(&self) -> &Message {
        &self.0.msg
    }

    /// The envelope written again.
    ///
    /// # Errors
    /// A target name too long for an envelope.
    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        let e = &self.0;
        let mut out = Vec::new();
        crate::envelope::write(&mut out, &e.origin, e.seq, &e.route, &e.msg)?;
        Ok(out)
    }

    /// The size [`Envelope::encode`] writes, as the hub reserves it.
    pub fn encoded_len(&self) -> usize {
        crate::envelope::encoded_len(&self.0.route, &self.0.msg)
    }
}

/// Reads an envelope from the bus.
///
/// # Errors
/// Why it is refused.
pub fn decode(buf: Bytes) -> Result<Envelope, String> {
    crate::envelope::decode(buf)
        .map(Envelope)
        .map_err(|e| e.to_string())
}
