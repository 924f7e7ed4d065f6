//! Grouping client addresses into the keys per-address limits count by.
//!
//! One host usually owns a whole IPv6 /64 (SLAAC, privacy addresses), so
//! counting single IPv6 addresses would let it dodge every per-address limit by
//! picking a fresh address per connection. Addresses are therefore masked to a
//! prefix: IPv6 to /64 and IPv4 to /32 by default, both configurable. An
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports
//! for an IPv4 peer) is taken as the IPv4 address it carries.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::LimitError;

/// The default IPv4 prefix length: every IPv4 address is its own group.
pub const DEFAULT_IPV4_PREFIX_LEN: u8 = 32;
/// The default IPv6 prefix length: one group per /64.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// A grouped client address: a network address and its prefix length.
///
/// Displays in CIDR notation, e.g. `10.0.0.1/32` or `2001:db8::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressKey {
    network: IpAddr,
    prefix_len: u8,
}

impl AddressKey {
    /// The network address (host bits zero). IPv4-mapped IPv6 addresses appear
    /// as IPv4.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length the address was grouped by.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Groups `addr` by `v4_len` bits if it is IPv4 (or IPv4-mapped IPv6) and by
/// `v6_len` bits otherwise.
///
/// Lengths above 32 and 128 are taken as 32 and 128; use
/// [`AddressGrouping::new`] to have them rejected instead. A length of 0 puts
/// every address of that family in one group.
///
/// ```
/// use std::net::IpAddr;
/// use ws_ratelimit::address_key;
///
/// let a: IpAddr = "2001:db8::1".parse().unwrap();
/// let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
/// assert_eq!(address_key(a, 32, 64), address_key(b, 32, 64));
/// assert_eq!(address_key(a, 32, 64).to_string(), "2001:db8::/64");
///
/// let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
/// assert_eq!(address_key(mapped, 32, 64).to_string(), "10.0.0.1/32");
/// ```
pub fn address_key(addr: IpAddr, v4_len: u8, v6_len: u8) -> AddressKey {
    let v4_len = v4_len.min(32);
    let v6_len = v6_len.min(128);
    match addr {
        IpAddr::V4(v4) => v4_key(v4, v4_len),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_key(v4, v4_len),
            None => {
                let mask = u128::MAX.checked_shl(128 - u32::from(v6_len)).unwrap_or(0);
                AddressKey {
                    network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix_len: v6_len,
                }
            }
        },
    }
}

fn v4_key(addr: Ipv4Addr, len: u8) -> AddressKey {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    AddressKey {
        network: IpAddr::V4(Ipv4Addr::from(u32::from(addr) & mask)),
        prefix_len: len,
    }
}

/// Validated prefix lengths for grouping addresses (default /32 and /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressGrouping {
    ipv4_prefix_len: u8,
    ipv6_prefix_len: u8,
}

impl AddressGrouping {
    /// Groups IPv4 addresses by `ipv4_prefix_len` bits (0..=32) and IPv6 ones
    /// by `ipv6_prefix_len` bits (0..=128).
    pub fn new(ipv4_prefix_len: u8, ipv6_prefix_len: u8) -> Result<Self, LimitError> {
        if ipv4_prefix_len > 32 {
            return Err(LimitError::Ipv4PrefixLen(ipv4_prefix_len));
        }
        if ipv6_prefix_len > 128 {
            return Err(LimitError::Ipv6PrefixLen(ipv6_prefix_len));
        }
        Ok(Self {
            ipv4_prefix_len,
            ipv6_prefix_len,
        })
    }

    /// The group `addr` belongs to.
    pub fn key(&self, addr: IpAddr) -> AddressKey {
        address_key(addr, self.ipv4_prefix_len, self.ipv6_prefix_len)
    }

    /// The IPv4 prefix length.
    pub fn ipv4_prefix_len(&self) -> u8 {
        self.ipv4_prefix_len
    }

    /// The IPv6 prefix length.
    pub fn ipv6_prefix_len(&self) -> u8 {
        self.ipv6_prefix_len
    }
}

impl Default for AddressGrouping {
    fn default() -> Self {
        Self {
            ipv4_prefix_len: DEFAULT_IPV4_PREFIX_LEN,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(s: &str, v4: u8, v6: u8) -> String {
        address_key(ip(s), v4, v6).to_string()
    }

    #[test]
    fn ipv4_prefixes() {
        assert_eq!(key("10.1.2.3", 32, 64), "10.1.2.3/32");
        assert_eq!(key("10.1.2.3", 24, 64), "10.1.2.0/24");
        assert_eq!(key("10.1.2.3", 8, 64), "10.0.0.0/8");
        assert_eq!(key("10.1.2.3", 0, 64), "0.0.0.0/0");
        assert_eq!(key("10.1.2.3", 200, 64), "10.1.2.3/32", "clamped");
    }

    #[test]
    fn ipv6_prefixes() {
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 32, 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 32, 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 32, 56), "2001:db8:1::/56");
        assert_eq!(key("2001:db8:1:2ff:3:4:5:6", 32, 56), "2001:db8:1:200::/56");
        assert_eq!(
            key("2001:db8:1:2:3:4:5:6", 32, 128),
            "2001:db8:1:2:3:4:5:6/128"
        );
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 32, 0), "::/0");
        assert_eq!(key("2001:db8::1", 32, 255), "2001:db8::1/128", "clamped");
    }

    #[test]
    fn same_slash_64_same_key() {
        let a = address_key(ip("2001:db8::1"), 32, 64);
        let b = address_key(ip("2001:db8::abcd:1"), 32, 64);
        let c = address_key(ip("2001:db8:0:1::1"), 32, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.network(), ip("2001:db8::"));
        assert_eq!(a.prefix_len(), 64);
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped = address_key(ip("::ffff:192.0.2.7"), 32, 64);
        assert_eq!(mapped, address_key(ip("192.0.2.7"), 32, 64));
        assert_eq!(mapped.network(), ip("192.0.2.7"));
        assert_eq!(key("::ffff:192.0.2.7", 24, 64), "192.0.2.0/24");
        // The deprecated IPv4-compatible form is plain IPv6.
        assert_eq!(key("::192.0.2.7", 32, 64), "::/64");
    }

    #[test]
    fn grouping_validates() {
        assert_eq!(
            AddressGrouping::new(33, 64),
            Err(LimitError::Ipv4PrefixLen(33))
        );
        assert_eq!(
            AddressGrouping::new(32, 129),
            Err(LimitError::Ipv6PrefixLen(129))
        );
        let g = AddressGrouping::new(0, 128).unwrap();
        assert_eq!((g.ipv4_prefix_len(), g.ipv6_prefix_len()), (0, 128));
        let d = AddressGrouping::default();
        assert_eq!((d.ipv4_prefix_len(), d.ipv6_prefix_len()), (32, 64));
        assert_eq!(d.key(ip("2001:db8::9")).to_string(), "2001:db8::/64");
    }
}
