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

/// Why a label was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {} bytes", Label::MAX_LEN)]
    TooLong,
    #[error("must not contain control characters")]
    Control,
}

impl Label {
    /// At most this many bytes: the bound every label in a payload has.
    pub const MAX_LEN: usize = super::MAX_TEXT;

    /// Trimmed, not empty, at most [`Self::MAX_LEN`] bytes, no control characters other
    /// than whitespace.
    pub fn parse(raw: &str) -> Result<Self, LabelError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(LabelError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(LabelError::TooLong);
        }
        if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(LabelError::Control);
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

/// A label expression as Jenkins reads it, for the forms whose meaning is plain: atoms,
/// `!`, `&&`, `||` and parentheses (`!` binds tightest, then `&&`, then `||`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Atom(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// The expression, or `None` for one this does not read the way Jenkins would: quoted
    /// atoms, `->`, `<->`, or anything malformed (Jenkins is then asked).
    pub fn parse(text: &str) -> Option<Self> {
        let mut tokens = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() {
                rest = &rest[c.len_utf8()..];
            } else if let Some(r) = rest.strip_prefix("&&") {
                tokens.push(Token::And);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("||") {
                tokens.push(Token::Or);
                rest = r;
            } else if matches!(c, '!' | '(' | ')') {
                tokens.push(match c {
                    '!' => Token::Not,
                    '(' => Token::Open,
                    _ => Token::Close,
                });
                rest = &rest[1..];
            } else {
                let end = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '&' | '|' | '!' | '(' | ')'))
                    .unwrap_or(rest.len());
                let atom = &rest[..end];
                if atom.is_empty() || atom.contains("->") || atom.contains(['"', '\'', '<']) {
                    return None;
                }
                tokens.push(Token::Atom(atom));
                rest = &rest[end..];
            }
        }
        let mut at = 0;
        let expr = or(&tokens, &mut at, 0)?;
        (at == tokens.len()).then_some(expr)
    }

    /// Whether an agent with these labels (its own name among them) matches.
    pub fn matches(&self, carries: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Atom(a) => carries(a),
            Expr::Not(e) => !e.matches(carries),
            Expr::And(a, b) => a.matches(carries) && b.matches(carries),
            Expr::Or(a, b) => a.matches(carries) || b.matches(carries),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Atom(&'a str),
    Not,
    And,
    Or,
    Open,
    Close,
}

/// Deeper nesting than this is not read (Jenkins is asked).
const MAX_DEPTH: usize = 64;

fn or(t: &[Token], at: &mut usize, depth: usize) -> Option<Expr> {
    let mut left = and(t, at, depth)?;
    while t.get(*at) == Some(&Token::Or) {
        *at += 1;
        left = Expr::Or(Box::new(left), Box::new(and(t, at, depth)?));
    }
    Some(left)
}

fn and(t: &[Token], at: &mut usize, depth: usize) -> Option<Expr> {
    let mut left = unary(t, at, depth)?;
    while t.get(*at) == Some(&Token::And) {
        *at += 1;
        left = Expr::And(Box::new(left), Box::new(unary(t, at, depth)?));
    }
    Some(left)
}

fn unary(t: &[Token], at: &mut usize, depth: usize) -> Option<Expr> {
    if depth > MAX_DEPTH {
        return None;
    }
    match t.get(*at)? {
        Token::Not => {
            *at += 1;
            Some(Expr::Not(Box::new(unary(t, at, depth + 1)?)))
        }
        Token::Open => {
            *at += 1;
            let inner = or(t, at, depth + 1)?;
            (t.get(*at) == Some(&Token::Close)).then(|| *at += 1)?;
            Some(inner)
        }
        Token::Atom(a) => {
            *at += 1;
            Some(Expr::Atom(a.to_string()))
        }
        _ => None,
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
    type Error = LabelError;
    fn try_from(raw: String) -> Result<Self, LabelError> {
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
    fn label_expressions_read_as_jenkins_reads_them_or_not_at_all() {
        let on = |labels: &'static [&'static str]| move |a: &str| labels.contains(&a);
        let cases: [(&str, &[&str], bool); 9] = [
            ("linux", &["linux"], true),
            ("linux && big", &["linux"], false),
            ("!windows", &["linux"], true),
            ("linux && !big", &["linux", "big"], false),
            ("windows || linux && big", &["windows"], true),
            ("(windows || linux) && big", &["windows"], false),
            ("!(a || b)", &["c"], true),
            ("!!linux", &["linux"], true),
            ("linux-arm64&&docker", &["linux-arm64", "docker"], true),
        ];
        for (text, labels, want) in cases {
            let e = Expr::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(e.matches(&on(labels)), want, "{text} on {labels:?}");
        }
        for unread in [
            "", " ", "a->b", "a <-> b", "\"a b\"", "'a'", "linux &&", "a b", "(a", "a)", "||a",
            "!", "a &&& b",
        ] {
            assert_eq!(Expr::parse(unread), None, "{unread}");
        }
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(Expr::parse(&deep), None, "too deep to read");
        assert!(Expr::parse(&format!("{}a", "!".repeat(60))).is_some());
    }

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
