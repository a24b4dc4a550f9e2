//! One reconcile of one pool: gather what Jenkins, the cluster and the store say, plan
//! with the pure core, apply, record; and `error_policy`, which holds the pool when a read
//! failed.

use super::*;
use crate::domain::Outcome;

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub current: u32,
    pub recommended: u32,
    /// The replicas set (or, in dry-run, that would be).
    pub desired: u32,
    pub rule: crate::scaling::Rule,
    /// Whether the pool needs no periodic reconcile until something happens.
    pub at_rest: bool,
}

/// One reconcile of one pool: gather, plan, apply, record. A failed read is returned
/// for [`error_policy`]; a failed apply is recorded as the decision's outcome.
pub async fn reconcile(
    w: &mut PoolWorker,
    ctx: &Context,
    trigger: Trigger,
) -> Result<Reconciled, ReconcileError> {
    let now = ctx.clock.now();
    let mut g = w.gather(ctx, now).await?;
    let current = g.seen.current_replicas;
    let forecast = match w.forecast.as_mut() {
        Some(f) => Some(
            f.forecast(&ctx.store, &w.controller, &w.settings.label, now)
                .await,
        ),
        None => None,
    };
    for p in g.pool.iter().flat_map(|s| &s.pods) {
        if let Some(ms) = p.startup_ms {
            w.startups.record(&p.name, ms);
        }
    }
    let measured = w.startups.startup();
    if let (Some(warm), Some(s)) = (w.warm.as_mut(), measured) {
        warm.use_startup(s);
    }
    let busy_agents = g.seen.agents.iter().filter(|a| a.busy).count() as u32;
    let warm = match w.warm.as_mut() {
        Some(warm) => {
            let label = w.settings.label.clone();
            Some(
                warm.plan(
                    &ctx.store,
                    &w.controller,
                    |l| label.serves(l),
                    now,
                    current,
                    busy_agents,
                )
                .await,
            )
        }
        None => None,
    };
    g.seen.warm_agents = warm.as_ref().map_or(0, |d| d.decision.agents);
    g.seen.signals = w.signals(ctx, &g, now).await;
    let mut planned = plan(
        &g.seen,
        &w.policy,
        &w.schedules,
        std::mem::take(&mut w.history),
        now,
    );
    // The decision's history is the pool's from now on; the rest of the decision is read below.
    w.history = std::mem::take(&mut planned.decision.history);

    let mut inputs = observed_inputs(&g.seen, g.queue, &g.busy_nodes);
    let scored = scored_signals(w.settings.policy, &g.seen.signals, current);
    inputs.signals = Some(scored.clone());
    inputs.warm = warm.as_ref().map(warm_inputs);
    inputs.startup = Some(StartupInputs {
        samples: w.startups.len(),
        measured_p50_ms: measured.map(|s| s.p50_ms),
        measured_p95_ms: measured.map(|s| s.p95_ms),
    });
    inputs.forecast = forecast.as_ref().map(|f| ForecastInputs {
        value: f.value,
        target_at: f.target_at,
        acting: f.acting,
    });
    if let Some(view) = ctx.views.write().await.get_mut(&w.name) {
        view.forecast = forecast;
        view.signals = Some(scored);
    }
    w.update_gauges(ctx, &g.seen, planned.decision.desired);

    let decision = &planned.decision;
    let mut desired = decision.desired;
    // Drain steps that failed: the decision stands, the problem is shown with it.
    let mut problems = Vec::new();
    if ctx.cluster.is_some() && !w.left_offline.is_empty() {
        w.bring_back(ctx, &g.names, &mut problems).await;
    }
    let (outcome, error) = match (&ctx.cluster, &g.pool) {
        (None, _) => {
            w.dry_run_replicas = Some(desired);
            w.history.record_change(now, current, desired);
            (Outcome::DryRun, None)
        }
        (Some(_), _) if desired == current => (Outcome::Unchanged, None),
        (Some(cluster), Some(state)) => {
            match w
                .apply(ctx, cluster.as_ref(), state, &g, &planned, &mut problems)
                .await
            {
                Ok(applied) => {
                    desired = applied;
                    w.history.record_change(now, current, applied);
                    let direction = if applied > current { "up" } else { "down" };
                    if applied != current {
                        ctx.metrics
                            .pool_scale_events
                            .with_label_values(&[&w.name, direction])
                            .inc();
                    }
                    (Outcome::Applied, None)
                }
                Err(e) => {
                    ctx.metrics
                        .pool_failures
                        .with_label_values(&[&w.name, e.source()])
                        .inc();
                    tracing::warn!(pool = %w.name, error = %e, "applying the decision failed");
                    (Outcome::Failed, Some(e.to_string()))
                }
            }
        }
        (Some(_), None) => unreachable!("a cluster read gives a pool state"),
    };
    let error = match (error, problems.is_empty()) {
        (e, true) => e,
        (Some(e), false) => Some(format!("{e}; {}", problems.join("; "))),
        (None, false) => Some(problems.join("; ")),
    };
    let done = Reconciled {
        current,
        recommended: decision.recommended,
        desired,
        rule: decision.rule,
        at_rest: crate::scaling::plan::at_rest(&w.policy, &g.seen, decision.recommended, desired),
    };
    let record = w.decision(
        ctx,
        now,
        trigger,
        (Some(current), Some(decision.recommended), Some(desired)),
        decision.rule,
        &decision.reason,
        outcome,
        error,
        inputs,
    );
    record_decision(w, ctx, record).await;
    Ok(done)
}

/// A reconcile that could not plan: the pool holds its size (never "zero"), the failure
/// is counted and logged, and recorded as a `hold-on-error` decision.
pub async fn error_policy(
    w: &mut PoolWorker,
    ctx: &Context,
    trigger: Trigger,
    error: &ReconcileError,
) {
    let source = error.source();
    ctx.metrics
        .pool_failures
        .with_label_values(&[&w.name, source])
        .inc();
    tracing::warn!(pool = %w.name, source, %error, "read failed; holding the pool at its size");
    let record = w.decision(
        ctx,
        ctx.clock.now(),
        trigger,
        (w.held_at, None, None),
        crate::scaling::Rule::HoldOnError,
        "a read failed; the pool holds its size",
        Outcome::Held,
        Some(format!("{source}: {error}")),
        DecisionInputs::default(),
    );
    record_decision(w, ctx, record).await;
}

impl PoolWorker {
    fn update_gauges(&self, ctx: &Context, s: &Observation, desired: u32) {
        let g = |kind: &str, v: u32| {
            ctx.metrics
                .pool_agents
                .with_label_values(&[&self.name, kind])
                .set(i64::from(v))
        };
        let ready = s.agents.iter().filter(|a| a.ready).count() as u32;
        g("desired", desired);
        g("current", s.current_replicas);
        g("ready", ready);
        g("pending", s.agents.len() as u32 - ready);
        g("busy", s.agents.iter().filter(|a| a.busy).count() as u32);
        ctx.metrics
            .pool_queued
            .with_label_values(&[&self.name])
            .set(i64::from(s.queued));
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        ctx: &Context,
        now: Timestamp,
        trigger: Trigger,
        (current, recommended, desired): (Option<u32>, Option<u32>, Option<u32>),
        rule: crate::scaling::Rule,
        reason: &str,
        outcome: Outcome,
        error: Option<String>,
        inputs: DecisionInputs,
    ) -> DecisionRecord {
        DecisionRecord {
            pool: self.name.clone(),
            decided_at: now,
            seq: ctx.seq.fetch_add(1, Ordering::Relaxed),
            trigger,
            current,
            recommended,
            desired,
            rule,
            reason: reason.to_string(),
            outcome,
            error,
            inputs,
        }
    }
}

fn observed_inputs(s: &Observation, q: QueueDemand, busy_nodes: &[String]) -> DecisionInputs {
    let ready = s.agents.iter().filter(|a| a.ready).count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    DecisionInputs {
        queued: Some(s.queued),
        queue_sources: Some(q),
        busy_executors: Some(s.busy_executors),
        idle_executors: Some(s.idle_executors),
        busy_agents: Some(count(s.agents.iter().filter(|a| a.busy).count())),
        busy_nodes: Some(busy_nodes.to_vec()),
        ready_agents: Some(count(ready)),
        pending_agents: Some(count(s.agents.len() - ready)),
        current_replicas: Some(s.current_replicas),
        forecast_extra: Some(s.forecast_extra),
        ..DecisionInputs::default()
    }
}

/// A warm plan as its decision keeps it: the agents, and the rest as the plan wrote it.
fn warm_inputs(d: &crate::controller::warm::LiveWarmDecision) -> WarmInputs {
    let more = match serde_json::to_value(d) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("agents");
            m
        }
        _ => serde_json::Map::new(),
    };
    WarmInputs {
        agents: d.decision.agents,
        more,
    }
}
