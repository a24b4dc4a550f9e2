//! Apply: a plan made real on the cluster. Whenever the ReplicaSet is to remove pods (a
//! scale-in, or one still in flight: more live pods than the replicas asked for) busy pods
//! get a high deletion cost and the plan's victims a low one, so the ReplicaSet removes
//! exactly them; with `drain`, the victims' Jenkins nodes are taken offline and checked
//! idle again first, and a node that turned busy is brought back and kept.

use super::ReconcileError;
use super::gather::Gathered;
use super::{Context, PoolWorker};
use crate::kube::{PodState, PoolState};
use crate::scaling::plan::Plan;
use crate::scaling::ports::ClusterApi;
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
        &mut self,
        ctx: &Context,
        cluster: &dyn ClusterApi,
        state: &PoolState,
        g: &Gathered,
        plan: &Plan,
        problems: &mut Vec<String>,
    ) -> Result<u32, ReconcileError> {
        let (ns, dep) = (
            self.settings.namespace.clone(),
            self.settings.deployment.clone(),
        );
        let current = g.seen.current_replicas;
        let desired = plan.decision.desired;
        let mut target = desired;
        // A real ReplicaSet removes pods a moment after their replicas drop: until then a
        // pool holds more live pods than replicas, and whichever it removes go by the
        // costs of now, not of the scale-in that started it.
        let live = state.pods.iter().filter(|p| !p.terminating).count();
        if desired < current || (desired as usize) < live {
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
            if self.settings.drain && desired < current {
                let names: Vec<&str> = plan.drain.iter().map(|&i| g.names[i].as_str()).collect();
                let drained = self.drain(ctx, &names, problems).await;
                for (name, ok) in &drained {
                    costs.insert(name.clone(), if *ok { DRAINED_COST } else { BUSY_COST });
                }
                // Remove what starts, and what was drained and is still idle.
                let starting = plan.victims.len() - plan.drain.len();
                let removable = (starting + drained.iter().filter(|(_, ok)| *ok).count()) as u32;
                target = current - removable.min(current - desired);
            }
            // A pod that just turned busy is protected only once the ReplicaSet controller
            // has seen its new cost.
            let raised = state.pods.iter().any(|p| {
                !p.terminating
                    && costs.get(&p.name) == Some(&BUSY_COST)
                    && p.deletion_cost != Some(BUSY_COST)
            });
            cluster.set_deletion_costs(&ns, &state.pods, &costs).await?;
            if raised {
                tokio::time::sleep(cluster.costs_settle()).await;
            }
            // Busy as marked: what Jenkins said, and what turned busy while draining.
            let busy: HashSet<&str> = costs
                .iter()
                .filter(|(_, c)| **c == BUSY_COST)
                .map(|(n, _)| n.as_str())
                .collect();
            let floor = live - removable_without_busy(&state.pods, &busy);
            if (target as usize) < floor {
                problems.push(format!(
                    "{} of the pods the ReplicaSet would remove first are not Ready and run \
                     a build: kept {floor} replicas, not {target}",
                    floor - target as usize
                ));
                target = floor as u32;
            }
        }
        if target != current {
            cluster
                .scale(crate::domain::ScaleTo {
                    namespace: &ns,
                    deployment: &dep,
                    replicas: target,
                    resource_version: state.resource_version.clone(),
                })
                .await?;
        }
        Ok(target)
    }

    /// Takes the named idle agents offline; returns each with whether it is still idle
    /// after going offline (those that turned busy are brought back online). A failed
    /// step is counted and noted in `problems`; a node that could not be brought back is
    /// remembered and retried on every reconcile ([`PoolWorker::bring_back`]).
    async fn drain(
        &mut self,
        ctx: &Context,
        nodes: &[&str],
        problems: &mut Vec<String>,
    ) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for &name in nodes {
            let taken = ctx
                .jenkins
                .set_offline(name, true, "jenkins-autopilot: scaling in")
                .await;
            // Jenkins has no such node: the pod's agent never connected (or has gone), so
            // no build can run on it and there is nothing to drain.
            if let Err(crate::jenkins::JenkinsError::Status { status: 404, .. }) = &taken {
                out.push((name.to_string(), true));
                continue;
            }
            let went_offline = taken.is_ok();
            let idle = match taken {
                Ok(_) => ctx.jenkins.computer(name).await.map(|c| c.idle),
                Err(e) => Err(e),
            };
            match idle {
                Ok(true) => out.push((name.to_string(), true)),
                Ok(false) => {
                    out.push((name.to_string(), false));
                    self.left_offline.insert(name.to_string());
                    self.bring_back_one(ctx, name, problems).await;
                }
                Err(e) => {
                    self.count_drain_failure(ctx, "take-offline");
                    tracing::warn!(pool = %self.name, node = %name, error = %e, "draining failed; keeping the agent");
                    problems.push(format!("taking {name} offline failed; kept: {e}"));
                    out.push((name.to_string(), false));
                    if went_offline {
                        self.left_offline.insert(name.to_string());
                        self.bring_back_one(ctx, name, problems).await;
                    }
                }
            }
        }
        out
    }

    /// Brings back online the nodes this pool took offline and could not bring back
    /// before (still among its agents `names`).
    pub(super) async fn bring_back(
        &mut self,
        ctx: &Context,
        names: &[String],
        problems: &mut Vec<String>,
    ) {
        let alive: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.left_offline.retain(|n| alive.contains(n.as_str()));
        let pending: Vec<String> = self.left_offline.iter().cloned().collect();
        for name in pending {
            self.bring_back_one(ctx, &name, problems).await;
        }
    }

    async fn bring_back_one(&mut self, ctx: &Context, name: &str, problems: &mut Vec<String>) {
        match ctx.jenkins.set_offline(name, false, "").await {
            Ok(_) => {
                self.left_offline.remove(name);
            }
            Err(e) => {
                self.count_drain_failure(ctx, "bring-back");
                let hint = match &e {
                    crate::jenkins::JenkinsError::Unauthorized { status: 403, .. } => {
                        " (the Jenkins user needs Agent/Connect to bring a node back, besides Agent/Disconnect to take it offline)"
                    }
                    _ => "",
                };
                tracing::warn!(pool = %self.name, node = %name, error = %e, "bringing a node back online failed; retried on every reconcile");
                problems.push(format!(
                    "{name} stays offline in Jenkins: bringing it back failed{hint}; retried on every reconcile: {e}"
                ));
            }
        }
    }

    fn count_drain_failure(&self, ctx: &Context, step: &str) {
        ctx.metrics
            .pool_drain_failures
            .with_label_values(&[&self.name, step])
            .inc();
    }
}

/// The most pods the ReplicaSet can remove now without reaching a busy agent's. It removes
/// pods that are not Ready before Ready ones, whatever their deletion cost, and among each
/// the cheapest first: a busy agent whose pod is not Ready (a readiness probe failing under
/// a heavy build) is safe only while the removals stay within the idle pods not Ready.
pub fn removable_without_busy(pods: &[PodState], busy: &HashSet<&str>) -> usize {
    let live = || pods.iter().filter(|p| !p.terminating);
    let idle_not_ready = live()
        .filter(|p| !p.ready && !busy.contains(p.name.as_str()))
        .count();
    let busy_not_ready = live().any(|p| !p.ready && busy.contains(p.name.as_str()));
    if busy_not_ready {
        return idle_not_ready;
    }
    let idle_ready = live()
        .filter(|p| p.ready && !busy.contains(p.name.as_str()))
        .count();
    idle_not_ready + idle_ready
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, terminating: bool) -> PodState {
        PodState {
            name: name.into(),
            ready,
            terminating,
            deletion_cost: None,
            cpu_request: None,
            memory_request: None,
            startup_ms: None,
        }
    }

    #[test]
    fn a_busy_agent_not_ready_caps_the_removals_at_the_idle_pods_not_ready() {
        let pods = [
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", false, false),
            pod("e", false, true),
        ];
        let busy = |names: &[&'static str]| names.iter().copied().collect::<HashSet<&str>>();
        assert_eq!(removable_without_busy(&pods, &busy(&[])), 4);
        assert_eq!(removable_without_busy(&pods, &busy(&["a"])), 3);
        // `c` runs a build but is not Ready: the ReplicaSet takes it before `a` and `b`.
        assert_eq!(removable_without_busy(&pods, &busy(&["c"])), 1);
        assert_eq!(removable_without_busy(&pods, &busy(&["c", "d"])), 0);
    }
}
