//! Warm capacity under a budget: how many idle agents a pool keeps ready ahead of demand.
//!
//! A pool learns from its own history when builds come ([`model`]). The k-th idle agent
//! is worth the builds per hour it is expected to start at once; agents worth the price
//! are kept, the price being the one at which the same rule would have spent the budget
//! over the last window of the history (set at each daily refit). No agent is kept once
//! the window's idle agent-hours, booked in a [`Ledger`] from what the pool really had,
//! reach the budget: a wrong model cannot overspend. Pure: the history, the ledger and
//! the clock come in; nothing here reads a clock or a store.

mod arrivals;
pub mod model;

pub use arrivals::{ArrivalsNow, BURST_GAP_MS};
pub use model::{ArrivalModel, FitSettings};
use model::{DAY_MS, HOUR_MS};
use serde::Serialize;
use std::collections::VecDeque;

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

/// A history of `now` builds has grown by more than a quarter since it held `then`: worth
/// refitting the model and replaying it again before the day is out.
pub fn grew_by_a_quarter(now: usize, then: usize) -> bool {
    now > then + then / 4
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
        // Without a model the history is small (fewer bursts than a model needs): it is
        // tried again as soon as a build arrives; a history that grew by a quarter (a new
        // install filling up) is refitted at once.
        let grown = grew_by_a_quarter(arrivals.len(), self.fitted_arrivals);
        let new_data = self.model.is_none() && arrivals.len() != self.fitted_arrivals;
        if now >= self.next_fit_ms || new_data || grown {
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
                    from..now,
                    policy.budget * demand - reactive,
                    policy.max_idle,
                    policy.startup_ms,
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
    let k = model.agents_worth(price, now, arrivals, policy.max_idle, policy.startup_ms);
    d.agents = k;
    d.reason = format!(
        "{k} idle agent(s) kept: the first worth {:.2} builds at once per hour, price {price:.2}; {spent:.1} of {allowed:.1} idle agent-hours spent",
        d.worth_first
    );
    d
}

#[cfg(test)]
mod tests {
    use super::model::{day_of_week, hour_of_day};
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
        m.calibrate(&a, &[], from..until, 10.0, p.max_idle, p.startup_ms);
        let tight = m.price.unwrap();
        // ... a hundred buy more of them, at a lower price.
        m.calibrate(&a, &[], from..until, 100.0, p.max_idle, p.startup_ms);
        let loose = m.price.unwrap();
        assert!(loose < tight, "{loose} < {tight}");
        let wed_noon = until + 2 * DAY_MS + 12 * HOUR_MS;
        let wed_3am = until + 2 * DAY_MS + 3 * HOUR_MS;
        let last = |t: i64| ArrivalsNow {
            last_ms: Some(t - 5 * 60_000),
            ..Default::default()
        };
        assert!(m.agents_worth(loose, wed_noon, last(wed_noon), p.max_idle, p.startup_ms) >= 1);
        let night = ArrivalsNow {
            last_ms: Some(wed_3am - 10 * HOUR_MS),
            ..Default::default()
        };
        assert_eq!(
            m.agents_worth(tight, wed_3am, night, p.max_idle, p.startup_ms),
            0
        );
        // Nothing to spend: nothing is worth keeping.
        m.calibrate(&a, &[], from..until, 0.0, p.max_idle, p.startup_ms);
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
