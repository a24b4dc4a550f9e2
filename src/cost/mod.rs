//! The cost model, after OpenCost. Pure: prices per CPU-hour, per GiB-hour of memory and
//! per GiB-month of storage. A build costs max(request, usage) x its duration; a pool costs
//! its provisioned agents x time; idle cost = pool cost - the cost of its builds;
//! efficiency = busy agent-time / provisioned agent-time.

use crate::profiles::rules::Resources;
use crate::profiles::{Bytes, Millicores};
use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MS_PER_HOUR: f64 = 3_600_000.0;
/// Hours in an average month (365.25 x 24 / 12), for GiB-month prices and projections.
pub const HOURS_PER_MONTH: f64 = 730.5;

/// Prices (`cost.prices` in cost-policies.yaml).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Prices {
    pub cpu_hour: f64,
    pub memory_gib_hour: f64,
    pub storage_gib_month: f64,
}

/// What an agent (or a build's container) is given.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Shape {
    pub cpu: Millicores,
    pub memory: Bytes,
    /// Disk the agent keeps while it runs (priced per GiB-month).
    #[serde(default = "no_storage")]
    pub storage: Bytes,
}

impl Default for Shape {
    /// One CPU and 2Gi, no disk: the agent size when a pool names none.
    fn default() -> Self {
        Self {
            cpu: Millicores::new(1000),
            memory: Bytes::mib(2048),
            storage: Bytes::new(0),
        }
    }
}

fn no_storage() -> Bytes {
    Bytes::new(0)
}

/// Money, split by resource. `idle` is only set on pool totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    pub cpu: f64,
    pub memory: f64,
    pub storage: f64,
    /// Provisioned but not used by any build (pool cost - build cost).
    pub idle: f64,
}

impl Breakdown {
    /// CPU + memory + storage (idle is a part of those, not an addition).
    pub fn total(&self) -> f64 {
        self.cpu + self.memory + self.storage
    }

    pub fn scaled(&self, k: f64) -> Self {
        Self {
            cpu: self.cpu * k,
            memory: self.memory * k,
            storage: self.storage * k,
            idle: self.idle * k,
        }
    }
}

impl Add for Breakdown {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
            storage: self.storage + o.storage,
            idle: self.idle + o.idle,
        }
    }
}

impl AddAssign for Breakdown {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl Prices {
    /// What `shape` costs for `hours`.
    pub fn of(&self, shape: &Shape, hours: f64) -> Breakdown {
        Breakdown {
            cpu: shape.cpu.get() as f64 / 1000.0 * hours * self.cpu_hour,
            memory: shape.memory.get() as f64 / GIB * hours * self.memory_gib_hour,
            storage: shape.storage.get() as f64 / GIB * hours / HOURS_PER_MONTH
                * self.storage_gib_month,
            idle: 0.0,
        }
    }
}

/// What a build used, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuildUsage {
    /// Average CPU over the build.
    pub cpu: Millicores,
    pub memory_peak: Bytes,
}

/// A build's cost: max(request, usage) of CPU and memory, times its duration. The
/// request is the build's own (from its report) or its executor's share of the agent.
pub fn build_cost(
    prices: &Prices,
    requests: Resources,
    usage: Option<BuildUsage>,
    duration_ms: i64,
) -> Breakdown {
    let (cpu, memory) = match usage {
        Some(u) => (requests.cpu.max(u.cpu), requests.memory.max(u.memory_peak)),
        None => (requests.cpu, requests.memory),
    };
    prices.of(
        &Shape {
            cpu,
            memory,
            storage: Bytes::new(0),
        },
        duration_ms.max(0) as f64 / MS_PER_HOUR,
    )
}

/// The cost of a group of builds from sums: `unreported_ms` of builds priced at
/// `requests`, and for reported builds the sums of duration (ms) x max(requested, used)
/// millicores and bytes. Linear, so it equals the sum of the builds' [`build_cost`].
pub fn group_cost(
    prices: &Prices,
    requests: Resources,
    unreported_ms: i64,
    cpu_m_ms: f64,
    memory_b_ms: f64,
) -> Breakdown {
    let mut c = build_cost(prices, requests, None, unreported_ms);
    c.cpu += cpu_m_ms / 1000.0 / MS_PER_HOUR * prices.cpu_hour;
    c.memory += memory_b_ms / GIB / MS_PER_HOUR * prices.memory_gib_hour;
    c
}

/// One executor's share of an agent.
pub fn executor_share(agent: &Shape, executors: u32) -> Resources {
    let n = u64::from(executors.max(1));
    Resources {
        cpu: Millicores::new(agent.cpu.get().div_ceil(n)),
        memory: Bytes::new(agent.memory.get().div_ceil(n)),
    }
}

/// Agent-hours provisioned in `[from, to)` (epoch ms) by a replica count that changes at
/// the given instants: `changes` is `(at, replicas)` in time order; the count before the
/// first change is `before` (`None`: nothing is known before it, so nothing is counted).
pub fn agent_hours(changes: &[(i64, u32)], before: Option<u32>, from: i64, to: i64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let mut total_ms = 0.0;
    let mut level = before;
    let mut at = from;
    for &(t, replicas) in changes {
        if t >= to {
            break;
        }
        if t > at {
            if let Some(l) = level {
                total_ms += f64::from(l) * (t - at) as f64;
            }
            at = t;
        }
        level = Some(replicas);
    }
    if let Some(l) = level {
        total_ms += f64::from(l) * (to - at) as f64;
    }
    total_ms / MS_PER_HOUR
}

/// A pool's cost over a range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PoolCost {
    pub agent_hours: f64,
    /// Executor-hours builds ran, in agent-hours (divided by executors per agent).
    pub busy_agent_hours: f64,
    /// busy / provisioned; `null` when nothing was provisioned.
    pub efficiency: Option<f64>,
    pub cost: Breakdown,
    /// From when (epoch ms) the pool's recorded decisions say how many agents it had:
    /// its agent-hours, busy hours, idle and efficiency cover only the range from then
    /// (builds before the first decision, e.g. imported history, are not held against
    /// agents nobody recorded). `null` when no decision covers the range.
    pub covered_from: Option<i64>,
}

/// Pool cost from its provisioned agent-hours and its builds' cost: idle is what the
/// agents cost beyond their builds (never below 0: builds above their request use capacity
/// that is paid for in the pool).
pub fn pool_cost(
    prices: &Prices,
    agent: &Shape,
    agent_hours: f64,
    busy_agent_hours: f64,
    builds: Breakdown,
) -> PoolCost {
    let mut cost = prices.of(agent, agent_hours);
    cost.idle = (cost.total() - builds.total()).max(0.0);
    PoolCost {
        agent_hours,
        busy_agent_hours,
        efficiency: (agent_hours > 0.0).then(|| (busy_agent_hours / agent_hours).min(1.0)),
        cost,
        covered_from: None,
    }
}

/// Alert thresholds (`cost.alerts`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AlertThresholds {
    /// A build costing more than this raises an alert (currency units); `null`: never.
    pub cost_per_build: Option<f64>,
    /// A pool whose idle cost is more than this share of its cost, in percent.
    pub idle_share_percent: Option<f64>,
}

/// A threshold crossed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// `cost_per_build` or `idle_share`.
    pub kind: &'static str,
    /// The build (`controller/job#number`) or pool it is about.
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

/// Alerts for builds over the per-build threshold and pools over the idle share.
pub fn alerts(
    thresholds: &AlertThresholds,
    builds: &[(String, f64)],
    pools: &[(String, PoolCost)],
    currency: &str,
) -> Vec<Alert> {
    let mut out = Vec::new();
    if let Some(limit) = thresholds.cost_per_build {
        for (subject, cost) in builds {
            if *cost > limit {
                out.push(Alert {
                    kind: "cost_per_build",
                    subject: subject.clone(),
                    value: *cost,
                    threshold: limit,
                    message: format!(
                        "{subject} cost {cost:.2} {currency}, above the {limit:.2} {currency} alert"
                    ),
                });
            }
        }
    }
    if let Some(limit) = thresholds.idle_share_percent {
        for (pool, c) in pools {
            let total = c.cost.total();
            if total > 0.0 {
                let share = c.cost.idle / total * 100.0;
                if share > limit {
                    out.push(Alert {
                        kind: "idle_share",
                        subject: pool.clone(),
                        value: share,
                        threshold: limit,
                        message: format!(
                            "pool {pool}: {share:.0} % of its cost ({:.2} of {total:.2} {currency}) paid for idle agents, above the {limit:.0} % alert",
                            c.cost.idle
                        ),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices {
            cpu_hour: 0.05,
            memory_gib_hour: 0.01,
            storage_gib_month: 0.10,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_build_pays_the_larger_of_request_and_use() {
        let req = Resources {
            cpu: Millicores::new(500),
            memory: Bytes::mib(512),
        };
        // 2 h at 500m and 512Mi: CPU 0.5 x 2 x 0.05 = 0.05; memory 0.5 x 2 x 0.01 = 0.01.
        let c = build_cost(&prices(), req, None, 2 * 3_600_000);
        assert!(close(c.cpu, 0.05) && close(c.memory, 0.01), "{c:?}");
        assert!(close(c.total(), 0.06));
        // It used 1.5 CPU on average and peaked at 256Mi: CPU is priced at use, memory at
        // request. 1.5 x 2 x 0.05 = 0.15.
        let used = build_cost(
            &prices(),
            req,
            Some(BuildUsage {
                cpu: Millicores::new(1500),
                memory_peak: Bytes::mib(256),
            }),
            2 * 3_600_000,
        );
        assert!(
            close(used.cpu, 0.15) && close(used.memory, 0.01),
            "{used:?}"
        );
    }

    #[test]
    fn a_group_costs_the_sum_of_its_builds() {
        let req = Resources {
            cpu: Millicores::new(500),
            memory: Bytes::mib(512),
        };
        let used = BuildUsage {
            cpu: Millicores::new(1500),
            memory_peak: Bytes::mib(256),
        };
        // Two builds: 1 h unreported at the request, 2 h reported (1.5 CPU, 512Mi).
        let each = build_cost(&prices(), req, None, 3_600_000)
            + build_cost(&prices(), req, Some(used), 7_200_000);
        let g = group_cost(
            &prices(),
            req,
            3_600_000,
            7_200_000.0 * 1500.0,
            7_200_000.0 * (512u64 << 20) as f64,
        );
        assert!(
            close(g.cpu, each.cpu) && close(g.memory, each.memory),
            "{g:?} {each:?}"
        );
    }

    #[test]
    fn storage_is_priced_per_gib_month() {
        let agent = Shape {
            cpu: Millicores::new(0),
            memory: Bytes::new(0),
            storage: Bytes::mib(10 * 1024),
        };
        // 10 GiB for a whole month: 10 x 0.10 = 1.00.
        assert!(close(prices().of(&agent, HOURS_PER_MONTH).storage, 1.0));
    }

    #[test]
    fn agent_hours_integrate_the_replica_steps() {
        let h = 3_600_000;
        // 2 agents before the range, 4 from 1 h, 0 from 3 h; range [0, 4 h): 2 + 8 + 0.
        let changes = [(h, 4), (3 * h, 0)];
        assert!(close(agent_hours(&changes, Some(2), 0, 4 * h), 10.0));
        // Nothing known before the first change: the first hour is not counted.
        assert!(close(agent_hours(&changes, None, 0, 4 * h), 8.0));
        // Changes after the range end are ignored; an empty range is 0.
        assert!(close(agent_hours(&changes, Some(2), 0, h / 2), 1.0));
        assert_eq!(agent_hours(&changes, Some(2), h, h), 0.0);
        // A change before the range start sets the level at the start.
        assert!(close(agent_hours(&[(-h, 3)], None, 0, h), 3.0));
    }

    #[test]
    fn idle_is_what_the_pool_pays_beyond_its_builds_and_alerts_fire() {
        let agent = Shape {
            cpu: Millicores::new(1000),
            memory: Bytes::mib(2048),
            storage: Bytes::new(0),
        };
        // 10 agent-hours: CPU 10 x 0.05 = 0.5, memory 2 x 10 x 0.01 = 0.2; total 0.7.
        // Builds cost 0.21: idle 0.49 (70 %).
        let builds = Breakdown {
            cpu: 0.15,
            memory: 0.06,
            ..Default::default()
        };
        let p = pool_cost(&prices(), &agent, 10.0, 3.0, builds);
        assert!(close(p.cost.total(), 0.7), "{p:?}");
        assert!(close(p.cost.idle, 0.49), "{p:?}");
        assert_eq!(p.efficiency, Some(0.3));
        let a = alerts(
            &AlertThresholds {
                cost_per_build: Some(0.1),
                idle_share_percent: Some(50.0),
            },
            &[("prod/app#1".into(), 0.15), ("prod/app#2".into(), 0.05)],
            &[("linux".into(), p)],
            "USD",
        );
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0].subject, "prod/app#1");
        assert!(a[1].message.contains("70 %"), "{}", a[1].message);
        let share = executor_share(&agent, 2);
        assert_eq!(share.cpu, Millicores::new(500));
        assert_eq!(share.memory, Bytes::mib(1024));
    }
}
