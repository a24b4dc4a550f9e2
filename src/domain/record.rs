//! The folded records: one per build and one per queue item. Folding is pure and does not
//! depend on the order events arrive in, nor on how often each arrives.

use super::{
    BuildFacts, BuildPhase, BuildResult, ControllerName, JobName, QueueEvent, QueueState, Timestamp,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything known about one build, folded from all its events.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BuildRecord {
    #[schema(value_type = String)]
    pub controller: ControllerName,
    #[schema(value_type = String)]
    pub job: JobName,
    pub number: u64,
    pub queue_id: Option<u64>,
    /// The furthest lifecycle phase seen: queued, started, completed or finalized.
    #[schema(value_type = String)]
    pub phase: BuildPhase,
    pub label: Option<String>,
    pub node: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub queued_at: Option<Timestamp>,
    #[schema(value_type = Option<i64>)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<i64>)]
    pub finished_at: Option<Timestamp>,
    /// Time in the queue, started minus queued, when both are known.
    pub queue_wait_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    #[schema(value_type = Option<String>)]
    pub result: Option<BuildResult>,
    pub parameters: BTreeMap<String, String>,
    pub scm_url: Option<String>,
    pub scm_branch: Option<String>,
    pub scm_commit: Option<String>,
    pub url: Option<String>,
    /// How the record was first found: `webhook`, `backfill` (Jenkins' history) or
    /// `repair` (only the re-read of recent history found it: its webhooks were lost).
    #[schema(value_type = String)]
    pub found_by: FoundBy,
}

/// How a build record was found. Folding keeps the most direct: a webhook beats a
/// backfill, which beats the repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    Webhook,
    Backfill,
    Repair,
}

impl FoundBy {
    pub fn of(source: super::EventSource) -> Self {
        match source {
            super::EventSource::Backfill => Self::Backfill,
            super::EventSource::Repair => Self::Repair,
            _ => Self::Webhook,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Backfill => "backfill",
            Self::Repair => "repair",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "webhook" => Some(Self::Webhook),
            "backfill" => Some(Self::Backfill),
            "repair" => Some(Self::Repair),
            _ => None,
        }
    }
}

impl BuildRecord {
    /// An empty record for a build nothing is known about yet.
    pub fn empty(controller: ControllerName, job: JobName, number: u64) -> Self {
        Self {
            controller,
            job,
            number,
            queue_id: None,
            phase: BuildPhase::Queued,
            label: None,
            node: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
            queue_wait_ms: None,
            duration_ms: None,
            result: None,
            parameters: BTreeMap::new(),
            scm_url: None,
            scm_branch: None,
            scm_commit: None,
            url: None,
            found_by: FoundBy::Repair,
        }
    }

    /// Folds in that an event from `source` told of this build.
    pub fn found(&mut self, source: super::EventSource) {
        self.found_by = self.found_by.min(FoundBy::of(source));
    }

    /// Folds one event's facts in. Commutative and idempotent: instants take the
    /// earliest start and latest finish, the phase only moves forward, the result of a
    /// later phase wins, and when two sources describe a field differently the same one
    /// is kept whatever order they came in ([`settle`]: an absolute URL over a relative
    /// one, else the longer, else the greater).
    pub fn apply(&mut self, facts: &BuildFacts) {
        self.phase = self.phase.max(facts.phase);
        lowest(&mut self.queue_id, facts.queue_id);
        earliest(&mut self.queued_at, facts.queued_at);
        earliest(&mut self.started_at, facts.started_at);
        latest(&mut self.finished_at, facts.finished_at);
        if let Some(d) = facts.duration_ms.filter(|d| *d >= 0) {
            self.duration_ms = Some(self.duration_ms.map_or(d, |old| old.max(d)));
        }
        if let Some(result) = facts.result {
            // COMPLETED and FINALIZED carry the same result in practice; when they differ
            // the worse one is kept, so the fold does not depend on arrival order.
            self.result = Some(match self.result {
                Some(old) => worse(old, result),
                None => result,
            });
        }
        settle(&mut self.node, facts.node.as_deref());
        settle(&mut self.label, facts.label.as_deref());
        settle(&mut self.url, facts.url.as_deref());
        settle(&mut self.scm_url, facts.scm_url.as_deref());
        settle(&mut self.scm_branch, facts.scm_branch.as_deref());
        settle(&mut self.scm_commit, facts.scm_commit.as_deref());
        if let Some(params) = &facts.parameters {
            for (k, v) in params {
                let slot = self.parameters.entry(k.clone()).or_default();
                let mut current = Some(std::mem::take(slot));
                settle(&mut current, Some(v));
                *slot = current.unwrap_or_default();
            }
        }
        self.derive();
    }

    /// Folds what the queue knows about the item this build came from.
    pub fn apply_queue_item(&mut self, item: &QueueItem) {
        lowest(&mut self.queue_id, Some(item.queue_id));
        earliest(&mut self.queued_at, item.entered_at);
        settle(&mut self.label, item.label.as_deref());
        self.derive();
    }

    fn derive(&mut self) {
        self.queue_wait_ms = match (self.queued_at, self.started_at) {
            (Some(q), Some(s)) => Some((s.millis() - q.millis()).max(0)),
            _ => None,
        };
        if self.duration_ms.is_none()
            && let (Some(s), Some(f)) = (self.started_at, self.finished_at)
            && self.phase >= BuildPhase::Completed
        {
            self.duration_ms = Some((f.millis() - s.millis()).max(0));
        }
        // FINALIZED carries the duration but not the end; start + duration is the end.
        if self.finished_at.is_none()
            && let (Some(s), Some(d)) = (self.started_at, self.duration_ms)
        {
            self.finished_at = Timestamp::from_millis(s.millis() + d).ok();
        }
    }
}

/// A queue item as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    #[schema(value_type = String)]
    pub controller: ControllerName,
    pub queue_id: u64,
    pub task: String,
    #[schema(value_type = Option<String>)]
    pub job: Option<JobName>,
    #[schema(value_type = String)]
    pub state: QueueState,
    /// When the state was last changed, for ordering events of the same item.
    #[schema(value_type = i64)]
    pub state_at: Timestamp,
    #[schema(value_type = Option<i64>)]
    pub entered_at: Option<Timestamp>,
    #[schema(value_type = Option<i64>)]
    pub left_at: Option<Timestamp>,
    pub why: Option<String>,
    pub label: Option<String>,
}

impl QueueItem {
    pub fn new(controller: ControllerName, event: &QueueEvent) -> Self {
        let mut item = Self {
            controller,
            queue_id: event.queue_id,
            task: event.task.clone(),
            job: None,
            state: event.state,
            state_at: event.at,
            entered_at: None,
            left_at: None,
            why: None,
            label: None,
        };
        item.apply(event);
        item
    }

    /// Folds one queue event in. `Left` is final: a late "waiting" does not reopen an
    /// item; otherwise the state of the latest event wins.
    pub fn apply(&mut self, event: &QueueEvent) {
        let newer = event.at >= self.state_at;
        if self.state != QueueState::Left && (event.state == QueueState::Left || newer) {
            self.state = event.state;
            self.state_at = event.at;
        }
        earliest(&mut self.entered_at, event.entered_at);
        latest(&mut self.left_at, event.left_at);
        if let Some(j) = &event.job
            && self.job.as_ref().is_none_or(|old| j > old)
        {
            self.job = Some(j.clone());
        }
        if event.why.is_some() && (newer || self.why.is_none()) {
            self.why = event.why.clone();
        }
        settle(&mut self.label, event.label.as_deref());
    }
}

fn lowest<T: Ord + Copy>(slot: &mut Option<T>, value: Option<T>) {
    if let Some(v) = value {
        *slot = Some(slot.map_or(v, |old| old.min(v)));
    }
}

/// Of two descriptions of one field, the one kept whatever the order: an absolute URL
/// over a relative one (Notification's `full_url` over Statistics Gatherer's `buildUrl`),
/// else the longer (the more specific), else the greater. An empty value says nothing.
pub(crate) fn settle(slot: &mut Option<String>, value: Option<&str>) {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return;
    };
    let rank = |s: &str| (s.contains("://"), s.len(), s.to_string());
    match slot {
        Some(old) if !old.is_empty() && rank(old) >= rank(v) => {}
        _ => *slot = Some(v.to_string()),
    }
}

fn earliest(slot: &mut Option<Timestamp>, value: Option<Timestamp>) {
    if let Some(v) = value {
        *slot = Some(slot.map_or(v, |old| old.min(v)));
    }
}

fn latest(slot: &mut Option<Timestamp>, value: Option<Timestamp>) {
    if let Some(v) = value {
        *slot = Some(slot.map_or(v, |old| old.max(v)));
    }
}

fn worse(a: BuildResult, b: BuildResult) -> BuildResult {
    // Jenkins' own ordinal: SUCCESS < UNSTABLE < FAILURE < NOT_BUILT < ABORTED.
    let rank = |r: BuildResult| match r {
        BuildResult::Success => 0,
        BuildResult::Unstable => 1,
        BuildResult::Failure => 2,
        BuildResult::NotBuilt => 3,
        BuildResult::Aborted => 4,
    };
    if rank(a) >= rank(b) { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BuildKey;

    fn ts(ms: i64) -> Option<Timestamp> {
        Some(Timestamp::from_millis(ms).unwrap())
    }

    fn key() -> BuildKey {
        BuildKey {
            job: JobName::parse("team/app").unwrap(),
            number: 7,
        }
    }

    fn lifecycle() -> Vec<BuildFacts> {
        let mut queued = BuildFacts::new(key(), BuildPhase::Queued);
        queued.queued_at = ts(1_000);
        queued.queue_id = Some(42);
        let mut started = BuildFacts::new(key(), BuildPhase::Started);
        started.started_at = ts(4_000);
        started.node = Some("agent-1".into());
        // Two sources describe the same build differently (Statistics Gatherer's relative
        // build URL and branch, Notification's absolute URL and remote branch).
        started.url = Some("job/team/job/app/7/".into());
        started.scm_branch = Some("main".into());
        started.parameters = Some([("MODE".to_string(), "a".to_string())].into());
        let mut completed = BuildFacts::new(key(), BuildPhase::Completed);
        completed.started_at = ts(4_000);
        completed.finished_at = ts(9_000);
        completed.duration_ms = Some(5_000);
        completed.result = Some(BuildResult::Success);
        completed.url = Some("https://ci.example.com/job/team/job/app/7/".into());
        completed.scm_branch = Some("origin/main".into());
        completed.parameters = Some([("MODE".to_string(), "ab".to_string())].into());
        let mut finalized = BuildFacts::new(key(), BuildPhase::Finalized);
        finalized.started_at = ts(4_000);
        finalized.finished_at = ts(9_500);
        finalized.duration_ms = Some(5_000);
        finalized.result = Some(BuildResult::Success);
        vec![queued, started, completed, finalized]
    }

    fn fold(events: &[&BuildFacts]) -> BuildRecord {
        let k = key();
        let mut r = BuildRecord::empty(ControllerName::parse("c").unwrap(), k.job, k.number);
        for e in events {
            r.apply(e);
        }
        r
    }

    #[test]
    fn every_order_and_duplication_folds_to_the_same_record() {
        let events = lifecycle();
        let in_order: Vec<&BuildFacts> = events.iter().collect();
        let want = fold(&in_order);
        assert_eq!(want.queue_wait_ms, Some(3_000));
        assert_eq!(want.duration_ms, Some(5_000));
        assert_eq!(want.phase, BuildPhase::Finalized);
        assert_eq!(want.result, Some(BuildResult::Success));
        assert_eq!(
            want.url.as_deref(),
            Some("https://ci.example.com/job/team/job/app/7/")
        );
        assert_eq!(want.scm_branch.as_deref(), Some("origin/main"));
        assert_eq!(want.parameters["MODE"], "ab");
        // All 24 permutations, each also with every event delivered twice.
        let mut idx = [0usize, 1, 2, 3];
        let mut perms = Vec::new();
        permute(&mut idx, 0, &mut perms);
        assert_eq!(perms.len(), 24);
        for p in perms {
            let order: Vec<&BuildFacts> = p.iter().map(|&i| &events[i]).collect();
            assert_eq!(fold(&order), want, "order {p:?}");
            let twice: Vec<&BuildFacts> = order.iter().chain(order.iter()).copied().collect();
            assert_eq!(fold(&twice), want, "twice {p:?}");
        }
    }

    #[test]
    fn a_subset_gives_what_it_can() {
        let events = lifecycle();
        let only_completed = fold(&[&events[2]]);
        assert_eq!(only_completed.duration_ms, Some(5_000));
        assert_eq!(only_completed.queue_wait_ms, None);
        let started_only = fold(&[&events[1]]);
        assert_eq!(started_only.phase, BuildPhase::Started);
        assert_eq!(started_only.result, None);
        assert_eq!(started_only.duration_ms, None);
    }

    #[test]
    fn duration_is_derived_from_instants_when_no_event_carries_it() {
        let mut completed = BuildFacts::new(key(), BuildPhase::Completed);
        completed.finished_at = ts(10_000);
        let mut started = BuildFacts::new(key(), BuildPhase::Started);
        started.started_at = ts(2_500);
        assert_eq!(fold(&[&completed, &started]).duration_ms, Some(7_500));
    }

    fn permute(a: &mut [usize; 4], k: usize, out: &mut Vec<[usize; 4]>) {
        if k == a.len() {
            out.push(*a);
            return;
        }
        for i in k..a.len() {
            a.swap(k, i);
            permute(a, k + 1, out);
            a.swap(k, i);
        }
    }

    #[test]
    fn left_queue_items_stay_left() {
        let c = ControllerName::parse("c").unwrap();
        let waiting = QueueEvent {
            queue_id: 1,
            task: "app".into(),
            job: None,
            state: QueueState::Waiting,
            entered_at: ts(1_000),
            left_at: None,
            at: ts(1_000).unwrap(),
            why: Some("Waiting for next available executor on ‘linux’".into()),
            label: Some("linux".into()),
        };
        let left = QueueEvent {
            state: QueueState::Left,
            left_at: ts(5_000),
            at: ts(5_000).unwrap(),
            why: None,
            label: None,
            ..waiting.clone()
        };
        let mut a = QueueItem::new(c.clone(), &waiting);
        a.apply(&left);
        let mut b = QueueItem::new(c, &left);
        b.apply(&waiting);
        assert_eq!(a.state, QueueState::Left);
        assert_eq!(b.state, QueueState::Left);
        assert_eq!(a.left_at, b.left_at);
        assert_eq!(a.label.as_deref(), Some("linux"));
        assert_eq!(b.label.as_deref(), Some("linux"));
    }
}
