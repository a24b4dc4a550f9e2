//! The discrete-event replay of one pool. Builds arrive at their queue time, start FIFO
//! when an executor is free, and run their duration; agents take the pod start-up time to
//! become ready. Reactive policies call the very `scaling::decide` the live controller
//! calls, with the same inputs, on every arrival (as a queue webhook would trigger) and
//! at the reconcile period; scale-down removes agents that are starting or idle, never a
//! busy one.

pub use super::outcome::{SimBuild, SimOutcome};
use super::world::{Happened, World};
use crate::domain::Timestamp;
use crate::scaling::plan::{
    AgentView, DEMAND_WINDOW_MS, IdleSince, Observation, WAIT_WINDOW_MS, plan,
};
use crate::scaling::warm::{WarmPolicy, WarmState};
use crate::scaling::{History, ScalePolicy};

use super::policy::STARTUP_SEED;
pub use super::policy::{SimConfig, SimPolicy, percent};

/// What the warm policy keeps in a replay: the live pool's state; the history it would
/// read from its store is the world's (the builds arrived and finished so far).
struct WarmSim {
    policy: WarmPolicy,
    state: WarmState,
    /// Every build's queue time, in order.
    times: Vec<i64>,
}

pub use crate::scaling::plan::Trigger;

/// One reconcile's decision, for comparing a replay with the live controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDecision {
    pub at: i64,
    pub trigger: Trigger,
    pub current: u32,
    pub recommended: u32,
    pub desired: u32,
    pub rule: crate::scaling::Rule,
}

/// Replays `builds` (sorted by queue time) under `policy`.
pub fn replay(builds: &[SimBuild], policy: SimPolicy, cfg: &SimConfig) -> SimOutcome {
    replay_logged(builds, policy, cfg, None)
}

/// [`replay`], appending every reconcile's decision to `log` when given.
pub fn replay_logged(
    builds: &[SimBuild],
    policy: SimPolicy,
    cfg: &SimConfig,
    log: Option<&mut Vec<SimDecision>>,
) -> SimOutcome {
    match policy {
        SimPolicy::PerBuild => per_build(builds, cfg),
        SimPolicy::Oracle => oracle(builds, cfg),
        _ => reactive(builds, policy, cfg, log),
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

/// The world of a replay or a demo of `builds` for the pool `cfg`, with the agents a
/// policy starts with.
pub fn world_for(builds: &[SimBuild], policy: SimPolicy, cfg: &SimConfig) -> World {
    let start = builds.first().map_or(0, |b| b.queued_at);
    let initial = match policy {
        SimPolicy::Static(n) => n,
        _ => cfg.min,
    };
    World::new(
        builds,
        cfg.executors_per_agent,
        cfg.startup().sampler(STARTUP_SEED),
        initial,
        start,
    )
}

/// Runs a world to its end as the controller would see it: a reconcile at every
/// arrival (as a queue webhook triggers one) and at the reconcile period while
/// anything runs, waits or is held; `reconcile` returns whether the pool is at rest
/// (nothing held by a window or a delay), which pauses the periodic reconciles until
/// the next arrival. `clock_driven` pools (warm capacity, schedules) may start agents
/// while nothing runs: their reconciles pause only once every build has arrived. The
/// replay and the live controller's tests drive their reconciles through this one loop.
pub fn drive(
    world: &std::sync::Mutex<World>,
    reconcile_ms: i64,
    clock_driven: bool,
    mut reconcile: impl FnMut(i64, Trigger) -> bool,
) {
    let lock = || world.lock().expect("the replay's world");
    let total = lock().builds().len();
    let mut next_tick: Option<i64> = None;
    loop {
        let next_event = lock().next_at();
        let tick_first = match (next_event, next_tick) {
            (None, None) => return,
            (None, Some(_)) => true,
            // At equal times the world's events come first.
            (Some(e), Some(t)) => t < e,
            (Some(_), None) => false,
        };
        if tick_first {
            let now = next_tick.expect("checked");
            let rest = reconcile(now, Trigger::Periodic);
            let w = lock();
            let more = clock_driven && w.arrived < total;
            next_tick = if w.running == 0 && w.queue.is_empty() && rest && !more {
                None
            } else {
                Some(now + reconcile_ms)
            };
            continue;
        }
        let step = lock().step();
        if let Some((now, Happened::Arrived(_))) = step {
            reconcile(now, Trigger::Event);
            next_tick.get_or_insert(now + reconcile_ms);
        }
    }
}

fn reactive(
    builds: &[SimBuild],
    policy: SimPolicy,
    cfg: &SimConfig,
    mut log: Option<&mut Vec<SimDecision>>,
) -> SimOutcome {
    if builds.is_empty() {
        return SimOutcome::default();
    }
    let world = std::sync::Mutex::new(world_for(builds, policy, cfg));
    let mut driver = Driver::new(builds, policy, cfg);
    if matches!(policy, SimPolicy::Static(_)) {
        // A static pool never reconciles: the world runs alone.
        while world.lock().expect("the replay's world").step().is_some() {}
    } else {
        let clock_driven = driver.warm.is_some() || !cfg.schedules.is_empty();
        drive(&world, cfg.reconcile_ms, clock_driven, |now, trigger| {
            let mut w = world.lock().expect("the replay's world");
            let (rest, d) = driver.reconcile(&mut w, now, trigger);
            if let Some(log) = log.as_deref_mut() {
                log.push(d);
            }
            rest
        });
    }
    world.into_inner().expect("the replay's world").finish()
}

/// What a replay's controller keeps between reconciles: the pool's policy and
/// schedules, its behaviour history, and the forecaster or warm model it consults.
struct Driver<'a> {
    cfg: &'a SimConfig,
    policy: ScalePolicy,
    history: History,
    forecaster: Option<super::predictive::Forecaster>,
    multi_metric: bool,
    warm: Option<WarmSim>,
    /// When each agent was first seen idle, as the live controller tracks it.
    idle: IdleSince<usize>,
}

impl<'a> Driver<'a> {
    fn new(builds: &[SimBuild], policy: SimPolicy, cfg: &'a SimConfig) -> Self {
        Self {
            cfg,
            policy: policy.scale_policy(cfg),
            history: History::default(),
            forecaster: (policy == SimPolicy::Predictive)
                .then(|| {
                    let pairs: Vec<(i64, i64)> =
                        builds.iter().map(|b| (b.queued_at, b.duration)).collect();
                    super::predictive::Forecaster::new(
                        &pairs,
                        cfg.pod_startup_ms,
                        cfg.forecast_params,
                        cfg.forecast_retrain_ms,
                    )
                })
                .flatten(),
            multi_metric: policy == SimPolicy::MultiMetric,
            warm: match policy {
                SimPolicy::Warm(budget) => Some(WarmSim {
                    policy: WarmPolicy {
                        budget,
                        max_idle: cfg.warm_max_idle,
                        window_ms: cfg.warm_window_ms,
                        startup_ms: cfg.pod_startup_ms,
                        executors_per_agent: cfg.executors_per_agent.max(1),
                    },
                    state: WarmState::default(),
                    times: builds.iter().map(|b| b.queued_at).collect(),
                }),
                _ => None,
            },
            idle: IdleSince::default(),
        }
    }

    /// One controller reconcile: what the live controller gathers, the shared
    /// [`plan`], then the change. Returns whether the pool is at rest (unchanged, and at
    /// the size its demand asks for), and the decision.
    fn reconcile(&mut self, w: &mut World, now: i64, trigger: Trigger) -> (bool, SimDecision) {
        let forecast = self.forecaster.as_mut().and_then(|f| f.demand_ahead(now));
        let per = w.executors_per_agent();
        let agents = &w.agents;
        let idle = &mut self.idle;
        let views: Vec<AgentView> = w
            .live
            .iter()
            .map(|&i| {
                let a = &agents[i];
                let ready = a.ready_at <= now;
                AgentView {
                    ready,
                    busy: a.busy > 0,
                    idle_since_ms: idle.observe(i, ready && a.busy == 0, now),
                }
            })
            .collect();
        idle.keep(|&i| agents[i].removed_at.is_none());
        let busy_executors: u32 = w.live.iter().map(|&i| agents[i].busy).sum();
        let ready_agents = views.iter().filter(|a| a.ready).count() as u32;
        let idle_executors = ready_agents * per - busy_executors;
        let current = w.live.len() as u32;
        let queued = w.queue.len() as u32;
        // Executors the forecast wants beyond today's demand, rounded to the nearest.
        let forecast_extra = forecast.map_or(0, |f| {
            (f.round() as u32).saturating_sub(busy_executors + queued)
        });
        let busy_agents = views.iter().filter(|a| a.busy).count() as u32;
        let warm_agents = self.warm.as_mut().map_or(0, |s| {
            s.state
                .plan(
                    now,
                    current,
                    busy_agents,
                    &s.times[..w.arrived],
                    &w.finishes,
                    &s.policy,
                )
                .agents
        });
        let seen = Observation {
            queued,
            busy_executors,
            idle_executors,
            current_replicas: current,
            agents: views,
            warm_agents,
            forecast_extra,
            signals: if self.multi_metric {
                signals(w, now)
            } else {
                Vec::new()
            },
        };
        let at = Timestamp::from_millis(now).unwrap_or(Timestamp::now());
        let planned = plan(
            &seen,
            &self.policy,
            &self.cfg.schedules,
            std::mem::take(&mut self.history),
            at,
        );
        let decision = planned.decision;
        self.history = decision.history;
        let mut after = current;
        if decision.desired > current {
            w.add_agents(decision.desired - current, now);
            after = decision.desired;
        } else if !planned.victims.is_empty() {
            let chosen: Vec<usize> = planned.victims.iter().map(|&v| w.live[v]).collect();
            w.remove_agents(&chosen, now);
            after = current - chosen.len() as u32;
        }
        self.history.record_change(at, current, after);
        let rest = crate::scaling::plan::at_rest(&self.policy, &seen, decision.recommended, after);
        (
            rest,
            SimDecision {
                at: now,
                trigger,
                current,
                recommended: decision.recommended,
                desired: after,
                rule: decision.rule,
            },
        )
    }
}

/// The demand-rate and queue-wait signals over the same windows the live controller
/// reads them.
fn signals(w: &mut World, now: i64) -> Vec<crate::scaling::multi_metric::Signal> {
    while w
        .recent_arrivals
        .front()
        .is_some_and(|t| now - t > DEMAND_WINDOW_MS)
    {
        w.recent_arrivals.pop_front();
    }
    while w
        .recent_waits
        .front()
        .is_some_and(|(t, _)| now - t > WAIT_WINDOW_MS)
    {
        w.recent_waits.pop_front();
    }
    let mut waits: Vec<i64> = w.recent_waits.iter().map(|(_, x)| *x).collect();
    waits.extend(w.queue.iter().map(|&i| now - w.builds()[i].queued_at));
    crate::scaling::plan::signals((None, None), Some(w.recent_arrivals.len()), Some(waits))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scaling::{Behavior, PolicyName};
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
            forecast_retrain_ms: 86_400_000,
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
        let out = replay(
            &[b(0, 100), b(0, 200)],
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            &cfg(),
        );
        assert_eq!(out.waits_ms, [60_000, 60_000]);
        // Removed at the first tick 600 s after each went idle (ticks every 10 s from 0).
        assert_eq!(out.agent_ms, 760_000 + 860_000);
        // A build 5 minutes after the first finish finds its agent still there.
        let again = replay(
            &[b(0, 100), b(460, 10)],
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            &cfg(),
        );
        assert_eq!(again.waits_ms, [60_000, 0]);
        let gone = replay(
            &[b(0, 100), b(900, 10)],
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            &cfg(),
        );
        assert_eq!(gone.waits_ms, [60_000, 60_000]);
    }

    #[test]
    fn a_keep_idle_pool_at_its_minimum_rests() {
        // Two agents always idle at the minimum: nothing leaves, the replay ends.
        let c = SimConfig { min: 2, ..cfg() };
        let out = replay(
            &[b(0, 100), b(5_000, 100)],
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            &c,
        );
        assert_eq!(out.waits_ms, [0, 0]);
        assert_eq!(out.agent_ms, 2 * 5_100_000);
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
        let warm = replay(&builds, SimPolicy::Warm(1.0), &c);
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
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            SimPolicy::Headroom(1),
            SimPolicy::Warm(0.5),
        ] {
            let out = replay(&builds, p, &cfg());
            assert_eq!(out.busy_agents_removed, 0);
            assert_eq!(out.waits_ms.len(), 300);
            assert!(out.busy_executor_ms <= out.provisioned_executor_ms, "{p:?}");
        }
    }

    /// A pool replays with its own budget and keep-idle time, not rounded ones: a budget
    /// of 12.5 % was replayed (and guarded) as 13 %, and 90 s as 60 s.
    #[test]
    fn a_pool_replays_with_its_own_budget_and_keep_idle_time() {
        let mut p: crate::config::PoolSettings = serde_yaml::from_str(
            "{controller: prod, label: linux, namespace: ci, deployment: a, policy: warm, \
             warm: {budget: 12.5%}, keep_idle: 90s}",
        )
        .unwrap();
        let settings = crate::config::Settings::load(None, Vec::new()).unwrap();
        let pool = crate::config::PoolPolicy::from(&p);
        assert_eq!(SimPolicy::from(&pool), SimPolicy::Warm(0.125));
        let live = pool.warm_starting_in(Duration::from_secs(60));
        let replay_cfg = SimConfig::new(&pool, &settings);
        assert_eq!(replay_cfg.warm_window_ms, live.window_ms);
        let driver = Driver::new(&[], SimPolicy::from(&pool), &replay_cfg);
        assert_eq!(driver.warm.as_ref().unwrap().policy.budget, live.budget);
        let verdict = super::super::guard::warm_verdict(&[b(0, 100)], &cfg(), live.budget);
        assert_eq!(verdict.warm.setting, "12.5%");
        assert_eq!(SimPolicy::Warm(0.125).name(), "warm:12.5");
        assert_eq!(SimPolicy::parse("warm:12.5"), Some(SimPolicy::Warm(0.125)));

        p.policy = PolicyName::KeepIdle;
        let pool = crate::config::PoolPolicy::from(&p);
        let replayed = SimPolicy::from(&pool).scale_policy(&SimConfig::new(&pool, &settings));
        assert_eq!(replayed, pool.scale());
        assert_eq!(replayed.keep_idle_ms, 90_000);
        assert_eq!(SimPolicy::from(&pool).name(), "keep-idle:1m 30s");
        assert_eq!(
            SimPolicy::parse("keep-idle:90s"),
            Some(SimPolicy::KeepIdle(Duration::from_secs(90)))
        );
        assert_eq!(
            SimPolicy::parse("keep-idle:10"),
            Some(SimPolicy::KeepIdle(Duration::from_secs(600)))
        );
    }
}
