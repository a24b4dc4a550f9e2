//! `postgres` mode: a session advisory lock held on a connection of its own.
//!
//! The lock lives as long as the session. A leader that dies (its connection closes)
//! frees it at once, and a standby takes it at its next try. A leader that gets no answer
//! for `renew_deadline` stops acting; the server ends a session silent for
//! `lease_duration` (`idle_session_timeout`: the leader checks every `retry_every`, so its
//! session is never idle that long while it can reach the server), which frees the lock
//! of a leader cut off from the database.

use super::LeaderElectionSettings;
use super::{Ask, Campaign};
use crate::store::LockSession;
use std::time::Instant;
use tokio::sync::mpsc;

/// Tries for the lock every `retry_every`; once held, checks the session every
/// `retry_every` and whenever the leader is about to act ([`Ask`]), and gives the lead up
/// when a check fails or takes longer than `renew_deadline`.
///
/// A lock just taken is acted on only from the next check, `retry_every` later: a lock
/// freed because the server ended the last leader's session (an administrator, a
/// restart) is free at once, while that leader learns it at its next check, within
/// `retry_every`. Leading at once made two leaders for up to `retry_every`.
pub(super) async fn campaign(
    url: String,
    le: LeaderElectionSettings,
    c: Campaign,
    mut asks: mpsc::Receiver<Ask>,
) {
    let me = super::identity();
    'session: loop {
        let open = LockSession::open(&url, &me, le.lease_duration);
        let mut conn = match tokio::time::timeout(le.renew_deadline, open).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election: cannot reach the database");
                c.set(false, None);
                refuse_asks(&mut asks, le.retry_every).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("leader election: the database did not answer in time");
                c.set(false, None);
                continue;
            }
        };
        // When this session took the lock.
        let mut held_since: Option<Instant> = None;
        loop {
            let step = tokio::time::timeout(le.renew_deadline, async {
                let won = if held_since.is_some() {
                    conn.alive().await?
                } else {
                    conn.try_lock().await?
                };
                let leader = conn.holder().await?;
                Ok::<_, crate::store::StoreError>((won, leader))
            })
            .await;
            match step {
                Ok(Ok((won, leader))) => {
                    if won && held_since.is_none() {
                        held_since = Some(Instant::now());
                    }
                    let leading = held_since.is_some_and(|t| t.elapsed() >= le.retry_every);
                    c.set(leading, leader);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election: the session failed; not leading");
                    c.set(false, None);
                    continue 'session;
                }
                Err(_) => {
                    tracing::warn!(
                        "leader election: no answer within the renew deadline; not leading"
                    );
                    c.set(false, None);
                    continue 'session;
                }
            }
            let next = tokio::time::Instant::now() + le.retry_every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    Some(ask) = asks.recv() => {
                        // Every ask waiting is answered by one check.
                        let mut waiting = vec![ask];
                        while let Ok(more) = asks.try_recv() {
                            waiting.push(more);
                        }
                        let leading = *c.tx.borrow();
                        let holds = leading
                            && matches!(
                                tokio::time::timeout(le.renew_deadline, conn.alive()).await,
                                Ok(Ok(true))
                            );
                        for ask in waiting {
                            let _ = ask.send(holds);
                        }
                        if leading && !holds {
                            tracing::warn!("leader election: the session is gone; not leading");
                            c.set(false, None);
                            continue 'session;
                        }
                    }
                    _ = c.step_down.notified() => {
                        // Shutting down: closing the session frees the lock now.
                        c.set(false, None);
                        conn.close().await;
                        c.stepped_down.notify_one();
                        return;
                    }
                }
            }
        }
    }
}

/// Answers "not leading" to every ask for `wait` (no session to check).
async fn refuse_asks(asks: &mut mpsc::Receiver<Ask>, wait: std::time::Duration) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return,
            Some(ask) = asks.recv() => {
                let _ = ask.send(false);
            }
        }
    }
}
