//! The discrete-event replay of one pool. Builds arrive at their queue time, start FIFO
//! when an executor is free, and run their duration; agents take the pod start-up time to
//! become ready. Reactive policies call the very `scaling::decide` the live controller
//! calls, with the same inputs, on every arrival (as a queue webhook would trigger) and
//! at the reconcile period; scale-down removes agents that are starting or idle, never a
//! busy one.

use crate::domain::Timestamp;
use crate::scaling::warm::{WarmPolicy, WarmState};
use crate::scaling::{Behavior, History, PolicyName, PoolSnapshot, ScalePolicy, decide};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// The pool's configuration for a replay.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub executors_per_agent: u32,
    pub min: u32,
    pub max: u32,
    pub idle_headroom: u32,
    pub behavior: Behavior,
    /// Time from an agent's creation to its readiness: the median, which policies plan
    /// with.
    pub pod_startup_ms: i64,
    /// Its 95th percentile: above the median, each agent draws its own start-up from a
    /// log-normal distribution with both (`super::startup`).
    pub startup_p95_ms: i64,
    /// The controller's reconcile period.
    pub reconcile_ms: i64,
    /// What one agent costs per hour.
    pub agent_hour_price: f64,
    /// The forest the predictive policy trains.
    pub forecast_params: crate::forecast::ModelParams,
    /// Most idle agents the warm policy keeps.
    pub warm_max_idle: u32,
    /// The rolling window the warm policy's budget is enforced over.
    pub warm_window_ms: i64,
    /// Minimums by the hour.
    pub schedules: Vec<crate::scaling::schedule::Schedule>,
}

/// Every replay draws the same start-ups.
const STARTUP_SEED: u64 = 42;

impl SimConfig {
    /// The start-up agents take.
    pub fn startup(&self) -> super::startup::Startup {
        super::startup::Startup {
            p50_ms: self.pod_startup_ms,
            p95_ms: self.startup_p95_ms.max(self.pod_startup_ms),
        }
    }

    /// A configured pool as a replay runs it: its sizes and behaviour, the service's pod
    /// start-up and reconcile period, and its agent's price.
    pub fn for_pool(p: &crate::config::PoolSettings, settings: &crate::config::Settings) -> Self {
        Self {
            executors_per_agent: p.executors_per_agent.max(1),
            min: p.min,
            max: p.max,
            idle_headroom: p.idle_headroom,
            behavior: p.behavior.clone(),
            pod_startup_ms: settings.scaling.pod_startup.as_millis() as i64,
            startup_p95_ms: settings.scaling.pod_startup.as_millis() as i64,
            reconcile_ms: (settings.scaling.reconcile_interval.as_millis() as i64).max(1),
            agent_hour_price: settings.cost.prices.of(&p.agent, 1.0).total(),
            forecast_params: crate::forecast::ModelParams {
                trees: 50,
                max_depth: 10,
                seed: 42,
            },
            warm_max_idle: p.warm.max_idle,
            warm_window_ms: p.warm.window.as_millis() as i64,
            schedules: p.schedules(),
        }
    }
}

/// Which sizing to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimPolicy {
    /// A fixed number of agents, always ready.
    Static(u32),
    /// The seed's rule through `decide`.
    SeedQueueHalf,
    /// The reactive queue policy through `decide` (the default), with the pool's behaviour.
    Queue,
    /// The queue policy with this scale-down stabilization window, in minutes.
    Window(u32),
    /// The Kubernetes plugin's `idleMinutes`: each agent is kept this many minutes after
    /// its last build (no stabilization window).
    KeepIdle(u32),
    /// The queue policy with this many idle agents always kept beyond the demand.
    Headroom(u32),
    /// Warm capacity under this budget, in percent of busy agent-hours.
    Warm(u32),
    /// The Kubernetes plugin's model: one pod per build, each waiting the start-up.
    PerBuild,
    /// Knows the future: no build waits, and agents are exactly the running builds'
    /// executors at every instant. The lower bound for both wait and agent time.
    Oracle,
    /// The queue policy plus a forecast of demand one pod start-up ahead, which can only
    /// raise the agents (never scale in on a forecast alone).
    Predictive,
    /// The `hpa` multi-metric policy on the signals a replay has: demand rate (builds
    /// queued in the last minute) and queue wait p95 (builds started in the last five
    /// minutes, and the age of those still queued).
    MultiMetric,
}

impl SimPolicy {
    pub fn parse(raw: &str) -> Option<Self> {
        let arg = |prefix: &str| raw.strip_prefix(prefix).and_then(|n| n.parse().ok());
        match raw {
            "seed-queue-half" => Some(Self::SeedQueueHalf),
            "queue" => Some(Self::Queue),
            "per-build" => Some(Self::PerBuild),
            "oracle" => Some(Self::Oracle),
            "predictive" => Some(Self::Predictive),
            "multi-metric" => Some(Self::MultiMetric),
            _ => arg("static:")
                .map(Self::Static)
                .or_else(|| arg("window:").map(Self::Window))
                .or_else(|| arg("keep-idle:").map(Self::KeepIdle))
                .or_else(|| arg("headroom:").map(Self::Headroom))
                .or_else(|| arg("warm:").map(Self::Warm)),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Static(n) => format!("static:{n}"),
            Self::SeedQueueHalf => "seed-queue-half".into(),
            Self::Queue => "queue".into(),
            Self::Window(m) => format!("window:{m}"),
            Self::KeepIdle(m) => format!("keep-idle:{m}"),
            Self::Headroom(n) => format!("headroom:{n}"),
            Self::Warm(b) => format!("warm:{b}"),
            Self::PerBuild => "per-build".into(),
            Self::Oracle => "oracle".into(),
            Self::Predictive => "predictive".into(),
            Self::MultiMetric => "multi-metric".into(),
        }
    }

    /// The scaling policy `decide` runs for this replay policy.
    fn scale_policy(self, cfg: &SimConfig) -> ScalePolicy {
        let mut behavior = cfg.behavior.clone();
        let mut idle_headroom = cfg.idle_headroom;
        let mut keep_idle_ms = 0;
        let policy = match self {
            Self::SeedQueueHalf => PolicyName::SeedQueueHalf,
            Self::MultiMetric => PolicyName::Hpa,
            Self::Warm(_) => {
                behavior = PolicyName::Warm.behavior(&behavior);
                PolicyName::Warm
            }
            Self::Window(m) => {
                behavior.scale_down.stabilization_window = Duration::from_secs(u64::from(m) * 60);
                PolicyName::Queue
            }
            Self::KeepIdle(m) => {
                behavior.scale_down.stabilization_window = Duration::ZERO;
                keep_idle_ms = i64::from(m) * 60_000;
                PolicyName::KeepIdle
            }
            Self::Headroom(n) => {
                idle_headroom = n;
                PolicyName::Queue
            }
            _ => PolicyName::Queue,
        };
        ScalePolicy {
            policy,
            executors_per_agent: cfg.executors_per_agent.max(1),
            min: cfg.min,
            max: cfg.max,
            idle_headroom,
            behavior,
            keep_idle_ms,
        }
    }
}

/// A build to replay: queue time and duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimBuild {
    pub queued_at: i64,
    pub duration: i64,
}

/// What a replay measured. Waits in milliseconds, one per build, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimOutcome {
    pub waits_ms: Vec<i64>,
    /// Agent lifetime summed, from creation (start-up included) to removal.
    pub agent_ms: i64,
    /// Executor time spent running builds.
    pub busy_executor_ms: i64,
    /// Executor time provisioned (agent time x executors per agent).
    pub provisioned_executor_ms: i64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub busy_agents_removed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    // Order matters at equal times: finishes free executors before arrivals look for one.
    Finish(usize),
    Ready(usize),
    Arrival(usize),
    Tick,
}

#[derive(Debug, Clone)]
struct Agent {
    created: i64,
    ready_at: i64,
    removed_at: Option<i64>,
    busy: u32,
    /// When the agent last became idle (or ready).
    idle_since: i64,
}

/// What the warm policy keeps in a replay: the live pool's state, and the history it
/// would read from its store (the builds arrived and finished so far).
struct WarmSim {
    policy: WarmPolicy,
    state: WarmState,
    /// Every build's queue time, in order; the first `arrived` have happened.
    times: Vec<i64>,
    arrived: usize,
    /// Finishes so far, in order.
    finishes: Vec<i64>,
}

impl WarmSim {
    fn decide(&mut self, now: i64, current: u32, busy_agents: u32) -> u32 {
        self.state
            .plan(
                now,
                current,
                busy_agents,
                &self.times[..self.arrived],
                &self.finishes,
                &self.policy,
            )
            .agents
    }
}

/// Replays `builds` (sorted by queue time) under `policy`.
pub fn replay(builds: &[SimBuild], policy: SimPolicy, cfg: &SimConfig) -> SimOutcome {
    match policy {
        SimPolicy::PerBuild => per_build(builds, cfg),
        SimPolicy::Oracle => oracle(builds, cfg),
        _ => reactive(builds, policy, cfg),
    }
}

fn per_build(builds: &[SimBuild], cfg: &SimConfig) -> SimOutcome {
    let mut out = SimOutcome::default();
    let mut startup = cfg.startup().sampler(STARTUP_SEED);
    for b in builds {
        let s = startup.next_ms();
        out.waits_ms.push(s);
        out.agent_ms += s + b.duration;
        out.busy_executor_ms += b.duration;
        out.scale_ups += 1;
        out.scale_downs += 1;
    }
    // A build's pod has one executor: the build's.
    out.provisioned_executor_ms = out.agent_ms;
    out
}

fn oracle(builds: &[SimBuild], cfg: &SimConfig) -> SimOutcome {
    let per = i64::from(cfg.executors_per_agent.max(1));
    let mut edges: Vec<(i64, i64)> = builds
        .iter()
        .flat_map(|b| [(b.queued_at, 1), (b.queued_at + b.duration, -1)])
        .collect();
    edges.sort();
    let mut out = SimOutcome {
        waits_ms: vec![0; builds.len()],
        ..Default::default()
    };
    let (mut running, mut last, mut agents) = (0i64, edges.first().map_or(0, |e| e.0), 0i64);
    for (t, d) in edges {
        out.agent_ms += agents * (t - last);
        running += d;
        let needed = (running + per - 1) / per;
        if needed > agents {
            out.scale_ups += 1;
        } else if needed < agents {
            out.scale_downs += 1;
        }
        agents = needed;
        last = t;
    }
    out.busy_executor_ms = builds.iter().map(|b| b.duration).sum();
    out.provisioned_executor_ms = out.agent_ms * per;
    out
}

fn reactive(builds: &[SimBuild], policy: SimPolicy, cfg: &SimConfig) -> SimOutcome {
    let Some(start) = builds.first().map(|b| b.queued_at) else {
        return SimOutcome::default();
    };
    let mut pool = Pool::new(builds, policy, cfg, start);
    let reconciles = !matches!(policy, SimPolicy::Static(_));
    // Warm capacity and schedules may start agents while nothing runs: their reconciles
    // pause only once every build has arrived.
    let clock_driven = pool.warm.is_some() || !pool.schedules.is_empty();
    let mut arrived = 0usize;
    for (i, b) in builds.iter().enumerate() {
        pool.heap.push(Reverse((b.queued_at, Event::Arrival(i))));
    }
    let mut ticking = false;

    while let Some(Reverse((now, event))) = pool.heap.pop() {
        match event {
            Event::Arrival(i) => {
                pool.queue.push_back(i);
                pool.recent_arrivals.push_back(now);
                arrived += 1;
                if let Some(w) = pool.warm.as_mut() {
                    w.arrived = arrived;
                }
                pool.start_builds(now);
                if reconciles {
                    // A queue webhook reconciles at once; the periodic reconcile resumes.
                    pool.reconcile(now);
                    if !ticking {
                        ticking = true;
                        pool.heap
                            .push(Reverse((now + cfg.reconcile_ms, Event::Tick)));
                    }
                }
            }
            Event::Ready(_) => pool.start_builds(now),
            Event::Finish(k) => {
                let a = pool.running_on[pool.finish_of[k]];
                pool.agents[a].busy -= 1;
                if pool.agents[a].busy == 0 {
                    pool.agents[a].idle_since = now;
                }
                if let Some(w) = pool.warm.as_mut() {
                    w.finishes.push(now);
                }
                pool.running -= 1;
                pool.start_builds(now);
            }
            Event::Tick => {
                let rest = pool.reconcile(now);
                // Stop ticking once the pool is idle and at the size its demand asks for:
                // nothing changes until the next arrival, which resumes the ticks.
                let more = clock_driven && arrived < builds.len();
                if pool.running == 0 && pool.queue.is_empty() && rest && !more {
                    ticking = false;
                } else {
                    pool.heap
                        .push(Reverse((now + cfg.reconcile_ms, Event::Tick)));
                }
            }
        }
    }
    pool.finish()
}

/// The replay state of one reactive pool.
struct Pool<'a> {
    builds: &'a [SimBuild],
    per: u32,
    policy: ScalePolicy,
    history: History,
    heap: BinaryHeap<Reverse<(i64, Event)>>,
    /// Every agent ever created, by id.
    agents: Vec<Agent>,
    /// Ids of agents not removed, in creation order.
    live: Vec<usize>,
    queue: VecDeque<usize>,
    /// The agent each started build runs on.
    running_on: Vec<usize>,
    /// `Finish(k)` is the end of build `finish_of[k]`.
    finish_of: Vec<usize>,
    last_finish: i64,
    running: usize,
    out: SimOutcome,
    forecaster: Option<super::predictive::Forecaster>,
    /// Arrival times in the last minute, for the demand-rate signal.
    recent_arrivals: VecDeque<i64>,
    /// (start, wait) of builds started in the last five minutes, for the wait signal.
    recent_waits: VecDeque<(i64, i64)>,
    multi_metric: bool,
    warm: Option<WarmSim>,
    startup: super::startup::Sampler,
    schedules: Vec<crate::scaling::schedule::Schedule>,
}

impl<'a> Pool<'a> {
    fn new(builds: &'a [SimBuild], policy: SimPolicy, cfg: &'a SimConfig, start: i64) -> Self {
        let per = cfg.executors_per_agent.max(1);
        let initial = match policy {
            SimPolicy::Static(n) => n,
            _ => cfg.min,
        };
        let agents: Vec<Agent> = (0..initial)
            .map(|_| Agent {
                created: start,
                ready_at: start,
                removed_at: None,
                busy: 0,
                idle_since: start,
            })
            .collect();
        Self {
            builds,
            per,
            policy: policy.scale_policy(cfg),
            history: History::default(),
            heap: BinaryHeap::new(),
            live: (0..agents.len()).collect(),
            agents,
            queue: VecDeque::new(),
            running_on: vec![usize::MAX; builds.len()],
            finish_of: Vec::new(),
            last_finish: start,
            running: 0,
            out: SimOutcome {
                waits_ms: vec![0; builds.len()],
                ..Default::default()
            },
            forecaster: (policy == SimPolicy::Predictive)
                .then(|| {
                    let pairs: Vec<(i64, i64)> =
                        builds.iter().map(|b| (b.queued_at, b.duration)).collect();
                    super::predictive::Forecaster::new(
                        &pairs,
                        cfg.pod_startup_ms,
                        cfg.forecast_params,
                    )
                })
                .flatten(),
            recent_arrivals: VecDeque::new(),
            recent_waits: VecDeque::new(),
            multi_metric: policy == SimPolicy::MultiMetric,
            startup: cfg.startup().sampler(STARTUP_SEED),
            schedules: cfg.schedules.clone(),
            warm: match policy {
                SimPolicy::Warm(budget) => Some(WarmSim {
                    policy: WarmPolicy {
                        budget: f64::from(budget) / 100.0,
                        max_idle: cfg.warm_max_idle,
                        window_ms: cfg.warm_window_ms,
                        startup_ms: cfg.pod_startup_ms,
                        executors_per_agent: cfg.executors_per_agent.max(1),
                    },
                    state: WarmState::default(),
                    times: builds.iter().map(|b| b.queued_at).collect(),
                    arrived: 0,
                    finishes: Vec::new(),
                }),
                _ => None,
            },
        }
    }

    /// Starts queued builds, FIFO, on the first ready agent with a free executor (Jenkins
    /// fills busy agents first).
    fn start_builds(&mut self, now: i64) {
        while let Some(&i) = self.queue.front() {
            let Some(&a) = self
                .live
                .iter()
                .find(|&&a| self.agents[a].ready_at <= now && self.agents[a].busy < self.per)
            else {
                return;
            };
            self.queue.pop_front();
            self.agents[a].busy += 1;
            self.running_on[i] = a;
            self.out.waits_ms[i] = now - self.builds[i].queued_at;
            self.recent_waits
                .push_back((now, now - self.builds[i].queued_at));
            let end = now + self.builds[i].duration;
            self.last_finish = self.last_finish.max(end);
            self.finish_of.push(i);
            self.heap
                .push(Reverse((end, Event::Finish(self.finish_of.len() - 1))));
            self.running += 1;
        }
    }

    /// One controller reconcile: the live controller's inputs, `decide`, then the change.
    /// Returns whether the pool is at rest: unchanged, and at the size its demand asks for
    /// (no window or delay is holding it).
    fn reconcile(&mut self, now: i64) -> bool {
        let forecast = self.forecaster.as_mut().and_then(|f| f.demand_ahead(now));
        let agents = &self.agents;
        let ready = self
            .live
            .iter()
            .filter(|&&i| agents[i].ready_at <= now)
            .count() as u32;
        let busy_executors: u32 = self.live.iter().map(|&i| agents[i].busy).sum();
        let idle_executors: u32 = self
            .live
            .iter()
            .filter(|&&i| agents[i].ready_at <= now)
            .map(|&i| self.per - agents[i].busy)
            .sum();
        let current = self.live.len() as u32;
        let queued = self.queue.len() as u32;
        // Executors the forecast wants beyond today's demand, rounded to the nearest.
        let forecast_extra = forecast.map_or(0, |f| {
            (f.round() as u32).saturating_sub(busy_executors + queued)
        });
        let busy_agents = self.live.iter().filter(|&&i| agents[i].busy > 0).count() as u32;
        // Only `keep-idle` reads when its agents became idle.
        let idle_since_ms: Vec<i64> = if self.policy.policy == PolicyName::KeepIdle {
            self.live
                .iter()
                .filter(|&&i| agents[i].ready_at <= now && agents[i].busy == 0)
                .map(|&i| agents[i].idle_since)
                .collect()
        } else {
            Vec::new()
        };
        let keep_idle_empty = idle_since_ms.is_empty();
        let warm_agents = self
            .warm
            .as_mut()
            .map_or(0, |w| w.decide(now, current, busy_agents));
        let snapshot = PoolSnapshot {
            queued,
            busy_executors,
            idle_executors,
            busy_agents,
            ready_agents: ready,
            pending_agents: current - ready,
            current_replicas: current,
            forecast_extra,
            warm_agents,
            idle_since_ms,
            signals: if self.multi_metric {
                self.signals(now)
            } else {
                Vec::new()
            },
            history: std::mem::take(&mut self.history),
        };
        let at = Timestamp::from_millis(now).unwrap_or(Timestamp::now());
        let (policy, _) = crate::scaling::schedule::policy_at(&self.policy, &self.schedules, at);
        let decision = decide(&snapshot, &policy, at);
        self.history = decision.history;
        let mut after = current;
        if decision.desired > current {
            for _ in current..decision.desired {
                let ready_at = now + self.startup.next_ms();
                self.agents.push(Agent {
                    created: now,
                    ready_at,
                    removed_at: None,
                    busy: 0,
                    idle_since: ready_at,
                });
                self.live.push(self.agents.len() - 1);
                self.heap
                    .push(Reverse((ready_at, Event::Ready(self.agents.len() - 1))));
            }
            after = decision.desired;
            self.out.scale_ups += 1;
        } else if decision.desired < current {
            // As the ReplicaSet does with the deletion costs set: starting pods first,
            // then idle ones; a busy agent is never chosen.
            let want = (current - decision.desired) as usize;
            let agents = &self.agents;
            let starting = self
                .live
                .iter()
                .copied()
                .filter(|&i| agents[i].ready_at > now);
            // Idle agents longest idle first.
            let mut idle: Vec<usize> = self
                .live
                .iter()
                .copied()
                .filter(|&i| agents[i].ready_at <= now && agents[i].busy == 0)
                .collect();
            idle.sort_by_key(|&i| agents[i].idle_since);
            let chosen: Vec<usize> = starting.chain(idle).take(want).collect();
            for &i in &chosen {
                if self.agents[i].busy > 0 {
                    self.out.busy_agents_removed += 1;
                }
                self.agents[i].removed_at = Some(now);
                self.out.agent_ms += now - self.agents[i].created;
            }
            self.live.retain(|i| !chosen.contains(i));
            after = current - chosen.len() as u32;
            if !chosen.is_empty() {
                self.out.scale_downs += 1;
            }
        }
        self.history.record_change(at, current, after);
        // Agents kept idle for a while leave on a later tick, with no event to wake it.
        let kept_idle = self.policy.policy == PolicyName::KeepIdle && !keep_idle_empty;
        after == current && decision.recommended == current && !kept_idle
    }

    fn signals(&mut self, now: i64) -> Vec<crate::scaling::multi_metric::Signal> {
        while self
            .recent_arrivals
            .front()
            .is_some_and(|t| now - t > 60_000)
        {
            self.recent_arrivals.pop_front();
        }
        while self
            .recent_waits
            .front()
            .is_some_and(|(t, _)| now - t > 300_000)
        {
            self.recent_waits.pop_front();
        }
        let mut waits: Vec<i64> = self.recent_waits.iter().map(|(_, w)| *w).collect();
        waits.extend(self.queue.iter().map(|&i| now - self.builds[i].queued_at));
        waits.sort_unstable();
        let p95 = if waits.is_empty() {
            0.0
        } else {
            waits[((waits.len() * 95).div_ceil(100)).max(1) - 1] as f64
        };
        let [_, _, demand, wait] = crate::scaling::multi_metric::signals(
            None,
            None,
            Some(self.recent_arrivals.len() as f64),
            Some(p95),
        );
        vec![demand, wait]
    }

    /// Agents that stay (a minimum, a static pool) count until the last build finishes:
    /// the same span for every policy.
    fn finish(mut self) -> SimOutcome {
        for &i in &self.live {
            self.out.agent_ms += (self.last_finish - self.agents[i].created).max(0);
        }
        self.out.busy_executor_ms = self.builds.iter().map(|b| b.duration).sum();
        self.out.provisioned_executor_ms = self.out.agent_ms * i64::from(self.per);
        self.out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A pool for replay tests: one executor, up to 10 agents, no window or delay.
    pub(crate) fn cfg() -> SimConfig {
        SimConfig {
            executors_per_agent: 1,
            min: 0,
            max: 10,
            idle_headroom: 0,
            behavior: Behavior {
                scale_down_delay_after_scale_up: Duration::ZERO,
                scale_down: crate::scaling::ScalingRules {
                    stabilization_window: Duration::ZERO,
                    ..Behavior::default().scale_down
                },
                ..Behavior::default()
            },
            pod_startup_ms: 60_000,
            startup_p95_ms: 60_000,
            reconcile_ms: 10_000,
            agent_hour_price: 1.0,
            forecast_params: crate::forecast::ModelParams::default(),
            warm_max_idle: 10,
            warm_window_ms: 7 * 86_400_000,
            schedules: Vec::new(),
        }
    }

    fn b(at_s: i64, dur_s: i64) -> SimBuild {
        SimBuild {
            queued_at: at_s * 1000,
            duration: dur_s * 1000,
        }
    }

    #[test]
    fn one_build_waits_the_start_up_then_its_agent_goes() {
        let out = replay(&[b(0, 100)], SimPolicy::Queue, &cfg());
        assert_eq!(out.waits_ms, [60_000]);
        // Created at 0, ready at 60, build ends at 160, removed at the next tick (160).
        assert_eq!(out.agent_ms, 160_000);
        assert_eq!(
            (out.scale_ups, out.scale_downs, out.busy_agents_removed),
            (1, 1, 0)
        );
    }

    #[test]
    fn static_agents_serve_fifo() {
        // One agent: the second build waits for the first to finish.
        let out = replay(&[b(0, 100), b(10, 50)], SimPolicy::Static(1), &cfg());
        assert_eq!(out.waits_ms, [0, 90_000]);
        assert_eq!(
            out.agent_ms, 150_000,
            "from the first arrival to the last finish"
        );
        let two = replay(&[b(0, 100), b(10, 50)], SimPolicy::Static(2), &cfg());
        assert_eq!(two.waits_ms, [0, 0]);
        assert_eq!(two.agent_ms, 200_000);
    }

    #[test]
    fn executors_per_agent_pack_builds() {
        let mut c = cfg();
        c.executors_per_agent = 2;
        let out = replay(&[b(0, 100), b(0, 100)], SimPolicy::Queue, &c);
        // ceil(2 queued / 2) = 1 agent; both start when it is ready.
        assert_eq!(out.waits_ms, [60_000, 60_000]);
        assert_eq!(out.agent_ms, 160_000);
        assert_eq!(out.busy_executor_ms, 200_000);
        assert_eq!(out.provisioned_executor_ms, 320_000);
    }

    #[test]
    fn warm_agents_take_the_next_build_without_waiting() {
        let mut c = cfg();
        c.behavior.scale_down.stabilization_window = Duration::from_secs(300);
        // The second build arrives while the first agent is idle but kept by the window.
        let out = replay(&[b(0, 100), b(200, 10)], SimPolicy::Queue, &c);
        assert_eq!(out.waits_ms, [60_000, 0]);
    }

    #[test]
    fn the_pool_empties_after_the_window_in_a_gap_and_refills() {
        let c = SimConfig {
            behavior: Behavior::default(),
            ..cfg()
        };
        let out = replay(&[b(0, 100), b(10_000, 100)], SimPolicy::Queue, &c);
        // Busy until 160 s; the last busy tick (150 s) leaves the 300 s window at 450 s.
        assert_eq!(out.waits_ms, [60_000, 60_000]);
        assert_eq!(out.agent_ms, 2 * 450_000);
        assert_eq!((out.scale_ups, out.scale_downs), (2, 2));
    }

    #[test]
    fn keep_idle_keeps_each_agent_its_minutes_after_its_build() {
        // Two builds on two agents ending at 160 s and 260 s; kept 10 minutes each.
        let out = replay(&[b(0, 100), b(0, 200)], SimPolicy::KeepIdle(10), &cfg());
        assert_eq!(out.waits_ms, [60_000, 60_000]);
        // Removed at the first tick 600 s after each went idle (ticks every 10 s from 0).
        assert_eq!(out.agent_ms, 760_000 + 860_000);
        // A build 5 minutes after the first finish finds its agent still there.
        let again = replay(&[b(0, 100), b(460, 10)], SimPolicy::KeepIdle(10), &cfg());
        assert_eq!(again.waits_ms, [60_000, 0]);
        let gone = replay(&[b(0, 100), b(900, 10)], SimPolicy::KeepIdle(10), &cfg());
        assert_eq!(gone.waits_ms, [60_000, 60_000]);
    }

    #[test]
    fn warm_capacity_learns_when_builds_come() {
        // Four weeks of a build every 20 minutes in working hours, each 5 minutes long:
        // with a budget the pool learns to keep an agent ready then, and no build waits
        // as often as with no warm capacity.
        let day = 86_400_000i64;
        let monday = 1_699_833_600_000i64;
        let mut builds = Vec::new();
        for d in 0..28 {
            if d % 7 >= 5 {
                continue;
            }
            for i in 0..24 {
                builds.push(SimBuild {
                    queued_at: monday
                        + d * day
                        + 9 * 3_600_000
                        + i * 20 * 60_000
                        + (i * 37 % 11) * 1000,
                    duration: 5 * 60_000,
                });
            }
        }
        let c = SimConfig { max: 5, ..cfg() };
        let cold = replay(&builds, SimPolicy::Window(0), &c);
        let warm = replay(&builds, SimPolicy::Warm(100), &c);
        let at_once = |o: &SimOutcome| o.waits_ms.iter().filter(|w| **w == 0).count();
        assert_eq!(at_once(&cold), 0);
        assert!(
            at_once(&warm) > builds.len() / 3,
            "{} of {}",
            at_once(&warm),
            builds.len()
        );
        assert_eq!(warm.busy_agents_removed, 0);
        // The budget holds: idle agent-time stays near busy agent-time (100 %) plus
        // the reactive start-ups.
        let idle = warm.agent_ms - warm.busy_executor_ms;
        assert!(
            idle <= warm.busy_executor_ms * 2,
            "{idle} idle for {} busy",
            warm.busy_executor_ms
        );
    }

    #[test]
    fn each_agent_draws_its_start_up_from_the_distribution() {
        let c = SimConfig {
            pod_startup_ms: 45_000,
            startup_p95_ms: 180_000,
            ..cfg()
        };
        // Builds far apart: each waits for an agent of its own.
        let builds: Vec<SimBuild> = (0..400).map(|i| b(i * 3_600, 60)).collect();
        let mut waits = replay(&builds, SimPolicy::Window(0), &c).waits_ms;
        assert_eq!(
            waits,
            replay(&builds, SimPolicy::Window(0), &c).waits_ms,
            "repeatable"
        );
        waits.sort_unstable();
        let p50 = waits[200] as f64 / 1000.0;
        assert!(
            (35.0..55.0).contains(&p50),
            "median start-up near 45 s: {p50}"
        );
        assert!(waits[390] > 120_000, "a long tail: {}", waits[390]);
        let per_build = replay(&builds, SimPolicy::PerBuild, &c);
        assert!(
            per_build
                .waits_ms
                .iter()
                .any(|w| *w != per_build.waits_ms[0])
        );
    }

    #[test]
    fn a_schedule_keeps_its_minimum_in_its_hours_only() {
        use crate::scaling::schedule::{Schedule, ScheduleSettings};
        // 2023-11-13 is a Monday; two agents from 9 to 10 UTC.
        let nine = 1_699_866_000_000i64;
        let c = SimConfig {
            schedules: vec![
                Schedule::parse(&ScheduleSettings {
                    cron: "* 9 * * *".into(),
                    timezone: "UTC".into(),
                    min: 2,
                })
                .unwrap(),
            ],
            ..cfg()
        };
        let at = |ms: i64| SimBuild {
            queued_at: ms,
            duration: 60_000,
        };
        // A build before nine starts the pool; two at half past nine find agents ready;
        // one at eleven waits a start-up again.
        let builds = [
            at(nine - 600_000),
            at(nine + 1_800_000),
            at(nine + 1_800_000),
            at(nine + 7_200_000),
        ];
        let out = replay(&builds, SimPolicy::Window(0), &c);
        assert_eq!(out.waits_ms, [60_000, 0, 0, 60_000]);
        let none = replay(&builds, SimPolicy::Window(0), &cfg());
        assert_eq!(none.waits_ms, [60_000, 60_000, 60_000, 60_000]);
    }

    #[test]
    fn per_build_and_oracle_bounds() {
        let builds = [b(0, 100), b(10, 50), b(500, 20)];
        let pb = replay(&builds, SimPolicy::PerBuild, &cfg());
        assert_eq!(pb.waits_ms, [60_000; 3]);
        assert_eq!(pb.agent_ms, 3 * 60_000 + 170_000);
        let o = replay(&builds, SimPolicy::Oracle, &cfg());
        assert_eq!(o.waits_ms, [0, 0, 0]);
        // Two agents from 10 to 60, one from 0 to 10 and 60 to 100, one from 500 to 520.
        assert_eq!(o.agent_ms, 10_000 + 2 * 50_000 + 40_000 + 20_000);
        let q = replay(&builds, SimPolicy::Queue, &cfg());
        assert!(q.agent_ms >= o.agent_ms);
        // No agent is ready before its start-up: the first build waits all of it.
        assert_eq!(q.waits_ms[0], 60_000);
    }

    #[test]
    fn no_busy_agent_is_ever_removed_under_churn() {
        let builds: Vec<SimBuild> = (0..300).map(|i| b(i * 7, 30 + (i * 13) % 200)).collect();
        for p in [
            SimPolicy::Queue,
            SimPolicy::SeedQueueHalf,
            SimPolicy::Static(3),
            SimPolicy::MultiMetric,
            SimPolicy::Predictive,
            SimPolicy::Window(30),
            SimPolicy::KeepIdle(10),
            SimPolicy::Headroom(1),
            SimPolicy::Warm(50),
        ] {
            let out = replay(&builds, p, &cfg());
            assert_eq!(out.busy_agents_removed, 0);
            assert_eq!(out.waits_ms.len(), 300);
            assert!(out.busy_executor_ms <= out.provisioned_executor_ms, "{p:?}");
        }
    }
}
