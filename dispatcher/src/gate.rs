//! The last step before a gateway request: wait for a slot of the global rate limit, then
//! look the recipient up once more. A cancel or an expiry that committed while the job sat
//! in the queue, in prefetch or waiting for its slot then stops it here, so that after a
//! cancel is answered nothing more of the message reaches the gateway except requests
//! that had already passed this look.
//!
//! Looks are coalesced: every send that is at this step at the same moment shares one
//! `SELECT … WHERE id = ANY(…)`, so an unlimited gateway costs a query per batch of sends,
//! not per send.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use smsgate_shared::domain::RecipientStatus;
use smsgate_shared::queue::OutboundJob;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::job::{Admission, Gate};
use crate::rate_limit::GlobalRateLimiter;
use crate::repo;

/// Most recipients one look asks for.
const MAX_LOOK: usize = 1_000;

type Look = (i64, oneshot::Sender<Option<RecipientStatus>>);

pub struct SendGate {
    limiter: Option<GlobalRateLimiter>,
    looks: mpsc::UnboundedSender<Look>,
}

impl SendGate {
    /// Starts the look-up task; it ends when the gate is dropped.
    pub fn new(db: PgPool, limiter: Option<GlobalRateLimiter>) -> SendGate {
        let (looks, queue) = mpsc::unbounded_channel();
        tokio::spawn(answer_looks(db, queue));
        SendGate { limiter, looks }
    }

    /// The recipient's status now; `None` when it no longer exists.
    async fn look(&self, recipient_id: i64) -> Option<RecipientStatus> {
        let (answer, status) = oneshot::channel();
        if self.looks.send((recipient_id, answer)).is_err() {
            return None; // shutting down: sending nothing is the safe answer
        }
        status.await.ok().flatten()
    }
}

impl Gate for SendGate {
    async fn admit(&self, job: &OutboundJob) -> Admission {
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        match self.look(job.recipient_id()).await {
            Some(status) if !status.is_terminal() => {}
            _ => return Admission::Skip,
        }
        if job.expired_at(Utc::now()) {
            return Admission::Expired;
        }
        Admission::Go
    }
}

/// Answers the looks queued since the last query with one query, until the gate is gone.
/// While PostgreSQL is unavailable the sends wait: sending unlooked could send a
/// cancelled recipient.
async fn answer_looks(db: PgPool, mut queue: mpsc::UnboundedReceiver<Look>) {
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < MAX_LOOK {
            match queue.try_recv() {
                Ok(look) => waiting.push(look),
                Err(_) => break,
            }
        }
        let ids: Vec<i64> = waiting.iter().map(|(id, _)| *id).collect();
        let statuses = statuses_retrying(&db, &ids).await;
        for (id, answer) in waiting {
            let _ = answer.send(statuses.get(&id).copied());
        }
    }
}

async fn statuses_retrying(db: &PgPool, ids: &[i64]) -> HashMap<i64, RecipientStatus> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match repo::recipient_statuses(db, ids).await {
            Ok(statuses) => return statuses,
            Err(e) => {
                warn!(error = %e, "last look before sending failed; holding sends");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
