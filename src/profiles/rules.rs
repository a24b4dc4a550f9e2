//! Profiles and the rules that choose one. Both are data: the defaults below are the
//! design's, and a rule is a condition, not code.

use super::{Bytes, Millicores};
use serde::{Deserialize, Serialize};

/// CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: Millicores,
    pub memory: Bytes,
}

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

impl Default for Catalog {
    /// light 100m/256Mi, medium 500m/512Mi, heavy 1000m/1Gi, intensive 2000m/2Gi;
    /// limits: twice the CPU, the same memory plus half (an OOM kill is worse than a
    /// throttle).
    fn default() -> Self {
        let p = |name: &str, cpu: u64, mib: u64| Profile {
            name: name.into(),
            requests: Resources {
                cpu: Millicores::new(cpu),
                memory: Bytes::mib(mib),
            },
            limits: Resources {
                cpu: Millicores::new(cpu * 2),
                memory: Bytes::mib(mib + mib / 2),
            },
        };
        Self {
            profiles: vec![
                p("light", 100, 256),
                p("medium", 500, 512),
                p("heavy", 1000, 1024),
                p("intensive", 2000, 2048),
            ],
        }
    }
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

/// The design's rules: test & load < 50 -> light; test -> medium; build & load < 70 ->
/// medium; build -> heavy; deploy -> intensive; anything else -> medium.
pub fn default_rules() -> Vec<Rule> {
    let r = |t: Option<&str>, below: Option<u32>, profile: &str| Rule {
        build_type: t.map(str::to_string),
        load_below: below,
        profile: profile.into(),
    };
    vec![
        r(Some("test"), Some(50), "light"),
        r(Some("test"), None, "medium"),
        r(Some("build"), Some(70), "medium"),
        r(Some("build"), None, "heavy"),
        r(Some("deploy"), None, "intensive"),
        r(None, None, "medium"),
    ]
}

/// The rule that applies and its profile name; `None` when no rule matches.
pub fn select<'a>(rules: &'a [Rule], build_type: &str, load_pct: u32) -> Option<(usize, &'a str)> {
    rules.iter().enumerate().find_map(|(i, r)| {
        let type_ok = r
            .build_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case(build_type));
        let load_ok = r.load_below.is_none_or(|b| load_pct < b);
        (type_ok && load_ok).then_some((i, r.profile.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_row() {
        let rules = default_rules();
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
                select(&rules, t, load),
                Some((row, want)),
                "{t} at {load} %"
            );
        }
        assert_eq!(select(&rules[..1], "build", 10), None);
    }

    #[test]
    fn the_ladder_rounds_up() {
        let c = Catalog::default();
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
