//! Profiles and the rules that choose one. Both are data: the defaults below are the
//! design's, and a rule is a condition, not code.

use serde::{Deserialize, Serialize};

pub use crate::domain::Resources;

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub requests: Resources,
    pub limits: Resources,
}

/// The ladder, smallest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub profiles: Vec<Profile>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The smallest profile whose requests cover `need`; the largest when none does.
    pub fn round_up(&self, need: Resources) -> &Profile {
        self.profiles
            .iter()
            .find(|p| p.requests.cpu >= need.cpu && p.requests.memory >= need.memory)
            .or_else(|| self.profiles.last())
            .expect("a catalog has profiles")
    }
}

/// A rule: when the build type matches (or the rule names none) and the load is below
/// `load_below` (or the rule sets no bound), choose `profile`. The first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, rename = "type")]
    pub build_type: Option<String>,
    #[serde(default)]
    pub load_below: Option<u32>,
    pub profile: String,
}

/// The rule that applies and its profile name; `None` when no rule matches. With the load
/// unknown (`None`) a rule bounded by load cannot be judged and does not match, so the
/// choice falls to the type's unbounded rule: the larger profile, never a guess of 0 %.
pub fn select<'a>(
    rules: &'a [Rule],
    build_type: &str,
    load_pct: Option<u32>,
) -> Option<(usize, &'a str)> {
    rules.iter().enumerate().find_map(|(i, r)| {
        let type_ok = r
            .build_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case(build_type));
        let load_ok = match (r.load_below, load_pct) {
            (None, _) => true,
            (Some(b), Some(load)) => load < b,
            (Some(_), None) => false,
        };
        (type_ok && load_ok).then_some((i, r.profile.as_str()))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Bytes, Millicores};

    /// The shipped defaults (resource-profiles.yaml, build-optimization.yaml).
    pub(crate) fn defaults() -> crate::config::Settings {
        crate::config::Settings::load(None, Vec::new()).expect("the defaults load")
    }

    #[test]
    fn every_rule_row() {
        let rules = defaults().build_optimization.rules;
        let cases = [
            ("test", 0, 0, "light"),
            ("test", 49, 0, "light"),
            ("test", 50, 1, "medium"),
            ("build", 69, 2, "medium"),
            ("build", 70, 3, "heavy"),
            ("deploy", 5, 4, "intensive"),
            ("lint", 99, 5, "medium"),
            ("TEST", 10, 0, "light"),
        ];
        for (t, load, row, want) in cases {
            assert_eq!(
                select(&rules, t, Some(load)),
                Some((row, want)),
                "{t} at {load} %"
            );
        }
        assert_eq!(select(&rules[..1], "build", Some(10)), None);
        // Load unknown: the bounded rows are skipped.
        assert_eq!(select(&rules, "test", None), Some((1, "medium")));
        assert_eq!(select(&rules, "build", None), Some((3, "heavy")));
    }

    #[test]
    fn the_ladder_rounds_up() {
        let c = defaults().profiles.catalog();
        let need = |cpu, mib| Resources {
            cpu: Millicores::new(cpu),
            memory: Bytes::mib(mib),
        };
        assert_eq!(c.round_up(need(50, 200)).name, "light");
        assert_eq!(c.round_up(need(50, 300)).name, "medium");
        assert_eq!(c.round_up(need(900, 100)).name, "heavy");
        assert_eq!(c.round_up(need(9000, 100)).name, "intensive");
        assert_eq!(c.get("heavy").unwrap().requests.memory, Bytes::mib(1024));
    }
}
