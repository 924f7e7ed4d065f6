//! Value forms shared by every section of the ws-provider configuration
//! file, so that each is written, parsed and explained once: durations as
//! human-readable strings (`"10s"`, `"500ms"`, `"1m 30s"`, `"0"`).
//!
//! A leaf crate (serde and humantime only), so the crates that own a section
//! (`ws-runtime`, `ws-auth`, `ws-broker`) and the command line share it
//! without depending on each other. Use the modules with serde's `with`:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Section {
//!     #[serde(with = "ws_config::duration")]
//!     timeout: Duration,
//!     #[serde(with = "ws_config::optional_duration", default)]
//!     every: Option<Duration>,
//! }
//!
//! let s: Section = toml::from_str("timeout = \"1m 30s\"\nevery = \"0s\"").unwrap();
//! assert_eq!(s.timeout, Duration::from_secs(90));
//! assert_eq!(s.every, None);
//! ```

use std::time::Duration;

/// Parses a duration written like `"10s"`, `"500ms"`, `"2m"` or `"0"`.
///
/// # Errors
/// A message quoting the text and showing how to write a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write it like \"10s\", \"500ms\" or \"2m\"")
    })
}

/// Writes a duration the way [`parse_duration`] reads it (`"1m 30s"`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A [`Duration`] as a human-readable string, for `#[serde(with = "…")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `d` like `"1m 30s"`.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a duration like `"10s"`.
    ///
    /// # Errors
    /// Not a string, or not a duration (the message quotes it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An optional [`Duration`] where zero (`"0s"`) means none, for
/// `#[serde(with = "…")]` (with `default` for an absent key).
pub mod optional_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Writes `d` like `"30s"`; none as `"0s"`.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        super::duration::serialize(&d.unwrap_or_default(), s)
    }

    /// Reads a duration like `"30s"`; zero is none.
    ///
    /// # Errors
    /// Not a string, or not a duration (the message quotes it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let d = super::duration::deserialize(d)?;
        Ok(Some(d).filter(|d| !d.is_zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_alike() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        let d = Duration::from_secs(90);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        let e = parse_duration("soon").unwrap_err();
        assert!(e.contains("`soon`") && e.contains("not a duration"), "{e}");
    }
}
