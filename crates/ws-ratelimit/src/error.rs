//! Configuration errors.

use std::fmt;

/// A limiter configuration that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// `ipv4_prefix_len` is above 32.
    Ipv4PrefixLen(u8),
    /// `ipv6_prefix_len` is above 128.
    Ipv6PrefixLen(u8),
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4PrefixLen(len) => {
                write!(f, "ipv4_prefix_len must be between 0 and 32, got {len}")
            }
            Self::Ipv6PrefixLen(len) => {
                write!(f, "ipv6_prefix_len must be between 0 and 128, got {len}")
            }
        }
    }
}

impl std::error::Error for LimitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_config_key() {
        assert_eq!(
            LimitError::Ipv4PrefixLen(33).to_string(),
            "ipv4_prefix_len must be between 0 and 32, got 33"
        );
        assert_eq!(
            LimitError::Ipv6PrefixLen(200).to_string(),
            "ipv6_prefix_len must be between 0 and 128, got 200"
        );
    }
}
