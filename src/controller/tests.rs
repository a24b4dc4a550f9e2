//! The live controller against the in-memory world, on a manual clock, decides as the
//! replay does: the same reconciles at the same instants give the same decisions and the
//! same waits.

use super::*;
use crate::config::{PoolSettings, SqliteSynchronous};
use crate::scaling::ports::ManualClock;
use crate::scaling::schedule::ScheduleSettings;
use crate::sim::engine::{
    SimBuild, SimConfig, SimDecision, SimOutcome, SimPolicy, drive, replay_logged, world_for,
};
use crate::sim::world::SharedWorld;

/// A working morning of one pool: bursts of a workflow run, single builds, long and
/// short ones, and gaps longer than every window.
fn scenario(start: i64) -> Vec<SimBuild> {
    let mut builds = Vec::new();
    let mut at = start;
    for i in 0..48i64 {
        let burst = if i % 7 == 0 { 4 } else { 1 };
        for k in 0..burst {
            builds.push(SimBuild {
                queued_at: at + k * 1_500,
                duration: 90_000 + (i * 7_919 + k * 104_729) % 1_500_000,
            });
        }
        at += match i % 5 {
            0 => 45_000,
            1 => 4 * 60_000,
            2 => 11 * 60_000,
            3 => 70_000,
            _ => 40 * 60_000,
        };
    }
    builds
}

fn pool(policy: SimPolicy) -> PoolSettings {
    let mut p: PoolSettings = serde_yaml::from_str(
        "{controller: prod, label: linux, namespace: ci, deployment: agents-linux, min: 0, max: 8}",
    )
    .unwrap();
    match policy {
        SimPolicy::Window(m) => {
            p.behavior.scale_down.stabilization_window = Duration::from_secs(u64::from(m) * 60)
        }
        SimPolicy::KeepIdle(d) => {
            p.policy = PolicyName::KeepIdle;
            p.keep_idle = d;
        }
        SimPolicy::Headroom(n) => p.idle_headroom = n,
        _ => unreachable!("not a case here"),
    }
    p
}

/// Runs `builds` through the live controller on the world the replay would build.
async fn live(
    builds: &[SimBuild],
    policy: SimPolicy,
    pool: &PoolSettings,
    settings: &Settings,
    cfg: &SimConfig,
    store: &Store,
) -> (Vec<SimDecision>, SimOutcome) {
    let world = SharedWorld::new(
        world_for(builds, policy, cfg).named(pool.label.as_str(), &pool.deployment),
    );
    let clock = Arc::new(ManualClock::new(builds[0].queued_at));
    let ctx = Context {
        snapshot: Arc::new(super::snapshot::SharedSnapshot::new(Arc::new(
            world.clone(),
        ))),
        jenkins: Arc::new(world.clone()),
        cluster: Some(Arc::new(world.clone())),
        store: store.clone(),
        metrics: Metrics::new(),
        clock: clock.clone(),
        views: Arc::default(),
        seq: Arc::default(),
        leadership: crate::leader::Leadership::single(),
    };
    let mut worker = PoolWorker::new("linux", pool, settings);
    let (reconcile_ms, clock_driven) = (cfg.reconcile_ms, !cfg.schedules.is_empty());
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut log = Vec::new();
        drive(&world.0, reconcile_ms, clock_driven, |now, trigger| {
            clock.set(now);
            world.lock().advance_to(now);
            let r = handle
                .block_on(reconcile(&mut worker, &ctx, trigger))
                .expect("the in-memory world never fails a read");
            log.push(SimDecision {
                at: now,
                trigger,
                current: r.current,
                recommended: r.recommended,
                desired: r.desired,
                rule: r.rule,
            });
            r.at_rest
        });
        drop(ctx);
        let world = Arc::try_unwrap(world.0)
            .ok()
            .expect("the controller is done with the world");
        (log, world.into_inner().unwrap().finish())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_controller_decides_as_the_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(None, Vec::new()).unwrap();
    settings.server.data_dir = dir.path().to_path_buf();
    settings.database.sqlite_synchronous = SqliteSynchronous::Normal;
    // 2023-11-13 is a Monday: 8:00 UTC.
    let start = 1_699_862_400_000i64;
    let builds = scenario(start);
    let scheduled = |mut p: PoolSettings| {
        p.schedules = vec![ScheduleSettings {
            cron: "* 9-10 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
            min: 2,
        }];
        p
    };
    let cases = [
        ("window 0", SimPolicy::Window(0), pool(SimPolicy::Window(0))),
        (
            "window 15",
            SimPolicy::Window(15),
            pool(SimPolicy::Window(15)),
        ),
        (
            "keep-idle 10",
            SimPolicy::KeepIdle(Duration::from_secs(600)),
            pool(SimPolicy::KeepIdle(Duration::from_secs(600))),
        ),
        (
            "headroom 1",
            SimPolicy::Headroom(1),
            pool(SimPolicy::Headroom(1)),
        ),
        (
            "window 5 with a schedule",
            SimPolicy::Window(5),
            scheduled(pool(SimPolicy::Window(5))),
        ),
    ];
    for (what, policy, pool) in cases {
        let cfg = SimConfig::new(&crate::config::PoolPolicy::from(&pool), &settings);
        let mut replayed = Vec::new();
        let outcome = replay_logged(&builds, policy, &cfg, Some(&mut replayed));
        let case_dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&settings.database, case_dir.path())
            .await
            .unwrap();
        let (lived, live_outcome) = live(&builds, policy, &pool, &settings, &cfg, &store).await;
        // Only decisions that change something are stored (and a keyframe an hour), yet
        // the pool's agent-hours from the store are those of every reconcile.
        let (from, to) = (lived[0].at, lived.last().unwrap().at + 600_000);
        let every: Vec<(i64, u32)> = lived.iter().map(|d| (d.at, d.desired)).collect();
        let (before, steps) = store
            .replica_steps(
                "linux",
                Timestamp::from_millis(from).unwrap(),
                Timestamp::from_millis(to).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            crate::cost::agent_hours(&steps, before, from, to),
            crate::cost::agent_hours(&every, None, from, to),
            "{what}: agent-hours from the stored decisions"
        );
        let stored = store
            .decisions("linux", Timestamp::from_millis(0).unwrap(), 100_000)
            .await
            .unwrap()
            .len();
        assert!(
            stored < lived.len(),
            "{what}: {stored} of {} stored",
            lived.len()
        );
        println!(
            "{what}: {} reconciles, {stored} decisions stored",
            lived.len()
        );
        assert!(
            replayed.len() > builds.len(),
            "{what}: {} reconciles",
            replayed.len()
        );
        assert!(
            replayed.iter().any(|d| d.desired < d.current),
            "{what}: the pool shrinks"
        );
        if let Some(i) = (0..replayed.len().min(lived.len())).find(|&i| replayed[i] != lived[i]) {
            panic!(
                "{what}: reconcile {i} differs:\n replay {:?}\n live   {:?}",
                replayed[i], lived[i]
            );
        }
        assert_eq!(replayed.len(), lived.len(), "{what}");
        assert_eq!(outcome, live_outcome, "{what}: waits and agent time");
        assert_eq!(outcome.busy_agents_removed, 0);
    }
}

/// A day at rest (a reconcile every 10 s, nothing changing) stores a keyframe an hour:
/// 24 rows instead of 8,640; a change is stored at once.
#[test]
fn a_day_at_rest_stores_a_keyframe_an_hour() {
    let decision = |at: i64, desired: u32| DecisionRecord {
        pool: "linux".into(),
        decided_at: Timestamp::from_millis(at).unwrap(),
        seq: 0,
        trigger: Trigger::Periodic,
        current: Some(desired),
        recommended: Some(desired),
        desired: Some(desired),
        rule: crate::scaling::Rule::Demand,
        reason: format!("busy 0 + queued 0 = {desired}"),
        outcome: crate::domain::Outcome::Unchanged,
        error: None,
        inputs: Default::default(),
    };
    let mut stored: Option<(DecisionKey, i64)> = None;
    let mut rows = 0;
    for i in 0..8_640 {
        // One change at noon, back an hour later.
        let desired = if (4_320..4_680).contains(&i) { 2 } else { 1 };
        let d = decision(i * 10_000, desired);
        if worth_storing(stored.as_ref(), &d) {
            stored = Some((decision_key(&d), d.decided_at.millis()));
            rows += 1;
        }
    }
    // 24 keyframes, the two changes (each restarting the hour).
    assert!((24..=27).contains(&rows), "{rows} rows");
}
