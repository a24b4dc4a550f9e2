//! The arrival model of a warm pool: when bursts of builds begin (a Poisson rate, the
//! product of an hour-of-day, a day-of-week, a time-since-the-last-arrival and a
//! time-since-the-last-finish factor, fitted by iterative proportional fitting with old
//! weeks fading), how many builds a burst holds, what the k-th idle agent is worth in
//! builds started at once per hour, and the price that spends a budget on the most
//! valuable agent-minutes of a history. Pure.

use super::arrivals::ArrivalsNow;
use serde::Serialize;

pub(super) const HOUR_MS: i64 = 3_600_000;
pub(super) const DAY_MS: i64 = 24 * HOUR_MS;
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

pub(super) fn hour_of_day(ms: i64) -> usize {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as usize
}

/// Day of the week, 0 = Monday (1970-01-01 was a Thursday).
pub(super) fn day_of_week(ms: i64) -> usize {
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
    pub fn agents_worth(
        &self,
        price: f64,
        now: i64,
        arrivals: ArrivalsNow,
        max_idle: u32,
        startup_ms: i64,
    ) -> u32 {
        let mut k = 0;
        while k < max_idle && self.worth(k as usize + 1, now, arrivals, startup_ms) >= price {
            k += 1;
        }
        k
    }

    /// Sets the price at which the rule would have spent `idle_hours` keeping agents over
    /// `span` of this history, checked once a minute (a replay of the rule on the
    /// model alone: kept agents count as idle until the next minute).
    pub fn calibrate(
        &mut self,
        arrivals: &[i64],
        finishes: &[i64],
        span: std::ops::Range<i64>,
        idle_hours: f64,
        max_idle: u32,
        startup_ms: i64,
    ) {
        let (from, until) = (span.start, span.end);
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
            for k in 1..=max_idle as usize {
                let w = self.worth(k, t, at, startup_ms);
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
