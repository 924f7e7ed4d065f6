//! Why a connection was refused, and when to try again.

use std::fmt;
use std::time::Duration;

use crate::address::AddressKey;

/// Which connection limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `max_connections`: open connections, all addresses together.
    MaxConnections,
    /// `max_connections_per_address`: open connections from one address group.
    PerAddress,
    /// `max_connections_per_address_per_second`: new connections from one
    /// address group per second.
    PerAddressPerSecond,
}

impl Limit {
    /// The configuration key that sets this limit.
    pub fn config_key(&self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::PerAddress => "max_connections_per_address",
            Self::PerAddressPerSecond => "max_connections_per_address_per_second",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_key())
    }
}

/// A connection refused before the upgrade; the server answers it with
/// `429 Too Many Requests` and `Retry-After` ([`Refusal::retry_after_secs`]).
///
/// Displays as e.g. `too many connections from 10.0.0.1/32
/// (max_connections_per_address = 10)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused.
    pub limit: Limit,
    /// How long until trying again can succeed.
    ///
    /// For [`Limit::PerAddressPerSecond`] this is exact: the time until the
    /// address's next conforming instant. For the count limits it is a flat
    /// 1 s, since no one can know when another connection will close.
    pub retry_after: Duration,
    /// The client's grouped address.
    pub address: AddressKey,
    /// The configured value of the limit.
    pub max: u32,
}

impl Refusal {
    /// [`Refusal::retry_after`] in whole seconds, rounded up and at least 1:
    /// the value of the `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Limit::MaxConnections => f.write_str("too many connections")?,
            Limit::PerAddress => write!(f, "too many connections from {}", self.address)?,
            Limit::PerAddressPerSecond => {
                write!(f, "too many new connections from {}", self.address)?;
            }
        }
        write!(f, " ({} = {})", self.limit.config_key(), self.max)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::address_key;

    fn refusal(limit: Limit, retry_after: Duration) -> Refusal {
        Refusal {
            limit,
            retry_after,
            address: address_key("10.0.0.1".parse().unwrap(), 32, 64),
            max: 10,
        }
    }

    #[test]
    fn display() {
        let d = Duration::from_secs(1);
        assert_eq!(
            refusal(Limit::PerAddress, d).to_string(),
            "too many connections from 10.0.0.1/32 (max_connections_per_address = 10)"
        );
        assert_eq!(
            refusal(Limit::MaxConnections, d).to_string(),
            "too many connections (max_connections = 10)"
        );
        assert_eq!(
            refusal(Limit::PerAddressPerSecond, d).to_string(),
            "too many new connections from 10.0.0.1/32 \
             (max_connections_per_address_per_second = 10)"
        );
        assert_eq!(
            Limit::PerAddressPerSecond.to_string(),
            "max_connections_per_address_per_second"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        let secs = |d| refusal(Limit::PerAddressPerSecond, d).retry_after_secs();
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_nanos(1)), 1);
        assert_eq!(secs(Duration::from_millis(100)), 1);
        assert_eq!(secs(Duration::from_secs(1)), 1);
        assert_eq!(secs(Duration::from_millis(1001)), 2);
        assert_eq!(secs(Duration::from_secs(3)), 3);
    }
}
