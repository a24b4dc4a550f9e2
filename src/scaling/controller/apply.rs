//! Apply: a plan made real on the cluster. Before a scale-in busy pods get a high
//! deletion cost and the plan's victims a low one, so the ReplicaSet removes exactly
//! them; with `drain`, the victims' Jenkins nodes are taken offline and checked idle
//! again first, and a node that turned busy is brought back and kept.

use super::gather::Gathered;
use super::ports::{ClusterApi, ReconcileError};
use super::{Context, PoolWorker};
use crate::kube::PoolState;
use crate::scaling::plan::Plan;
use std::collections::{BTreeMap, HashSet};

/// Deletion cost given to pods whose agent is busy: removed last.
pub const BUSY_COST: i32 = 10_000;
/// Deletion cost given to the pods a scale-in removes: removed first.
pub const IDLE_COST: i32 = -100;
/// Deletion cost given to idle pods that stay.
pub const KEPT_COST: i32 = 0;
/// Deletion cost given to pods drained for removal.
pub const DRAINED_COST: i32 = -1_000;

impl PoolWorker {
    /// Sets the Deployment to the plan's size; returns the replicas set (fewer removed
    /// than planned when a drained node turned busy).
    pub(super) async fn apply(
        &self,
        ctx: &Context,
        cluster: &dyn ClusterApi,
        state: &PoolState,
        g: &Gathered,
        plan: &Plan,
    ) -> Result<u32, ReconcileError> {
        let ns = &self.settings.namespace;
        let dep = &self.settings.deployment;
        let current = g.seen.current_replicas;
        let desired = plan.decision.desired;
        let mut target = desired;
        if desired < current {
            let busy: HashSet<&str> = g.busy_nodes.iter().map(String::as_str).collect();
            let victims: HashSet<&str> =
                plan.victims.iter().map(|&i| g.names[i].as_str()).collect();
            let mut costs: BTreeMap<String, i32> = state
                .pods
                .iter()
                .map(|p| {
                    let name = p.name.as_str();
                    let cost = if busy.contains(name) {
                        BUSY_COST
                    } else if victims.contains(name) {
                        IDLE_COST
                    } else {
                        KEPT_COST
                    };
                    (p.name.clone(), cost)
                })
                .collect();
            if self.settings.drain {
                let names: Vec<&str> = plan.drain.iter().map(|&i| g.names[i].as_str()).collect();
                let drained = self.drain(ctx, &names).await;
                for (name, ok) in &drained {
                    costs.insert(name.clone(), if *ok { DRAINED_COST } else { BUSY_COST });
                }
                // Remove what starts, and what was drained and is still idle.
                let starting = plan.victims.len() - plan.drain.len();
                let removable = (starting + drained.iter().filter(|(_, ok)| *ok).count()) as u32;
                target = current - removable.min(current - desired);
            }
            cluster.set_deletion_costs(ns, &state.pods, &costs).await?;
        }
        if target != current {
            cluster
                .scale(ns, dep, target, state.resource_version.clone())
                .await?;
        }
        Ok(target)
    }

    /// Takes the named idle agents offline; returns each with whether it is still idle
    /// after going offline (those that turned busy are brought back online).
    async fn drain(&self, ctx: &Context, nodes: &[&str]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for &name in nodes {
            let result = async {
                ctx.jenkins
                    .set_offline(name, true, "jenkins-autopilot: scaling in")
                    .await?;
                let again = ctx.jenkins.computer(name).await?;
                if again.idle {
                    Ok(true)
                } else {
                    ctx.jenkins.set_offline(name, false, "").await?;
                    Ok::<bool, crate::jenkins::JenkinsError>(false)
                }
            }
            .await;
            match result {
                Ok(ok) => out.push((name.to_string(), ok)),
                Err(e) => {
                    tracing::warn!(pool = %self.name, node = %name, error = %e, "draining failed; keeping the agent");
                    out.push((name.to_string(), false));
                }
            }
        }
        out
    }
}
