//! A pool's world in memory: builds queue at their times, start FIFO on a ready agent
//! with a free executor (Jenkins fills busy agents first), run their duration and
//! finish; agents take their start-up to become ready. The replay drives it directly;
//! the live controller reaches it through [`SharedWorld`], which speaks the controller's
//! Jenkins and Kubernetes traits, so the demo and the tests run the real controller on
//! it, on a clock they move.

use super::outcome::{SimBuild, SimOutcome};
use super::startup::Sampler;
use crate::domain::{ComputerView, LabelRef};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

mod shared;
pub use shared::SharedWorld;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    // Order matters at equal times: finishes free executors before arrivals look for one.
    Finish(usize),
    Ready(usize),
    Arrival(usize),
}

/// What happened at one instant of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// Build `i` entered the queue.
    Arrived(usize),
    /// An agent became ready.
    Ready(usize),
    /// Build `i` finished.
    Finished(usize),
}

/// A build's start on an agent, for the demo's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub build: usize,
    pub agent: usize,
    pub at: i64,
}

/// One agent (a pod with its Jenkins node).
#[derive(Debug, Clone)]
pub struct Agent {
    pub created: i64,
    pub ready_at: i64,
    pub removed_at: Option<i64>,
    /// Executors running a build.
    pub busy: u32,
    /// When the agent last became idle (or ready).
    pub idle_since: i64,
    /// Taken offline in Jenkins: takes no new build.
    pub offline: bool,
    /// The pod's deletion cost, as the controller set it.
    pub deletion_cost: i32,
}

/// The world of one pool.
pub struct World {
    builds: Vec<SimBuild>,
    per: u32,
    heap: BinaryHeap<Reverse<(i64, Event)>>,
    /// Every agent ever created, by id.
    pub agents: Vec<Agent>,
    /// Ids of agents not removed, in creation order.
    pub live: Vec<usize>,
    /// Builds waiting, oldest first.
    pub queue: VecDeque<usize>,
    /// The agent each started build runs on.
    running_on: Vec<usize>,
    /// `Finish(k)` is the end of build `finish_of[k]`.
    finish_of: Vec<usize>,
    last_finish: i64,
    /// Builds running.
    pub running: usize,
    /// Builds arrived so far.
    pub arrived: usize,
    /// Finish instants so far, in order.
    pub finishes: Vec<i64>,
    /// Arrival instants not yet forgotten, for the demand-rate signal.
    pub recent_arrivals: VecDeque<i64>,
    /// (start, wait) of builds started lately, for the queue-wait signal.
    pub recent_waits: VecDeque<(i64, i64)>,
    /// Starts since the last [`World::take_log`], when recorded.
    starts: Option<Vec<Start>>,
    /// Events since the last [`World::take_log`], when recorded.
    happened: Option<Vec<(i64, Happened)>>,
    out: SimOutcome,
    startup: Sampler,
    /// Bumped on every change of the replicas, as a Deployment's resourceVersion.
    version: u64,
    now: i64,
    label: String,
    deployment: String,
}

impl World {
    /// The world of `builds` (sorted by queue time) for agents of `executors_per_agent`,
    /// with `initial` agents ready at `start`.
    pub fn new(
        builds: &[SimBuild],
        executors_per_agent: u32,
        startup: Sampler,
        initial: u32,
        start: i64,
    ) -> Self {
        let agents: Vec<Agent> = (0..initial)
            .map(|_| Agent {
                created: start,
                ready_at: start,
                removed_at: None,
                busy: 0,
                idle_since: start,
                offline: false,
                deletion_cost: 0,
            })
            .collect();
        let heap = builds
            .iter()
            .enumerate()
            .map(|(i, b)| Reverse((b.queued_at, Event::Arrival(i))))
            .collect();
        Self {
            builds: builds.to_vec(),
            per: executors_per_agent.max(1),
            heap,
            live: (0..agents.len()).collect(),
            agents,
            queue: VecDeque::new(),
            running_on: vec![usize::MAX; builds.len()],
            finish_of: Vec::new(),
            last_finish: start,
            running: 0,
            arrived: 0,
            finishes: Vec::new(),
            recent_arrivals: VecDeque::new(),
            recent_waits: VecDeque::new(),
            starts: None,
            happened: None,
            out: SimOutcome {
                waits_ms: vec![0; builds.len()],
                ..Default::default()
            },
            startup,
            version: 1,
            now: start,
            label: "pool".into(),
            deployment: "agents".into(),
        }
    }

    /// Names the pool as Jenkins and Kubernetes show it: the label its agents carry and
    /// the Deployment their pods are named after.
    pub fn named(mut self, label: &str, deployment: &str) -> Self {
        self.label = label.to_string();
        self.deployment = deployment.to_string();
        self
    }

    /// Records every event and each build's start for [`World::take_log`].
    pub fn recording(mut self) -> Self {
        self.starts = Some(Vec::new());
        self.happened = Some(Vec::new());
        self
    }

    pub fn builds(&self) -> &[SimBuild] {
        &self.builds
    }

    pub fn executors_per_agent(&self) -> u32 {
        self.per
    }

    /// The world's time: the last event's.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// When the next event happens.
    pub fn next_at(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the next event.
    pub fn step(&mut self) -> Option<(i64, Happened)> {
        let Reverse((now, event)) = self.heap.pop()?;
        self.now = self.now.max(now);
        let happened = match event {
            Event::Arrival(i) => {
                self.queue.push_back(i);
                self.recent_arrivals.push_back(now);
                self.arrived += 1;
                Happened::Arrived(i)
            }
            Event::Ready(a) => Happened::Ready(a),
            Event::Finish(k) => {
                let i = self.finish_of[k];
                let a = self.running_on[i];
                self.agents[a].busy -= 1;
                if self.agents[a].busy == 0 {
                    self.agents[a].idle_since = now;
                }
                self.finishes.push(now);
                self.running -= 1;
                Happened::Finished(i)
            }
        };
        if let Some(log) = self.happened.as_mut() {
            log.push((now, happened));
        }
        self.start_builds(now);
        Some((now, happened))
    }

    /// Runs every event up to `t`; the clock is then at `t`.
    pub fn advance_to(&mut self, t: i64) -> Vec<(i64, Happened)> {
        let mut out = Vec::new();
        while self.next_at().is_some_and(|n| n <= t) {
            out.extend(self.step());
        }
        self.now = self.now.max(t);
        out
    }

    /// The events and the starts since the last call (when recording).
    pub fn take_log(&mut self) -> (Vec<(i64, Happened)>, Vec<Start>) {
        (
            self.happened
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default(),
            self.starts.as_mut().map(std::mem::take).unwrap_or_default(),
        )
    }

    fn start_builds(&mut self, now: i64) {
        while let Some(&i) = self.queue.front() {
            let Some(&a) = self.live.iter().find(|&&a| {
                let x = &self.agents[a];
                x.ready_at <= now && x.busy < self.per && !x.offline
            }) else {
                return;
            };
            self.queue.pop_front();
            self.agents[a].busy += 1;
            self.running_on[i] = a;
            let wait = now - self.builds[i].queued_at;
            self.out.waits_ms[i] = wait;
            self.recent_waits.push_back((now, wait));
            if let Some(s) = self.starts.as_mut() {
                s.push(Start {
                    build: i,
                    agent: a,
                    at: now,
                });
            }
            let end = now + self.builds[i].duration;
            self.last_finish = self.last_finish.max(end);
            self.finish_of.push(i);
            self.heap
                .push(Reverse((end, Event::Finish(self.finish_of.len() - 1))));
            self.running += 1;
        }
    }

    /// Creates `n` agents at `now`, each ready its own start-up later.
    pub fn add_agents(&mut self, n: u32, now: i64) {
        for _ in 0..n {
            let ready_at = now + self.startup.next_ms();
            self.agents.push(Agent {
                created: now,
                ready_at,
                removed_at: None,
                busy: 0,
                idle_since: ready_at,
                offline: false,
                deletion_cost: 0,
            });
            self.live.push(self.agents.len() - 1);
            self.heap
                .push(Reverse((ready_at, Event::Ready(self.agents.len() - 1))));
        }
        self.out.scale_ups += 1;
        self.version += 1;
    }

    /// Removes the agents `ids` at `now`. Removing a busy one is counted: it never
    /// should happen.
    pub fn remove_agents(&mut self, ids: &[usize], now: i64) {
        if ids.is_empty() {
            return;
        }
        for &i in ids {
            if self.agents[i].busy > 0 {
                self.out.busy_agents_removed += 1;
            }
            self.agents[i].removed_at = Some(now);
            self.out.agent_ms += now - self.agents[i].created;
        }
        self.live.retain(|i| !ids.contains(i));
        self.out.scale_downs += 1;
        self.version += 1;
    }

    /// Sets the replicas as a ReplicaSet would: new pods to grow; to shrink, pods not
    /// ready first, then the lowest deletion cost, then the newest.
    pub fn scale_to(&mut self, replicas: u32, now: i64) {
        let current = self.live.len() as u32;
        if replicas > current {
            self.add_agents(replicas - current, now);
        } else if replicas < current {
            let mut order = self.live.clone();
            let a = &self.agents;
            order.sort_by_key(|&i| (a[i].ready_at <= now, a[i].deletion_cost, Reverse(i)));
            order.truncate((current - replicas) as usize);
            self.remove_agents(&order, now);
        }
    }

    /// What the replay measured; agents that stay count until the last build finishes.
    pub fn finish(mut self) -> SimOutcome {
        for &i in &self.live {
            self.out.agent_ms += (self.last_finish - self.agents[i].created).max(0);
        }
        self.out.busy_executor_ms = self.builds.iter().map(|b| b.duration).sum();
        self.out.provisioned_executor_ms = self.out.agent_ms * i64::from(self.per);
        self.out
    }

    /// The Jenkins node (and pod) name of agent `id`.
    pub fn agent_name(&self, id: usize) -> String {
        format!("{}-{id}", self.deployment)
    }

    fn agent_id(&self, name: &str) -> Option<usize> {
        let id: usize = name
            .strip_prefix(&self.deployment)?
            .strip_prefix('-')?
            .parse()
            .ok()?;
        (id < self.agents.len() && self.agents[id].removed_at.is_none()).then_some(id)
    }

    fn ready_ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.live
            .iter()
            .copied()
            .filter(|&i| self.agents[i].ready_at <= self.now)
    }

    fn computer(&self, id: usize) -> ComputerView {
        let a = &self.agents[id];
        ComputerView {
            display_name: self.agent_name(id),
            assigned_labels: vec![
                LabelRef {
                    name: self.label.clone(),
                },
                LabelRef {
                    name: self.agent_name(id),
                },
            ],
            idle: a.busy == 0,
            offline: a.offline,
            temporarily_offline: a.offline,
            num_executors: self.per,
            executors: (0..self.per)
                .map(|e| crate::domain::ExecutorView { idle: e >= a.busy })
                .collect(),
        }
    }
}
