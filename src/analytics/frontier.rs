//! The frontier of each pool's own recorded history: its finished builds of a range
//! replayed under every frontier policy and under the pool's current settings
//! (`sim::pool_frontier`), on a blocking thread. The pools API, the dashboard and the
//! HTML report show it.

use super::Range;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::sim::{PoolFrontier, SimConfig, SimPolicy, pool_frontier};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::sync::Arc;

/// Most builds one pool's frontier replays: the newest of the range.
pub const MAX_BUILDS: usize = 100_000;

/// One pool's frontier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    pub pool: String,
    /// Finished builds of the pool in the range (the newest [`MAX_BUILDS`] are replayed).
    pub builds_in_range: usize,
    #[serde(flatten)]
    pub frontier: PoolFrontier,
}

/// The frontier of every pool (or only `pool`) over `range`; `slot` (a replay's place) is
/// held until the replay's thread is done, and dropping the future stops the replay.
pub async fn pool_frontiers<S: Send + 'static>(
    store: &Store,
    settings: Arc<Settings>,
    range: Range,
    pool: Option<&str>,
    metrics: &Metrics,
    slot: S,
) -> Result<Vec<Replayed>, StoreError> {
    let per_pool = super::optimize::pool_builds(store, &settings, range, |_| {}).await?;
    let names: Vec<String> = settings
        .scaling
        .pools
        .keys()
        .filter(|n| pool.is_none_or(|p| p == n.as_str()))
        .cloned()
        .collect();
    super::replay::on_blocking_thread(metrics, slot, move |stop| {
        let mut per_pool = per_pool;
        names
            .into_iter()
            .map(|name| {
                let mut builds = per_pool.remove(&name).unwrap_or_default();
                let in_range = builds.len();
                builds.drain(..in_range.saturating_sub(MAX_BUILDS));
                let p = crate::config::PoolPolicy::from(&settings.scaling.pools[&name]);
                let cfg = SimConfig::new(&p, &settings);
                Some(Replayed {
                    frontier: pool_frontier(&builds, &cfg, SimPolicy::from(&p), &|| stop.asked())?,
                    pool: name,
                    builds_in_range: in_range,
                })
            })
            .collect()
    })
    .await
}
