//! A Jenkins label expression, as a pool's settings and Jenkins name it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};

/// A label expression (`linux`, `docker && amd64`). Jenkins prints expressions without
/// the spaces people write (`docker&&amd64`), so two labels are the same when they are
/// equal once whitespace is left out; `Eq` and `Hash` follow that.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// At most this many bytes: the bound every label in a payload has.
    pub const MAX_LEN: usize = crate::ingest::limits::MAX_TEXT;

    /// Trimmed, not empty, at most [`Self::MAX_LEN`] bytes, no control characters other
    /// than whitespace.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} bytes", Self::MAX_LEN));
        }
        if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(raw.to_string()))
    }

    /// As written in the settings.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn compact(&self) -> impl Iterator<Item = char> + '_ {
        without_spaces(&self.0)
    }

    /// Whether `other`, as Jenkins or a webhook prints a label, is this one.
    pub fn is(&self, other: &str) -> bool {
        self.compact().eq(without_spaces(other))
    }

    /// Whether a build that ran on `built` (the label expression it asked for, or the
    /// labels of its node, space-separated) ran in this label's pool: the same expression,
    /// or a node that carries this label.
    pub fn serves(&self, built: &str) -> bool {
        self.is(built) || built.split_whitespace().any(|a| a == self.0)
    }
}

fn without_spaces(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().filter(|c| !c.is_whitespace())
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.compact().eq(other.compact())
    }
}

impl Eq for Label {}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for c in self.compact() {
            c.hash(state);
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Label {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_compare_without_whitespace_and_serve_their_nodes() {
        let l = Label::parse(" docker && amd64 ").unwrap();
        assert_eq!(l.as_str(), "docker && amd64");
        assert!(l.is("docker&&amd64"));
        assert_eq!(l, Label::parse("docker&&amd64").unwrap());
        let set: std::collections::HashSet<Label> =
            [l.clone(), Label::parse("docker&&amd64").unwrap()].into();
        assert_eq!(set.len(), 1, "equal labels hash alike");
        let linux = Label::parse("linux").unwrap();
        assert!(linux.serves("linux"));
        assert!(
            linux.serves("agent-7 linux docker"),
            "a node carrying the label"
        );
        assert!(!linux.serves("linux-arm64"));
        assert!(!linux.is("windows"));
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(2000)] {
            assert!(Label::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_yaml::from_str::<Label>("\"\"").is_err());
        let read: Label = serde_yaml::from_str("docker && amd64").unwrap();
        assert_eq!(read, l);
    }
}
