//! Kubernetes resource quantities: CPU in millicores, memory in bytes.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: Millicores,
    pub memory: Bytes,
}

/// CPU in thousandths of a core (`500m` = half a core, `2` = 2000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Millicores(u64);

/// Memory in bytes (`256Mi`, `1Gi`, `512M`, plain bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Bytes(u64);

/// A quantity that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity")]
pub struct QuantityError(String);

const MI: u64 = 1024 * 1024;

impl Millicores {
    pub const fn new(m: u64) -> Self {
        Self(m)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn parse(raw: &str) -> Result<Self, QuantityError> {
        let raw = raw.trim();
        let bad = || QuantityError(raw.to_string());
        if let Some(m) = raw.strip_suffix('m') {
            return m.parse::<u64>().map(Self).map_err(|_| bad());
        }
        // metrics.k8s.io reports nano- and microcores.
        for (suffix, per_milli) in [('n', 1_000_000u64), ('u', 1_000)] {
            if let Some(v) = raw.strip_suffix(suffix) {
                return v
                    .parse::<u64>()
                    .map(|v| Self(v.div_ceil(per_milli)))
                    .map_err(|_| bad());
            }
        }
        let cores: f64 = raw.parse().map_err(|_| bad())?;
        if !cores.is_finite() || cores < 0.0 {
            return Err(bad());
        }
        Ok(Self((cores * 1000.0).ceil() as u64))
    }
}

impl fmt::Display for Millicores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl TryFrom<String> for Millicores {
    type Error = QuantityError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}

impl From<Millicores> for String {
    fn from(v: Millicores) -> Self {
        v.to_string()
    }
}

impl Bytes {
    pub const fn new(b: u64) -> Self {
        Self(b)
    }

    pub const fn mib(m: u64) -> Self {
        Self(m * MI)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn parse(raw: &str) -> Result<Self, QuantityError> {
        let raw = raw.trim();
        let bad = || QuantityError(raw.to_string());
        let units: [(&str, u64); 8] = [
            ("Ki", 1024),
            ("Mi", MI),
            ("Gi", 1024 * MI),
            ("Ti", 1024 * 1024 * MI),
            ("k", 1000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
        ];
        for (suffix, mult) in units {
            if let Some(n) = raw.strip_suffix(suffix) {
                let v: f64 = n.parse().map_err(|_| bad())?;
                if !v.is_finite() || v < 0.0 {
                    return Err(bad());
                }
                return Ok(Self((v * mult as f64).ceil() as u64));
            }
        }
        raw.parse::<u64>().map(Self).map_err(|_| bad())
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gi = 1024 * MI;
        if self.0.is_multiple_of(gi) && self.0 > 0 {
            write!(f, "{}Gi", self.0 / gi)
        } else if self.0.is_multiple_of(MI) {
            write!(f, "{}Mi", self.0 / MI)
        } else {
            // Round up to whole MiB: requests are not worth finer grain.
            write!(f, "{}Mi", self.0.div_ceil(MI))
        }
    }
}

impl TryFrom<String> for Bytes {
    type Error = QuantityError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}

impl From<Bytes> for String {
    fn from(v: Bytes) -> Self {
        v.to_string()
    }
}

/// A quantity read from text (`500m`, `1Gi`) or from a bare number (cores for CPU,
/// bytes for memory), as Kubernetes accepts both.
trait Quantity: Sized {
    const WHAT: &'static str;
    fn parse_text(raw: &str) -> Result<Self, QuantityError>;
    fn from_number(n: f64) -> Option<Self>;
}

impl Quantity for Millicores {
    const WHAT: &'static str = "a CPU quantity such as 500m or 2";
    fn parse_text(raw: &str) -> Result<Self, QuantityError> {
        Self::parse(raw)
    }
    fn from_number(cores: f64) -> Option<Self> {
        (cores.is_finite() && cores >= 0.0).then(|| Self((cores * 1000.0).ceil() as u64))
    }
}

impl Quantity for Bytes {
    const WHAT: &'static str = "a memory quantity such as 512Mi or 1Gi";
    fn parse_text(raw: &str) -> Result<Self, QuantityError> {
        Self::parse(raw)
    }
    fn from_number(bytes: f64) -> Option<Self> {
        (bytes.is_finite() && bytes >= 0.0).then(|| Self(bytes.ceil() as u64))
    }
}

struct QuantityVisitor<T>(PhantomData<T>);

impl<T: Quantity> serde::de::Visitor<'_> for QuantityVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::WHAT)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        T::parse_text(v).map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        T::from_number(v).ok_or_else(|| E::custom(format!("{v} is not {}", T::WHAT)))
    }
}

impl<'de> Deserialize<'de> for Millicores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_and_print_as_kubernetes_does() {
        assert_eq!(Millicores::parse("500m").unwrap().get(), 500);
        assert_eq!(Millicores::parse("2").unwrap().get(), 2000);
        assert_eq!(Millicores::parse("0.25").unwrap().get(), 250);
        assert_eq!(Millicores::parse("250000000n").unwrap().get(), 250);
        assert_eq!(Millicores::parse("1500u").unwrap().get(), 2);
        assert_eq!(Millicores::new(1000).to_string(), "1");
        assert_eq!(Millicores::new(250).to_string(), "250m");
        assert_eq!(Bytes::parse("256Mi").unwrap(), Bytes::mib(256));
        assert_eq!(Bytes::parse("1Gi").unwrap(), Bytes::mib(1024));
        assert_eq!(Bytes::parse("512M").unwrap().get(), 512_000_000);
        assert_eq!(Bytes::mib(2048).to_string(), "2Gi");
        assert_eq!(Bytes::new(300 * MI + 1).to_string(), "301Mi");
        for bad in ["", "x", "-1", "m", "1.5q"] {
            assert!(Millicores::parse(bad).is_err(), "cpu {bad:?}");
        }
        for bad in ["", "x", "-1Mi", "1.5q", "Mi"] {
            assert!(Bytes::parse(bad).is_err(), "memory {bad:?}");
        }
        assert!(Bytes::parse("lots").is_err());
    }

    #[test]
    fn quantities_deserialize_from_text_or_numbers() {
        let cpu: Vec<Millicores> = serde_json::from_str(r#"["250m", 2, 0.5]"#).unwrap();
        assert_eq!(cpu, [250, 2000, 500].map(Millicores::new));
        let mem: Vec<Bytes> = serde_json::from_str(r#"["1Gi", 1048576]"#).unwrap();
        assert_eq!(mem, [Bytes::mib(1024), Bytes::mib(1)]);
        let err = serde_json::from_str::<Bytes>(r#""lots""#).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"lots\" is not a Kubernetes quantity"),
            "{err}"
        );
        assert!(serde_json::from_str::<Millicores>("-1").is_err());
        assert!(serde_json::from_str::<Millicores>("true").is_err());
    }
}
