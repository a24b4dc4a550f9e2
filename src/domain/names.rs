//! Names with rules: Jenkins controllers and job full names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest free text a record keeps in an indexed or listed field: agent names,
/// labels, step ids and types, causes.
pub const MAX_TEXT: usize = 1_024;

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("contains the character {0:?}, allowed: a-z A-Z 0-9 . _ -")]
    BadCharacter(char),
    #[error("contains a control character")]
    Control,
    #[error("has an empty path segment (\"//\", or a leading or trailing \"/\")")]
    EmptySegment,
    #[error("has a segment \".\" or \"..\", which Jenkins never names an item")]
    DotSegment,
    #[error("contains the invisible or direction-changing character U+{0:04X}")]
    Invisible(u32),
    #[error(
        "mixes Latin, Cyrillic and Greek letters in one name segment ({0:?}): it could pass for another name"
    )]
    MixedScripts(String),
    #[error(
        "contains {0:?} (U+{1:04X}), a compatibility form of {2:?} (full-width, ligature, superscript and the like): it could pass for another name"
    )]
    CompatibilityForm(char, u32, String),
}

/// Refuses characters that are a compatibility form of others (full-width `ａ` for `a`,
/// the ligature `ﬁ`, superscripts, a no-break space): two names that read alike would
/// otherwise be two jobs.
fn check_compatibility_forms(raw: &str) -> Result<(), NameError> {
    use unicode_normalization::UnicodeNormalization;
    for c in raw.chars() {
        if c.is_ascii() {
            continue;
        }
        let plain: String = std::iter::once(c).nfkc().collect();
        let canonical: String = std::iter::once(c).nfc().collect();
        if plain != canonical {
            return Err(NameError::CompatibilityForm(c, c as u32, plain));
        }
    }
    Ok(())
}

/// Characters that show nothing or reorder what follows (Unicode format characters:
/// zero-width spaces and joiners, bidirectional controls, the byte-order mark, tags).
fn invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF9..=0xFFFB | 0xE0000..=0xE0FFF
    )
}

/// The script of a letter, for the three whose letters look alike.
fn look_alike_script(c: char) -> Option<&'static str> {
    match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F => Some("Latin"),
        0x370..=0x3FF => Some("Greek"),
        0x400..=0x52F => Some("Cyrillic"),
        _ => None,
    }
}

/// Refuses what would let two different names look the same.
fn check_look_alikes(raw: &str) -> Result<(), NameError> {
    if let Some(c) = raw.chars().find(|c| invisible(*c)) {
        return Err(NameError::Invisible(c as u32));
    }
    for segment in raw.split('/') {
        let mut scripts = segment.chars().filter_map(look_alike_script);
        if let Some(first) = scripts.next()
            && scripts.any(|s| s != first)
        {
            return Err(NameError::MixedScripts(segment.to_string()));
        }
    }
    Ok(())
}

/// Identifies one Jenkins controller, e.g. `ci.example.com` or `prod`.
/// Letters, digits, `.`, `_`, `-`; at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ControllerName(String);

impl ControllerName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(NameError::TooLong(Self::MAX_LEN));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadCharacter(bad));
        }
        if raw.chars().all(|c| c == '.') {
            return Err(NameError::DotSegment);
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    /// Derives a controller name from a Jenkins URL: its host, plus the context path when
    /// Jenkins is not served at the root (`https://ci.example.com/jenkins/job/x/` ->
    /// `ci.example.com-jenkins`). `None` when the URL has no host.
    pub fn from_jenkins_url(url: &str) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?;
        let mut name = host.to_string();
        if let Some(port) = parsed.port() {
            name.push('-');
            name.push_str(&port.to_string());
        }
        let path = parsed.path();
        let context = match path.find("/job/") {
            Some(i) => &path[..i],
            None => {
                // A root URL such as `https://host/jenkins/` or a queue/computer URL.
                let cut = ["/queue/", "/computer/", "/label/"]
                    .iter()
                    .filter_map(|m| path.find(m))
                    .min()
                    .unwrap_or(path.len());
                &path[..cut]
            }
        };
        for segment in context.split('/').filter(|s| !s.is_empty()) {
            name.push('-');
            name.push_str(segment);
        }
        let cleaned: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Self::parse(&cleaned).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ControllerName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ControllerName> for String {
    fn from(value: ControllerName) -> Self {
        value.0
    }
}

impl fmt::Display for ControllerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Jenkins job's full name: folder path segments joined by `/`, e.g.
/// `team/app/main` for branch `main` of multibranch job `app` in folder `team`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobName(String);

impl JobName {
    pub const MAX_LEN: usize = 1024;

    /// A name as Jenkins shows it, in Unicode's composed form (NFC): `café` typed either
    /// way is one job.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        use unicode_normalization::UnicodeNormalization;
        if raw.trim().is_empty() {
            return Err(NameError::Empty);
        }
        let raw: String = raw.nfc().collect();
        let raw = raw.as_str();
        if raw.len() > Self::MAX_LEN {
            return Err(NameError::TooLong(Self::MAX_LEN));
        }
        if raw.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if raw.split('/').any(|s| s.is_empty()) {
            return Err(NameError::EmptySegment);
        }
        if raw.split('/').any(|s| s == "." || s == "..") {
            return Err(NameError::DotSegment);
        }
        check_look_alikes(raw)?;
        check_compatibility_forms(raw)?;
        Ok(Self(raw.to_string()))
    }

    /// The full name from a job or build URL relative to the controller root, or absolute:
    /// `job/team/job/app/job/main/42/` -> `team/app/main`. Segments are percent-decoded
    /// (Jenkins encodes spaces and `%` in URLs). `None` when the URL names no job.
    pub fn from_job_url(url: &str) -> Option<Self> {
        let path = match url::Url::parse(url) {
            Ok(u) => u.path().to_string(),
            Err(_) => url.to_string(),
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut names = Vec::new();
        let mut i = 0;
        while i + 1 < segments.len() {
            if segments[i] == "job" {
                let decoded = urlencoding::decode(segments[i + 1]).ok()?;
                names.push(decoded.into_owned());
                i += 2;
            } else {
                i += 1;
            }
        }
        if names.is_empty() {
            return None;
        }
        Self::parse(&names.join("/")).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<JobName> for String {
    fn from(value: JobName) -> Self {
        value.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kubernetes DNS label (RFC 1123): a namespace, a pool, a Service name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes DNS subdomain name (RFC 1123): a Deployment, a Lease.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_typed_composed_or_decomposed_is_one_name() {
        let composed = JobName::parse("team/caf\u{00E9}").unwrap();
        let decomposed = JobName::parse("team/cafe\u{0301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "team/caf\u{00E9}");
        assert!(matches!(
            JobName::parse("\u{FF41}pp"),
            Err(NameError::CompatibilityForm('\u{FF41}', 0xFF41, _))
        ));
        // Scripts without compatibility forms are names like any other.
        for good in ["チーム/ビルド", "团队/构建", "팀/빌드"] {
            assert!(JobName::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn names_that_could_pass_for_others_are_refused() {
        for bad in [
            "app\u{202E}gpj",
            "a\u{200B}pp",
            "\u{FEFF}app",
            "te\u{0430}m/app",
            "../app",
            "team/.",
            "\u{FF41}pp",
            "team/\u{FB01}nance",
            "app\u{00B2}",
            "my\u{00A0}app",
        ] {
            assert!(JobName::parse(bad).is_err(), "{bad:?}");
        }
        // One script per segment is a name like any other.
        for good in [
            "команда/сборка",
            "team/app",
            "ομάδα/app",
            "=1+2",
            "my app (ci)",
        ] {
            assert!(JobName::parse(good).is_ok(), "{good:?}");
        }
        assert!(ControllerName::parse("..").is_err());
        assert!(ControllerName::parse("ci.example.com").is_ok());
    }

    #[test]
    fn controller_names_follow_their_rules() {
        assert_eq!(ControllerName::parse("Prod").unwrap().as_str(), "prod");
        assert_eq!(ControllerName::parse(""), Err(NameError::Empty));
        assert_eq!(
            ControllerName::parse("a b"),
            Err(NameError::BadCharacter(' '))
        );
        assert!(ControllerName::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn controller_is_derived_from_the_url_host_and_context_path() {
        let cases = [
            ("https://ci.example.com/job/app/12/", "ci.example.com"),
            (
                "https://ci.example.com/jenkins/job/app/12/",
                "ci.example.com-jenkins",
            ),
            ("http://jenkins:8080/", "jenkins-8080"),
            ("http://jenkins:8080/queue/item/5/", "jenkins-8080"),
        ];
        for (url, want) in cases {
            assert_eq!(
                ControllerName::from_jenkins_url(url).unwrap().as_str(),
                want,
                "{url}"
            );
        }
        assert!(ControllerName::from_jenkins_url("job/app/12/").is_none());
    }

    #[test]
    fn job_full_name_comes_from_nested_job_segments() {
        let cases = [
            ("job/app/12/", "app"),
            ("job/team/job/app/job/main/42/", "team/app/main"),
            (
                "https://ci.example.com/jenkins/job/team/job/my%20app/3/",
                "team/my app",
            ),
            ("job/team/job/feature%252Fx/", "team/feature%2Fx"),
        ];
        for (url, want) in cases {
            assert_eq!(JobName::from_job_url(url).unwrap().as_str(), want, "{url}");
        }
        assert!(JobName::from_job_url("computer/agent-1/").is_none());
    }

    #[test]
    fn job_names_refuse_empty_segments_and_control_characters() {
        assert_eq!(JobName::parse("a//b"), Err(NameError::EmptySegment));
        assert_eq!(JobName::parse("/a"), Err(NameError::EmptySegment));
        assert_eq!(JobName::parse("a\nb"), Err(NameError::Control));
        assert_eq!(JobName::parse("  "), Err(NameError::Empty));
        assert!(JobName::parse("team/app").is_ok());
    }
}
