//! A rollup row: its key, its sums (with their duration and wait histograms, encoded as
//! text), and the replacement of a period's rows.

use super::Tx;
use crate::store::{StoreError, corrupt};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// One rollup row's key: controller, job, label, result.
pub(super) type Key = (String, String, Option<String>, Option<String>);

/// What a rollup row holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sums {
    pub builds: u64,
    pub duration_ms: f64,
    pub wait_ms: f64,
    pub waits: u64,
    pub unreported: u64,
    pub unreported_ms: f64,
    pub cpu_m_ms: f64,
    pub memory_b_ms: f64,
    pub backfilled: u64,
    pub repaired: u64,
    /// The builds' durations (ms), ascending.
    pub durations: Vec<i64>,
    /// Their known queue waits (ms), ascending.
    pub queue_waits: Vec<i64>,
}

/// A list as stored: comma-separated integers.
pub(super) fn encode(v: &[i64]) -> String {
    let mut out = String::with_capacity(v.len() * 7);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out
}

pub(super) fn decode(s: &str, into: &mut Vec<i64>) -> Result<(), StoreError> {
    if s.is_empty() {
        return Ok(());
    }
    for part in s.split(',') {
        into.push(part.parse().map_err(|e| corrupt("rollup list", e))?);
    }
    Ok(())
}

/// The row's controller, job, label and result.
pub(super) fn key_of(row: &AnyRow) -> Result<Key, StoreError> {
    Ok((
        row.try_get("controller")?,
        row.try_get("job")?,
        row.try_get("label")?,
        row.try_get("result")?,
    ))
}

/// Replaces the period's rows by `groups` (lists sorted).
pub(super) async fn replace_rows(
    tx: &mut Tx<'_>,
    span: i64,
    start: i64,
    groups: BTreeMap<Key, Sums>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM build_rollups WHERE span_ms = $1 AND start_at = $2")
        .bind(span)
        .bind(start)
        .execute(&mut **tx)
        .await?;
    let groups: Vec<(Key, Sums)> = groups.into_iter().collect();
    const COLS: usize = 18;
    for chunk in crate::store::write::shaped_chunks(&groups, 50) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO build_rollups (span_ms, start_at, controller, job, label, result, \
             builds, duration_ms, wait_ms, waits, unreported, unreported_ms, cpu_m_ms, \
             memory_b_ms, backfilled, repaired, durations, queue_waits) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((controller, job, label, result), s) in chunk {
            let (mut durations, mut waits) = (s.durations.clone(), s.queue_waits.clone());
            durations.sort_unstable();
            waits.sort_unstable();
            let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            q = q
                .bind(span)
                .bind(start)
                .bind(controller.clone())
                .bind(job.clone())
                .bind(label.clone())
                .bind(result.clone())
                .bind(i(s.builds))
                .bind(s.duration_ms)
                .bind(s.wait_ms)
                .bind(i(s.waits))
                .bind(i(s.unreported))
                .bind(s.unreported_ms)
                .bind(s.cpu_m_ms)
                .bind(s.memory_b_ms)
                .bind(i(s.backfilled))
                .bind(i(s.repaired))
                .bind(encode(&durations))
                .bind(encode(&waits));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
