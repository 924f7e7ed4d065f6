//! Server ids and connection addresses that are unique across servers.
//!
//! A [`ConnectionId`] is unique within one process only; with a broker a
//! connection is addressed as `<server>/<id>` ([`ConnectionAddr`]), where
//! `<server>` is the 32-hex-digit [`ServerId`] drawn at random when the
//! broker starts.

use std::fmt;
use std::str::FromStr;

use ws_core::ConnectionId;

use crate::error::{AddrParseError, BrokerError};

/// The id of one server process: 128 random bits, written as 32 lower-case
/// hex digits. A restarted server has a new id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId([u8; 16]);

impl ServerId {
    /// A fresh random id.
    ///
    /// # Errors
    /// [`BrokerError::Random`] when the operating system has no randomness.
    pub fn random() -> Result<Self, BrokerError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| BrokerError::Random(e.to_string()))?;
        Ok(Self(b))
    }

    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerId({self})")
    }
}

impl FromStr for ServerId {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddrParseError::new(s, "a server id (32 hex digits)");
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

/// A connection on any server: `<server>/<id>`, as in
/// [`Member::connection`](ws_core::Member::connection) with the Redis
/// broker. Send to it with [`RedisHub::send_to`](crate::RedisHub::send_to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionAddr {
    /// The server holding the connection.
    pub server: ServerId,
    /// The connection's id on that server ([`ConnectionId::get`]).
    pub id: u64,
}

impl ConnectionAddr {
    /// The address of connection `id` on `server`.
    pub fn new(server: ServerId, id: ConnectionId) -> Self {
        Self {
            server,
            id: id.get(),
        }
    }
}

impl fmt::Display for ConnectionAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.id)
    }
}

impl FromStr for ConnectionAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddrParseError::new(s, "a connection address `<server id>/<number>`");
        let (server, id) = s.split_once('/').ok_or_else(err)?;
        let server = server.parse().map_err(|_| err())?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let id = id.parse().map_err(|_| err())?;
        Ok(Self { server, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse() {
        let a = ServerId::random().unwrap();
        let b = ServerId::random().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<ServerId>().unwrap(), a);
        assert!("xyz".parse::<ServerId>().is_err());
        assert!("0".repeat(31).parse::<ServerId>().is_err());
        assert!(format!("{}g", "0".repeat(31)).parse::<ServerId>().is_err());

        let addr = ConnectionAddr { server: a, id: 42 };
        let text = addr.to_string();
        assert_eq!(text, format!("{a}/42"));
        assert_eq!(text.parse::<ConnectionAddr>().unwrap(), addr);
        for bad in [
            "42",
            "/42",
            &format!("{a}/"),
            &format!("{a}/-1"),
            &format!("{a}/+1"),
        ] {
            let e = bad.parse::<ConnectionAddr>().unwrap_err();
            assert!(e.to_string().contains("connection address"), "{e}");
        }
    }
}
