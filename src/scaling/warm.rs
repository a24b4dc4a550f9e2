//! Warm capacity under a budget: how many idle agents a pool keeps ready ahead of demand.
//!
//! The pool learns from its own arrivals when builds come: the rate at which a new burst
//! of builds begins (a burst = arrivals no further apart than one pod start-up) as the
//! product of an hour-of-day, a day-of-week and a time-since-the-last-arrival factor (a
//! Poisson model fitted by iterative proportional fitting, old weeks fading with a
//! half-life), and how many builds a burst holds. The k-th idle agent is worth
//! `burst rate x P(burst holds >= k builds)` builds started at once per hour it is kept;
//! while a burst is under way, the agents for its expected further builds are started at
//! once. An agent is kept when its worth reaches the pool's price of an idle agent-hour,
//! a threshold that rises while the pool spends above its budget and falls while it spends
//! below, and no agent is kept at all once the rolling window's idle agent-hours reach the
//! budget. Pure: arrivals, the ledger and the clock come in; nothing here reads a clock.

use serde::Serialize;
use std::collections::VecDeque;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Upper bounds (ms since the last arrival or finish) of the recency buckets; the last
/// bucket is open, and also holds "never".
const RECENCY_MS: [i64; 14] = [
    30_000,
    60_000,
    2 * 60_000,
    5 * 60_000,
    10 * 60_000,
    20 * 60_000,
    40 * 60_000,
    HOUR_MS,
    2 * HOUR_MS,
    4 * HOUR_MS,
    8 * HOUR_MS,
    16 * HOUR_MS,
    DAY_MS,
    3 * DAY_MS,
];
const RECENCY: usize = RECENCY_MS.len() + 1;
/// Levels of each factor: hour of day, day of week, time since the last arrival, time
/// since the last finish.
const LEVELS: [usize; 4] = [24, 7, RECENCY, RECENCY];
const CELLS: usize = 24 * 7 * RECENCY * RECENCY;
/// Largest burst counted by size; larger ones count as this size.
const MAX_BURST: usize = 256;

fn recency_bucket(since_ms: Option<i64>) -> usize {
    since_ms.map_or(RECENCY - 1, |s| {
        RECENCY_MS
            .iter()
            .position(|&b| s < b)
            .unwrap_or(RECENCY - 1)
    })
}

/// The next instant after `t` at which the bucket of the time since `last` changes.
fn next_recency_change(t: i64, last: Option<i64>) -> i64 {
    last.and_then(|l| RECENCY_MS.iter().map(|b| l + b).find(|&x| x > t))
        .unwrap_or(i64::MAX)
}

fn hour_of_day(ms: i64) -> usize {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as usize
}

/// Day of the week, 0 = Monday (1970-01-01 was a Thursday).
fn day_of_week(ms: i64) -> usize {
    (ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize
}

/// The levels of the four factors at `t`.
fn levels(t: i64, last_arrival: Option<i64>, last_finish: Option<i64>) -> [usize; 4] {
    [
        hour_of_day(t),
        day_of_week(t),
        recency_bucket(last_arrival.map(|l| t - l)),
        recency_bucket(last_finish.map(|l| t - l)),
    ]
}

fn cell(l: [usize; 4]) -> usize {
    ((l[0] * 7 + l[1]) * RECENCY + l[2]) * RECENCY + l[3]
}

fn unpack(mut c: usize) -> [usize; 4] {
    let f = c % RECENCY;
    c /= RECENCY;
    let a = c % RECENCY;
    c /= RECENCY;
    [c / 7, c % 7, a, f]
}

/// When bursts of builds begin and how big they are, learned from a pool's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrivalModel {
    /// Bursts per hour are the product of one value per factor: hour of day, day of
    /// week, time since the last arrival, time since the last finish.
    factors: [Vec<f64>; 4],
    /// `tail[k]` = P(a burst holds at least k builds); `tail[0] = tail[1] = 1`.
    tail: Vec<f64>,
    /// Arrivals at most this far apart belong to one burst (the pod start-up).
    pub gap_ms: i64,
    /// Bursts the model was fitted on.
    pub bursts: usize,
    /// The span the model was fitted on (epoch ms).
    pub trained_from_ms: i64,
    pub trained_to_ms: i64,
    /// The price of an idle agent-hour set by [`ArrivalModel::calibrate`], if it ran.
    pub price: Option<f64>,
}

/// How the model is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    /// Arrivals at most this far apart belong to one burst.
    pub gap_ms: i64,
    /// Weight of an arrival halves every this long into the past.
    pub half_life_ms: i64,
    /// Fewer bursts than this: no model.
    pub min_bursts: usize,
}

impl ArrivalModel {
    /// Fits the model on the arrivals and finishes (epoch ms, each sorted) that lie in
    /// `[from, until)`. `None` when they hold fewer than `min_bursts` bursts.
    pub fn fit(
        arrivals: &[i64],
        finishes: &[i64],
        from: i64,
        until: i64,
        s: FitSettings,
    ) -> Option<Self> {
        let within = |xs: &[i64]| -> Vec<i64> {
            xs.iter()
                .copied()
                .filter(|&a| a >= from && a < until)
                .collect()
        };
        let (arrivals, finishes) = (within(arrivals), within(finishes));
        let weight = |t: i64| 0.5f64.powf((until - t) as f64 / s.half_life_ms.max(1) as f64);
        let mut exposure = vec![0.0f64; CELLS];
        let mut starts = vec![0.0f64; CELLS];
        let mut sizes = vec![0.0f64; MAX_BURST + 1];
        let mut bursts = 0usize;
        let (mut size, mut size_w) = (0usize, 0.0);
        let (mut last_a, mut last_f): (Option<i64>, Option<i64>) = (None, None);
        let (mut ia, mut jf) = (0usize, 0usize);
        let mut t = arrivals.first().copied()?;
        loop {
            let next_a = arrivals.get(ia).copied().unwrap_or(i64::MAX);
            let next_f = finishes.get(jf).copied().unwrap_or(i64::MAX);
            let next = next_a.min(next_f).min(until);
            // Exposure from t to the next event, in pieces of constant levels; none
            // within a start-up of the last arrival, where no burst can begin.
            if let Some(la) = last_a {
                let mut u = t.max(la + s.gap_ms);
                while u < next {
                    let end = next
                        .min(u - u.rem_euclid(HOUR_MS) + HOUR_MS)
                        .min(next_recency_change(u, last_a))
                        .min(next_recency_change(u, last_f));
                    exposure[cell(levels(u, last_a, last_f))] +=
                        (end - u) as f64 / HOUR_MS as f64 * weight(u);
                    u = end;
                }
            }
            if next >= until {
                break;
            }
            t = next;
            // Finishes first at equal instants.
            if next_f <= next_a {
                last_f = Some(next_f);
                jf += 1;
                continue;
            }
            let a = next_a;
            match last_a {
                Some(p) if a - p <= s.gap_ms => size += 1,
                _ => {
                    if size > 0 {
                        sizes[size.min(MAX_BURST)] += size_w;
                    }
                    if last_a.is_some() {
                        starts[cell(levels(a, last_a, last_f))] += weight(a);
                    }
                    bursts += 1;
                    size = 1;
                    size_w = weight(a);
                }
            }
            last_a = Some(a);
            ia += 1;
        }
        if size > 0 {
            sizes[size.min(MAX_BURST)] += size_w;
        }
        if bursts < s.min_bursts.max(2) {
            return None;
        }
        let factors = fit_factors(&exposure, &starts);
        let total: f64 = sizes.iter().sum();
        let mut tail = vec![0.0; MAX_BURST + 2];
        let mut acc = 0.0;
        for k in (1..=MAX_BURST).rev() {
            acc += sizes[k];
            tail[k] = acc / total;
        }
        tail[0] = 1.0;
        tail[1] = 1.0;
        Some(Self {
            factors,
            tail,
            gap_ms: s.gap_ms,
            bursts,
            trained_from_ms: from,
            trained_to_ms: until,
            price: None,
        })
    }

    /// Bursts expected to begin per hour at `now`, given the last arrival and finish.
    pub fn burst_rate(&self, now: i64, last_arrival: Option<i64>, last_finish: Option<i64>) -> f64 {
        let l = levels(now, last_arrival, last_finish);
        (0..4).map(|f| self.factors[f][l[f]]).product()
    }

    /// P(a burst holds at least `k` builds).
    pub fn tail(&self, k: usize) -> f64 {
        self.tail.get(k).copied().unwrap_or(0.0)
    }

    /// Builds per hour the `k`-th idle agent is expected to start at once: a new burst
    /// beginning, or the rest of the burst under way (its agents needed within a start-up).
    pub fn worth(&self, k: usize, now: i64, arrivals: ArrivalsNow, startup_ms: i64) -> f64 {
        // A new burst can begin only a gap after the last arrival. An agent started now
        // is ready a start-up later: the rate then counts as much as the rate now.
        let last = arrivals.last_ms.map(|l| l.min(now - self.gap_ms));
        let rate = self
            .burst_rate(now, last, arrivals.last_finish_ms)
            .max(self.burst_rate(now + startup_ms, last, arrivals.last_finish_ms));
        let fresh = rate * self.tail(k);
        let n = arrivals.in_burst as usize;
        let rest = if n > 0 && self.tail(n) > 0.0 {
            self.tail(n + k) / self.tail(n) / (startup_ms.max(1) as f64 / HOUR_MS as f64)
        } else {
            0.0
        };
        fresh.max(rest)
    }

    /// How many idle agents are worth `price` each.
    pub fn agents_worth(&self, price: f64, now: i64, arrivals: ArrivalsNow, p: &WarmPolicy) -> u32 {
        let mut k = 0;
        while k < p.max_idle && self.worth(k as usize + 1, now, arrivals, p.startup_ms) >= price {
            k += 1;
        }
        k
    }

    /// Sets the price at which the rule would have spent `idle_hours` keeping agents over
    /// `[from, until)` of this history, checked once a minute (a replay of the rule on the
    /// model alone: kept agents count as idle until the next minute).
    pub fn calibrate(
        &mut self,
        arrivals: &[i64],
        finishes: &[i64],
        from: i64,
        until: i64,
        idle_hours: f64,
        p: &WarmPolicy,
    ) {
        const STEP: i64 = 60_000;
        let mut worths: Vec<f64> = Vec::new();
        let (mut ia, mut jf) = (arrivals.partition_point(|&a| a < from - DAY_MS), 0usize);
        let mut now_a = ArrivalsNow::default();
        let mut t = from;
        while t < until {
            while jf < finishes.len() && finishes[jf] <= t {
                now_a.last_finish_ms = Some(finishes[jf]);
                jf += 1;
            }
            while ia < arrivals.len() && arrivals[ia] <= t {
                let a = arrivals[ia];
                now_a.in_burst = match now_a.last_ms {
                    Some(l) if a - l <= self.gap_ms => now_a.in_burst + 1,
                    _ => 1,
                };
                now_a.last_ms = Some(a);
                ia += 1;
            }
            let mut at = now_a;
            if at.last_ms.is_some_and(|l| t - l > self.gap_ms) {
                at.in_burst = 0;
            }
            for k in 1..=p.max_idle as usize {
                let w = self.worth(k, t, at, p.startup_ms);
                if w <= 0.0 {
                    break;
                }
                worths.push(w);
            }
            t += STEP;
        }
        // Each worth is one agent kept for a minute: the price that spends the hours is
        // the worth of the last minute-agent bought, the most valuable first.
        let minutes = (idle_hours * 60.0).floor().max(0.0) as usize;
        self.price = if minutes == 0 {
            Some(f64::INFINITY)
        } else if minutes >= worths.len() {
            Some(
                worths
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min)
                    .max(1e-9),
            )
        } else {
            let (_, nth, _) = worths.select_nth_unstable_by(minutes, |a, b| b.total_cmp(a));
            Some(*nth)
        };
    }
}

/// Poisson fit of the factors by iterative proportional fitting: each factor in turn is
/// set so that, level by level, the expected burst starts match the observed ones. A weak
/// prior (one pseudo-hour at the overall rate for the hour of day, one pseudo-start at 1
/// for the others) keeps a level seen little near the average instead of at an extreme.
fn fit_factors(exposure: &[f64], starts: &[f64]) -> [Vec<f64>; 4] {
    let mut factors: [Vec<f64>; 4] = LEVELS.map(|n| vec![1.0; n]);
    let total_starts: f64 = starts.iter().sum();
    let total_exposure: f64 = exposure.iter().sum();
    let overall = if total_exposure > 0.0 {
        total_starts / total_exposure
    } else {
        0.0
    };
    let coords: Vec<[usize; 4]> = (0..CELLS).map(unpack).collect();
    for _ in 0..20 {
        for f in 0..4 {
            let mut n = vec![0.0; LEVELS[f]];
            let mut e = vec![0.0; LEVELS[f]];
            for (c, l) in coords.iter().enumerate() {
                if exposure[c] == 0.0 && starts[c] == 0.0 {
                    continue;
                }
                let others: f64 = (0..4)
                    .filter(|&g| g != f)
                    .map(|g| factors[g][l[g]])
                    .product();
                n[l[f]] += starts[c];
                e[l[f]] += exposure[c] * others;
            }
            for (v, (n, e)) in factors[f].iter_mut().zip(n.iter().zip(&e)) {
                *v = if f == 0 {
                    (n + overall) / (e + 1.0)
                } else {
                    (n + 1.0) / (e + 1.0)
                };
            }
        }
    }
    factors
}

/// The pool's recent arrivals as the plan needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ArrivalsNow {
    /// When the last build arrived (epoch ms), if any is known.
    pub last_ms: Option<i64>,
    /// When the last build finished (epoch ms), if any is known.
    pub last_finish_ms: Option<i64>,
    /// Builds of the burst under way (0 when the last arrival is more than a start-up ago).
    pub in_burst: u32,
}

/// The warm settings of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WarmPolicy {
    /// Idle agent-hours allowed per busy agent-hour over the rolling window (0.25 = 25 %).
    pub budget: f64,
    /// Most idle agents kept.
    pub max_idle: u32,
    /// The window the budget is enforced over.
    pub window_ms: i64,
    /// Pod start-up: how long an agent takes to be ready.
    pub startup_ms: i64,
    /// Executors each agent offers: build-hours per agent-hour when all are busy.
    pub executors_per_agent: u32,
}

/// Idle and busy agent-time in a rolling window, in slots of ten minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    slot_ms: i64,
    /// (slot index, idle agent-ms, busy agent-ms), oldest first.
    slots: VecDeque<(i64, f64, f64)>,
    idle_ms: f64,
    busy_ms: f64,
    last_ms: Option<i64>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            slot_ms: 10 * 60_000,
            slots: VecDeque::new(),
            idle_ms: 0.0,
            busy_ms: 0.0,
            last_ms: None,
        }
    }
}

impl Ledger {
    /// Books the time since the last booking at the agents the pool has: `provisioned`
    /// agents of which `busy` have a build. Slots older than the window are dropped.
    pub fn book(&mut self, now: i64, provisioned: u32, busy: u32, window_ms: i64) {
        let Some(last) = self.last_ms.replace(now) else {
            return;
        };
        let dt = (now - last).max(0) as f64;
        if dt == 0.0 {
            return;
        }
        let idle = f64::from(provisioned.saturating_sub(busy)) * dt;
        let busy = f64::from(busy.min(provisioned)) * dt;
        let slot = now.div_euclid(self.slot_ms);
        match self.slots.back_mut() {
            Some(s) if s.0 == slot => {
                s.1 += idle;
                s.2 += busy;
            }
            _ => self.slots.push_back((slot, idle, busy)),
        }
        self.idle_ms += idle;
        self.busy_ms += busy;
        let oldest = (now - window_ms).div_euclid(self.slot_ms);
        while let Some(&(s, i, b)) = self.slots.front() {
            if s > oldest {
                break;
            }
            self.idle_ms -= i;
            self.busy_ms -= b;
            self.slots.pop_front();
        }
    }

    /// Idle agent-hours spent in the window, and the hours the budget allows.
    pub fn spent_and_allowed(&self, budget: f64) -> (f64, f64) {
        (
            self.idle_ms.max(0.0) / HOUR_MS as f64,
            budget * self.busy_ms.max(0.0) / HOUR_MS as f64,
        )
    }
}

/// Arrivals no further apart than this are one burst (a pipeline fanning out, a
/// workflow run starting its jobs).
pub const BURST_GAP_MS: i64 = 2_000;
/// The model is refitted daily on the last twelve weeks, old weeks fading with a
/// four-week half-life.
const REFIT_MS: i64 = DAY_MS;
const HISTORY_MS: i64 = 84 * DAY_MS;
const HALF_LIFE_MS: i64 = 28 * DAY_MS;
/// Fewer bursts than this in the history: no model, the pool stays reactive.
const MIN_BURSTS: usize = 20;

/// What a warm pool keeps between reconciles: its model, when to refit it, its ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmState {
    model: Option<ArrivalModel>,
    next_fit_ms: i64,
    /// Arrivals in the history at the last fit.
    fitted_arrivals: usize,
    ledger: Ledger,
}

impl WarmState {
    /// Whether the pool has an arrival model yet.
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// One reconcile of a warm pool: books the agents since the last one, refits and
    /// recalibrates the model once a day on the history before `now` (sooner while the
    /// history is new), and decides.
    /// `arrivals` and `finishes` are the pool's builds' queue and finish times (epoch
    /// ms, sorted), none after `now`.
    pub fn plan(
        &mut self,
        now: i64,
        provisioned: u32,
        busy: u32,
        arrivals: &[i64],
        finishes: &[i64],
        policy: &WarmPolicy,
    ) -> WarmDecision {
        self.ledger.book(now, provisioned, busy, policy.window_ms);
        // Without a model the history is small (fewer bursts than a model needs), so
        // trying again at every reconcile is cheap; a history that grew by a quarter
        // (a new install filling up) is refitted at once.
        let grown = arrivals.len() > self.fitted_arrivals + self.fitted_arrivals / 4;
        if now >= self.next_fit_ms || self.model.is_none() || grown {
            self.next_fit_ms = now + REFIT_MS;
            self.fitted_arrivals = arrivals.len();
            self.model = ArrivalModel::fit(
                arrivals,
                finishes,
                now - HISTORY_MS,
                now,
                FitSettings {
                    gap_ms: BURST_GAP_MS,
                    half_life_ms: HALF_LIFE_MS,
                    min_bursts: MIN_BURSTS,
                },
            );
            if let Some(m) = self.model.as_mut() {
                // The window's allowance on the builds' own agent-hours (so that a pool
                // calibrates from its history at once), less what reactive start-ups
                // cost anyway: one start-up for each build that arrived.
                let from = now - policy.window_ms;
                let demand = demand_hours(arrivals, finishes, from, now)
                    / f64::from(policy.executors_per_agent.max(1));
                let arrived = arrivals.len() - arrivals.partition_point(|&a| a < from);
                let reactive = arrived as f64 * policy.startup_ms as f64 / HOUR_MS as f64;
                m.calibrate(
                    arrivals,
                    finishes,
                    from,
                    now,
                    policy.budget * demand - reactive,
                    policy,
                );
            }
        }
        decide(
            self.model.as_ref(),
            ArrivalsNow::at(now, arrivals, finishes),
            &self.ledger,
            policy,
            now,
        )
    }
}

/// Build-hours in `[from, until)`: the integral of builds arrived and not finished.
fn demand_hours(arrivals: &[i64], finishes: &[i64], from: i64, until: i64) -> f64 {
    let part = |xs: &[i64]| -> f64 {
        xs.iter()
            .filter(|&&x| x < until)
            .map(|&x| (until - x.max(from)) as f64)
            .sum()
    };
    ((part(arrivals) - part(finishes)) / HOUR_MS as f64).max(0.0)
}

impl ArrivalsNow {
    /// The last arrival and finish before `now`, and the burst under way.
    pub fn at(now: i64, arrivals: &[i64], finishes: &[i64]) -> Self {
        let seen = &arrivals[..arrivals.partition_point(|&a| a <= now)];
        let last_ms = seen.last().copied();
        let mut in_burst = 0u32;
        if last_ms.is_some_and(|l| now - l <= BURST_GAP_MS) {
            in_burst = 1;
            for w in seen.windows(2).rev() {
                if w[1] - w[0] > BURST_GAP_MS {
                    break;
                }
                in_burst += 1;
            }
        }
        Self {
            last_ms,
            last_finish_ms: finishes[..finishes.partition_point(|&f| f <= now)]
                .last()
                .copied(),
            in_burst,
        }
    }
}

/// How many idle agents to keep now, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarmDecision {
    pub agents: u32,
    /// Builds per hour the first kept agent is expected to start at once.
    pub worth_first: f64,
    /// What an idle agent-hour must be worth to be kept, from the last calibration.
    pub price: Option<f64>,
    pub spent_hours: f64,
    pub allowed_hours: f64,
    pub reason: String,
}

/// The idle agents worth keeping at `now`: none without a model or once the window's
/// idle agent-hours reach the budget, else those worth the calibrated price.
pub fn decide(
    model: Option<&ArrivalModel>,
    arrivals: ArrivalsNow,
    ledger: &Ledger,
    policy: &WarmPolicy,
    now: i64,
) -> WarmDecision {
    let (spent, allowed) = ledger.spent_and_allowed(policy.budget);
    let mut d = WarmDecision {
        agents: 0,
        worth_first: 0.0,
        price: None,
        spent_hours: spent,
        allowed_hours: allowed,
        reason: String::new(),
    };
    let Some(model) = model else {
        d.reason = "too little history for an arrival model yet: reactive".into();
        return d;
    };
    let price = model.price.unwrap_or(f64::INFINITY);
    d.price = model.price;
    d.worth_first = model.worth(1, now, arrivals, policy.startup_ms);
    if spent >= allowed {
        d.reason = format!("budget spent ({spent:.1} of {allowed:.1} idle agent-hours): reactive");
        return d;
    }
    let k = model.agents_worth(price, now, arrivals, policy);
    d.agents = k;
    d.reason = format!(
        "{k} idle agent(s) kept: the first worth {:.2} builds at once per hour, price {price:.2}; {spent:.1} of {allowed:.1} idle agent-hours spent",
        d.worth_first
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONDAY: i64 = 1_699_833_600_000; // 2023-11-13 00:00 UTC

    fn fit(arrivals: &[i64], until: i64) -> ArrivalModel {
        ArrivalModel::fit(
            arrivals,
            &[],
            arrivals[0],
            until,
            FitSettings {
                gap_ms: 60_000,
                half_life_ms: 28 * DAY_MS,
                min_bursts: 5,
            },
        )
        .expect("enough bursts")
    }

    /// Poisson arrivals at `per_hour` wherever `active` holds, from a fixed seed.
    fn poisson(from: i64, until: i64, per_hour: f64, active: impl Fn(i64) -> bool) -> Vec<i64> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut out = Vec::new();
        let mut t = from;
        while t < until {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let u = ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            t += (-u.ln() / per_hour * HOUR_MS as f64) as i64 + 1;
            if active(t) {
                out.push(t);
            }
        }
        out
    }

    fn working_hours(t: i64) -> bool {
        day_of_week(t) < 5 && (9..17).contains(&hour_of_day(t))
    }

    #[test]
    fn weekday_working_hours_are_busier_than_nights_and_weekends() {
        let until = MONDAY + 28 * DAY_MS;
        let a = poisson(MONDAY, until, 3.0, working_hours);
        let m = fit(&a, until);
        let ago = |t: i64, ms: i64| Some(t - ms);
        let tue_10 = until + DAY_MS + 10 * HOUR_MS;
        let tue_3 = until + DAY_MS + 3 * HOUR_MS;
        let sat_10 = until + 5 * DAY_MS + 10 * HOUR_MS;
        let busy = m.burst_rate(tue_10, ago(tue_10, 15 * 60_000), None);
        assert!((1.5..6.0).contains(&busy), "about 3 an hour: {busy}");
        assert!(m.burst_rate(tue_3, ago(tue_3, 10 * HOUR_MS), None) < busy / 10.0);
        assert!(m.burst_rate(sat_10, ago(sat_10, 41 * HOUR_MS), None) < busy / 10.0);
    }

    #[test]
    fn bursts_are_counted_by_size() {
        // Every day at noon a burst of four builds 10 s apart, and one lone build at 15:00.
        let mut a = Vec::new();
        for d in 0..20 {
            let noon = MONDAY + d * DAY_MS + 12 * HOUR_MS;
            a.extend((0..4).map(|i| noon + i * 10_000));
            a.push(noon + 3 * HOUR_MS);
        }
        let m = fit(&a, MONDAY + 20 * DAY_MS);
        assert_eq!(m.bursts, 40);
        assert!((m.tail(2) - 0.5).abs() < 0.05, "{}", m.tail(2));
        assert!((m.tail(4) - 0.5).abs() < 0.05);
        assert_eq!(m.tail(5), 0.0);
    }

    fn policy(budget: f64) -> WarmPolicy {
        WarmPolicy {
            budget,
            max_idle: 8,
            window_ms: 7 * DAY_MS,
            startup_ms: 60_000,
            executors_per_agent: 1,
        }
    }

    #[test]
    fn a_spent_budget_keeps_nothing_warm() {
        let a: Vec<i64> = (0..200).map(|i| MONDAY + i * 20 * 60_000).collect();
        let m = fit(&a, MONDAY + 200 * 20 * 60_000);
        let p = policy(0.25);
        let mut m = m;
        m.price = Some(0.0);
        let mut l = Ledger::default();
        // An hour with one busy agent allows a quarter of an idle hour; two idle agents
        // for that hour spend eight times as much.
        l.book(MONDAY, 3, 1, p.window_ms);
        l.book(MONDAY + HOUR_MS, 3, 1, p.window_ms);
        assert_eq!(l.spent_and_allowed(p.budget), (2.0, 0.25));
        let now = MONDAY + HOUR_MS;
        let d = decide(Some(&m), ArrivalsNow::default(), &l, &p, now);
        assert_eq!(d.agents, 0, "{}", d.reason);
        assert!(d.reason.contains("budget spent"), "{}", d.reason);
    }

    #[test]
    fn an_unspent_budget_keeps_agents_where_builds_come() {
        let until = MONDAY + 28 * DAY_MS;
        let a = poisson(MONDAY, until, 6.0, |_| true);
        let mut m = fit(&a, until);
        m.price = Some(1.0);
        let p = policy(1.0);
        let mut l = Ledger::default();
        l.book(until - 2 * HOUR_MS, 1, 1, p.window_ms);
        l.book(until, 1, 1, p.window_ms);
        let d = decide(
            Some(&m),
            ArrivalsNow {
                last_ms: Some(until - 5 * 60_000),
                last_finish_ms: None,
                in_burst: 0,
            },
            &l,
            &p,
            until,
        );
        // Six builds an hour, one at a time: the first agent is worth about 6 an hour,
        // the second nothing.
        assert_eq!(d.agents, 1, "{}", d.reason);
        assert!((3.0..9.0).contains(&d.worth_first), "{}", d.worth_first);
    }

    #[test]
    fn calibration_spends_the_hours_on_the_busiest_minutes() {
        // Weekdays: six builds an hour from 9 to 17; nights and weekends quiet.
        let until = MONDAY + 28 * DAY_MS;
        let a = poisson(MONDAY, until, 6.0, working_hours);
        let mut m = fit(&a, until);
        let p = policy(0.5);
        let from = until - 7 * DAY_MS;
        // Ten idle agent-hours a week buy only the best working hours...
        m.calibrate(&a, &[], from, until, 10.0, &p);
        let tight = m.price.unwrap();
        // ... a hundred buy more of them, at a lower price.
        m.calibrate(&a, &[], from, until, 100.0, &p);
        let loose = m.price.unwrap();
        assert!(loose < tight, "{loose} < {tight}");
        let wed_noon = until + 2 * DAY_MS + 12 * HOUR_MS;
        let wed_3am = until + 2 * DAY_MS + 3 * HOUR_MS;
        let last = |t: i64| ArrivalsNow {
            last_ms: Some(t - 5 * 60_000),
            ..Default::default()
        };
        assert!(m.agents_worth(loose, wed_noon, last(wed_noon), &p) >= 1);
        let night = ArrivalsNow {
            last_ms: Some(wed_3am - 10 * HOUR_MS),
            ..Default::default()
        };
        assert_eq!(m.agents_worth(tight, wed_3am, night, &p), 0);
        // Nothing to spend: nothing is worth keeping.
        m.calibrate(&a, &[], from, until, 0.0, &p);
        assert_eq!(m.price, Some(f64::INFINITY));
    }

    #[test]
    fn a_new_pool_stays_reactive_until_it_has_history() {
        let p = policy(0.25);
        let mut w = WarmState::default();
        let a = [MONDAY, MONDAY + HOUR_MS];
        let d = w.plan(MONDAY + 2 * HOUR_MS, 1, 0, &a, &[], &p);
        assert_eq!(d.agents, 0);
        assert!(d.reason.contains("too little history"), "{}", d.reason);
    }

    #[test]
    fn demand_hours_count_builds_running_in_the_window() {
        // One build 0-2 h, one 1-5 h; the window 1-4 h holds 1 + 3 hours of them.
        let h = HOUR_MS;
        assert_eq!(demand_hours(&[0, h], &[2 * h, 5 * h], h, 4 * h), 4.0);
    }

    #[test]
    fn bursts_under_way_are_counted_from_the_end() {
        let a = [0, 10_000, 11_000, 12_500, 13_000];
        let now = ArrivalsNow::at(14_000, &a, &[5_000, 20_000]);
        assert_eq!(now.in_burst, 4);
        assert_eq!(now.last_ms, Some(13_000));
        assert_eq!(now.last_finish_ms, Some(5_000));
        assert_eq!(ArrivalsNow::at(30_000, &a, &[]).in_burst, 0);
    }
}
