//! Value forms shared by every section of the ws-provider configuration
//! file, so that each is written, parsed and explained once: durations as
//! human-readable strings (`"10s"`, `"500ms"`, `"1m 30s"`, `"0"`), and sizes
//! written in KiB or MiB (`max_message_size_in_kb = 64`) but kept in bytes.
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

/// A size written in KiB (a `u32`), kept in bytes, for
/// `#[serde(with = "…")]`. Written back in whole KiB.
pub mod kib {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `bytes` in whole KiB.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(bytes: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64((*bytes / 1024) as u64)
    }

    /// Reads KiB, as bytes.
    ///
    /// # Errors
    /// Not a number from 0 to 2^32 - 1.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        Ok(u32::deserialize(d)? as usize * 1024)
    }
}

/// An optional size in KiB, kept in bytes (see [`kib`]); with `default`
/// for an absent key.
pub mod optional_kib {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `bytes` in whole KiB, or nothing.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(bytes: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::kib::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    /// Reads KiB, as bytes.
    ///
    /// # Errors
    /// Not a number from 0 to 2^32 - 1.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        Ok(Option::<u32>::deserialize(d)?.map(|k| k as usize * 1024))
    }
}

/// A size written in MiB (a `u32`), kept in bytes, for
/// `#[serde(with = "…")]`. Written back in whole MiB.
pub mod mib {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `bytes` in whole MiB.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(bytes: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64((*bytes >> 20) as u64)
    }

    /// Reads MiB, as bytes.
    ///
    /// # Errors
    /// Not a number from 0 to 2^32 - 1.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        Ok((u32::deserialize(d)? as usize) << 20)
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

    #[test]
    fn sizes_are_read_in_their_unit_and_kept_in_bytes() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct Sizes {
            #[serde(with = "kib")]
            a: usize,
            #[serde(with = "mib")]
            b: usize,
            #[serde(with = "optional_kib", default)]
            c: Option<usize>,
        }
        let s: Sizes = toml::from_str("a = 2\nb = 3\n").unwrap();
        assert_eq!(
            s,
            Sizes {
                a: 2048,
                b: 3 << 20,
                c: None
            }
        );
        let again: Sizes = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(toml::from_str::<Sizes>("a = -1\nb = 1\n").is_err());
    }
}
