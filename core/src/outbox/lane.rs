//! The small-message lane: jobs of single sends wait here for a couple of milliseconds and
//! go out together, so a burst of `POST /api/sms` costs one confirm window and one
//! `DELETE … WHERE message_id = ANY(…)` instead of a publish round trip and a commit per message.

use std::collections::BTreeSet;
use std::time::Duration;

use smsgate_shared::queue::OutgoingMessage;
use tokio::sync::mpsc;
use tracing::warn;

use super::{repo, Outbox};

/// Messages with at most this many jobs take the lane; larger ones publish on their own.
pub const MAX_JOBS: usize = 16;
/// How long the first message of a batch waits for company. Not on the HTTP path: the
/// 202 is already sent; this only delays the publish.
const LINGER: Duration = Duration::from_millis(2);
/// Jobs per batch: one confirm window of the publisher.
const MAX_BATCH_JOBS: usize = 2_000;

/// One message's jobs, with their headers already built inside the request's span (so the
/// `traceparent` points at the request that accepted them).
pub struct Queued {
    pub message_id: i64,
    pub route: String,
    pub messages: Vec<OutgoingMessage>,
}

pub type LaneSender = mpsc::UnboundedSender<Queued>;

/// Runs until every sender is dropped, publishing batches as they fill or linger out.
pub async fn run(outbox: Outbox, mut queue: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = first.messages.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while jobs < MAX_BATCH_JOBS {
            tokio::select! {
                next = queue.recv() => match next {
                    Some(queued) => {
                        jobs += queued.messages.len();
                        batch.push(queued);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        publish_batch(&outbox, batch).await;
    }
}

async fn publish_batch(outbox: &Outbox, batch: Vec<Queued>) {
    let ids: Vec<i64> = batch.iter().map(|q| q.message_id).collect();
    let routes: BTreeSet<String> = batch.iter().map(|q| q.route.clone()).collect();
    let messages: Vec<OutgoingMessage> = batch.into_iter().flat_map(|q| q.messages).collect();
    let result = async {
        outbox.ensure_topology().await?;
        for route in &routes {
            outbox.ensure_route(route).await?;
        }
        outbox.publish_messages(messages).await?;
        repo::mark_enqueued(&outbox.inner.db, &ids).await?;
        Ok::<(), super::PublishError>(())
    }
    .await;
    if let Err(e) = result {
        warn!(error = %e, messages = ids.len(), "publishing a batch of single sends failed; the reconciler will retry");
        for id in ids {
            outbox.release_lease(id).await;
        }
    }
}
