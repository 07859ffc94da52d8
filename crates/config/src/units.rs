//! Human-readable durations (`200ms`, `10s`, `1m30s`) and sizes (`16MiB`, `512KB`, `1024`)
//! for config fields.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A duration written like `200ms`, `10s`, `5m`, `1h`, `1m30s` (units: ns, us, ms, s, m, h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// A size in bytes written like `16MiB`, `512KiB`, `1GB`, `100B` or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "invalid duration {s:?}: expected a number and a unit, like 200ms, 10s, 5m or 1h"
            )
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_end == 0 {
                return Err(err());
            }
            let value: f64 = rest[..num_end].parse().map_err(|_| err())?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let nanos_per = match &rest[..unit_end] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(err()),
            };
            rest = &rest[unit_end..];
            total += std::time::Duration::from_nanos((value * nanos_per) as u64);
        }
        Ok(Duration(total))
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "invalid size {s:?}: expected a number of bytes or a number and a unit, like 16MiB, 512KiB or 1GB"
            )
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        if split == 0 {
            return Err(err());
        }
        let value: f64 = t[..split].parse().map_err(|_| err())?;
        let mult: f64 = match t[split..].trim() {
            "" | "B" => 1.0,
            "KiB" | "Ki" => 1024.0,
            "MiB" | "Mi" => 1024.0 * 1024.0,
            "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
            "KB" | "kB" | "K" | "k" => 1e3,
            "MB" | "M" => 1e6,
            "GB" | "G" => 1e9,
            _ => return Err(err()),
        };
        Ok(ByteSize((value * mult) as u64))
    }
}

/// Accepts a string, or a bare non-negative integer meaning seconds (durations) or bytes
/// (sizes). A visitor rather than an untagged enum, so that a wrong type says what was
/// expected instead of "did not match any variant".
struct UnitVisitor<T> {
    expecting: &'static str,
    from_int: fn(u64) -> T,
}

impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.from_int)(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => Ok((self.from_int)(v)),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            expecting: "a duration like 200ms, 10s or 5m",
            from_int: Duration::from_secs,
        })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            expecting: "a size like 16MiB or 512KiB, or a number of bytes",
            from_int: ByteSize,
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(
            "200ms".parse::<Duration>().unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!("10s".parse::<Duration>().unwrap(), Duration::from_secs(10));
        assert_eq!(
            "1m30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
        assert!("10".parse::<Duration>().is_err());
        assert!("10x".parse::<Duration>().is_err());
        assert_eq!("16MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(16));
        assert_eq!("1KB".parse::<ByteSize>().unwrap(), ByteSize(1000));
        assert_eq!("100".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert!("16 furlongs".parse::<ByteSize>().is_err());
    }

    #[test]
    fn deserializes_strings_and_integers_and_names_the_expected_form() {
        let d: Duration = serde_yaml::from_str("10s").unwrap();
        assert_eq!(d, Duration::from_secs(10));
        let d: Duration = serde_yaml::from_str("3").unwrap();
        assert_eq!(d, Duration::from_secs(3));
        let b: ByteSize = serde_yaml::from_str("16MiB").unwrap();
        assert_eq!(b, ByteSize::mib(16));
        let e = serde_yaml::from_str::<Duration>("[1]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid type: sequence, expected a duration like 200ms, 10s or 5m"),
            "{e}"
        );
        let e = serde_yaml::from_str::<ByteSize>("-1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid value: integer `-1`, expected a size like 16MiB"),
            "{e}"
        );
    }
}
