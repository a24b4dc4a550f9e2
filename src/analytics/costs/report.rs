//! What a cost answer holds: its rows and groups, the money in them, and how each build
//! was priced.

use super::*;
use crate::analytics::round;

/// How the breakdown is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Job,
    Pool,
    Controller,
    Label,
}

impl GroupBy {
    pub fn parse(raw: &str) -> Result<Self, crate::domain::NotOneOf> {
        match raw {
            "job" => Ok(Self::Job),
            "pool" => Ok(Self::Pool),
            "controller" => Ok(Self::Controller),
            "label" => Ok(Self::Label),
            _ => Err(crate::domain::NotOneOf("job, pool, controller or label")),
        }
    }
}

/// Money by resource, with its total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Money {
    pub cpu: f64,
    pub memory: f64,
    pub storage: f64,
    /// The part of the total paid for agents no build used.
    pub idle: f64,
    pub total: f64,
}

impl From<Breakdown> for Money {
    fn from(b: Breakdown) -> Self {
        Self {
            cpu: round(b.cpu),
            memory: round(b.memory),
            storage: round(b.storage),
            idle: round(b.idle),
            total: round(b.total()),
        }
    }
}

/// One group of the breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Row {
    /// The job, pool, controller or label; `(idle)` for idle agents outside any build,
    /// `(no pool)` for builds outside every pool, `(none)` for builds without a label.
    pub key: String,
    pub builds: u64,
    pub cost: Money,
    /// Of the range's total, percent.
    pub share_percent: f64,
}

impl CostReport {
    /// Keeps the `limit` costliest rows of the breakdown and folds the rest into one row,
    /// `(N others)`, so the rows still add up to the total and an answer over tens of
    /// thousands of jobs stays small.
    pub fn keep_top(&mut self, limit: usize) {
        if self.breakdown.len() <= limit {
            return;
        }
        let rest = self.breakdown.split_off(limit);
        let mut other = Row {
            key: format!("({} others)", rest.len()),
            builds: 0,
            cost: Money::default(),
            share_percent: 0.0,
        };
        for r in &rest {
            other.builds += r.builds;
            other.cost.cpu += r.cost.cpu;
            other.cost.memory += r.cost.memory;
            other.cost.storage += r.cost.storage;
            other.cost.idle += r.cost.idle;
            other.cost.total += r.cost.total;
            other.share_percent += r.share_percent;
        }
        other.cost = Money {
            cpu: round(other.cost.cpu),
            memory: round(other.cost.memory),
            storage: round(other.cost.storage),
            idle: round(other.cost.idle),
            total: round(other.cost.total),
        };
        other.share_percent = (other.share_percent * 10.0).round() / 10.0;
        self.breakdown.push(other);
    }
}

/// How many builds were priced from what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PricedBy {
    /// Their own usage report's requests.
    pub report: u64,
    /// Their executor's share of their pool's agent.
    pub pool: u64,
    /// `cost.default_build`.
    pub default: u64,
}

/// The cost of a range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostReport {
    pub range: Range,
    pub hours: f64,
    pub currency: String,
    pub group_by: GroupBy,
    pub total: Money,
    pub builds: u64,
    pub priced_by: PricedBy,
    /// Total / hours of the range.
    pub hourly_rate: f64,
    /// The hourly rate over a month (730.5 hours).
    pub monthly_projection: f64,
    /// The previous range of the same length.
    pub previous_total: Option<f64>,
    /// Change of the total against the previous range, percent.
    pub trend_percent: Option<f64>,
    /// Largest first; the rows add up to the total.
    pub breakdown: Vec<Row>,
    #[schema(value_type = Object)]
    pub pools: BTreeMap<String, PoolCost>,
    pub alerts: Vec<Alert>,
}
