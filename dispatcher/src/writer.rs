//! The batch writer: buffers results, writes each batch in one transaction (recipients,
//! message counters and status, dead letters, webhook deliveries), then routes retries and
//! dead jobs, then acks, then publishes status events.
//!
//! Ack comes after commit: if the process dies before the commit, the broker redelivers
//! and the job runs again (at-least-once); if it dies after the commit but before the
//! ack, the redelivered job finds its recipient terminal and is skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lapin::types::FieldTable;
use smsgate_shared::domain::RecipientStatus;
use smsgate_shared::queue::{routing, with_attempt, OutboundJob, OutgoingMessage, RecipientUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info_span, warn, Instrument};

use crate::acks::{Acks, Settle};
use crate::hkt::GatewayVerdict;
use crate::metrics::{DeadReason, DispatcherMetrics, Outcome};
use crate::repo::{self, CounterDelta, DeadLetterRow, ResultRow};
use crate::retry::NextStep;
use crate::{webhooks, Context};

/// A job whose gateway attempt finished, waiting to be recorded and acked.
pub struct Completed {
    /// Its delivery tag on the channel `acks` settles.
    pub tag: u64,
    pub acks: Acks,
    pub job: OutboundJob,
    /// The routing key it arrived with: retries dead-letter back to the same route.
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub headers: Option<FieldTable>,
    pub attempt: u32,
    pub verdict: GatewayVerdict,
}

/// What the batch decided for one result.
enum Disposition {
    Record,
    Retry { step: usize, attempt: u32 },
    Dead { reason: String },
}

/// Sending half: cheap to clone, one per in-flight send.
pub type ResultSender = mpsc::UnboundedSender<Completed>;

/// Runs until every sender is dropped, then flushes what is left and returns.
///
/// Only the commits are serial. Once a batch is committed, its status events are queued in
/// commit order, and routing its retries and acking its jobs run in a task of their own
/// while the next batch commits: acks need no order, and a batch's acks still wait for its
/// own commit.
pub async fn run(
    ctx: Arc<Context>,
    mut results: mpsc::UnboundedReceiver<Completed>,
    kill: CancellationToken,
) {
    let max = ctx.settings.batch_size.max(1);
    let finishing = TaskTracker::new();
    let (events, queued_events) = mpsc::unbounded_channel();
    let event_publisher = tokio::spawn(publish_events_in_order(ctx.clone(), queued_events));
    while let Some(first) = results.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + ctx.settings.batch_max_wait;
        while batch.len() < max {
            tokio::select! {
                next = results.recv() => match next {
                    Some(item) => batch.push(item),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if kill.is_cancelled() {
            break; // a simulated crash: drop the batch unacked, the broker redelivers
        }
        let span = info_span!("dispatch.write_batch", results = batch.len());
        let dispositions: Vec<Disposition> = batch.iter().map(|c| decide(&ctx, c)).collect();
        let started = std::time::Instant::now();
        let Some(changed) = commit_with_retry(&ctx, &batch, &dispositions, &kill)
            .instrument(span.clone())
            .await
        else {
            break;
        };
        count_committed(&ctx.metrics, &batch, &dispositions, started.elapsed());
        let _ = events.send(status_events(changed));
        let ctx = ctx.clone();
        finishing.spawn(finish(ctx, batch, dispositions).instrument(span));
    }
    finishing.close();
    finishing.wait().await;
    drop(events);
    let _ = event_publisher.await;
}

/// What a committed batch recorded, for the metrics.
fn count_committed(
    metrics: &DispatcherMetrics,
    batch: &[Completed],
    dispositions: &[Disposition],
    took: Duration,
) {
    metrics.batch_size.observe(batch.len() as f64);
    metrics.batch_commit.observe(took.as_secs_f64());
    for (completed, disposition) in batch.iter().zip(dispositions) {
        match (disposition, &completed.verdict) {
            (Disposition::Record, GatewayVerdict::Sent { .. }) => metrics.outcome(Outcome::Sent),
            (Disposition::Record, GatewayVerdict::Expired) => metrics.jobs_expired.inc(),
            (Disposition::Record, _) => metrics.outcome(Outcome::PermanentFailure),
            (Disposition::Retry { step, .. }, _) => {
                metrics.outcome(Outcome::Retry);
                metrics.retry_scheduled(*step);
            }
            (Disposition::Dead { .. }, _) => {
                metrics.outcome(Outcome::Dead);
                metrics.dead_letter(DeadReason::RetriesExhausted);
            }
        }
    }
}

/// After the commit: retries and dead jobs to their queues, then the acks.
async fn finish(ctx: Arc<Context>, batch: Vec<Completed>, dispositions: Vec<Disposition>) {
    let routed = route_retries_and_dead(&ctx, &batch, &dispositions).await;
    // The retry could not be queued: hand the job back for another attempt now rather
    // than lose it (the broker connection is most likely gone anyway).
    let how = if routed { Settle::Ack } else { Settle::Requeue };
    // One message to each channel's ack task (after a reconnect a batch can hold jobs of
    // two channels).
    let mut batch = batch.into_iter().peekable();
    while let Some(first) = batch.next() {
        let mut tags = vec![first.tag];
        while let Some(next) = batch.next_if(|c| c.acks.same_channel(&first.acks)) {
            tags.push(next.tag);
        }
        first.acks.settle_all(tags, how);
    }
}

fn decide(ctx: &Context, completed: &Completed) -> Disposition {
    match &completed.verdict {
        GatewayVerdict::Sent { .. }
        | GatewayVerdict::Permanent { .. }
        | GatewayVerdict::Expired => Disposition::Record,
        GatewayVerdict::Transient { error, retry_after } => {
            match ctx
                .retry_policy
                .after_failure(completed.attempt, *retry_after)
            {
                NextStep::RetryIn { step, attempt } => Disposition::Retry { step, attempt },
                NextStep::GiveUp => Disposition::Dead {
                    reason: format!("gave up after {} attempts: {error}", completed.attempt),
                },
            }
        }
    }
}

fn result_row(completed: &Completed, disposition: &Disposition) -> ResultRow {
    let recipient_id = completed.job.recipient_id();
    match (&completed.verdict, disposition) {
        (GatewayVerdict::Sent { response }, _) => ResultRow {
            recipient_id,
            status: RecipientStatus::Sent,
            error: None,
            response: Some(response.clone()),
        },
        (GatewayVerdict::Expired, _) => ResultRow {
            recipient_id,
            status: RecipientStatus::Expired,
            error: Some("validity ran out before it could be sent".to_owned()),
            response: None,
        },
        (GatewayVerdict::Permanent { error }, _) => ResultRow {
            recipient_id,
            status: RecipientStatus::Failed,
            error: Some(error.clone()),
            response: None,
        },
        (GatewayVerdict::Transient { error, .. }, Disposition::Dead { .. }) => ResultRow {
            recipient_id,
            status: RecipientStatus::Failed,
            error: Some(error.clone()),
            response: None,
        },
        (GatewayVerdict::Transient { error, .. }, _) => ResultRow {
            recipient_id,
            status: RecipientStatus::Pending,
            error: Some(error.clone()),
            response: None,
        },
    }
}

/// Commits the batch, retrying with backoff while PostgreSQL is unavailable (the jobs
/// stay unacked meanwhile, and prefetch stops the flow). `None` only when killed.
async fn commit_with_retry(
    ctx: &Context,
    batch: &[Completed],
    dispositions: &[Disposition],
    kill: &CancellationToken,
) -> Option<Changes> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match commit(ctx, batch, dispositions).await {
            Ok(changes) => return Some(changes),
            Err(e) => {
                error!(error = %e, "writing a result batch failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = kill.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What a committed batch changed, for the status events.
struct Changes {
    recipients: Vec<repo::ChangedRecipient>,
    messages: Vec<repo::MessageProgress>,
}

async fn commit(
    ctx: &Context,
    batch: &[Completed],
    dispositions: &[Disposition],
) -> Result<Changes, sqlx::Error> {
    let mut rows: Vec<ResultRow> = batch
        .iter()
        .zip(dispositions)
        .map(|(c, d)| result_row(c, d))
        .collect();
    // In id order, the update locks recipient rows in id order: two batches holding
    // duplicates of the same jobs never wait on each other in opposite orders.
    rows.sort_unstable_by_key(|r| r.recipient_id);
    let mut message_ids: Vec<i64> = batch.iter().map(|c| c.job.message_id()).collect();
    message_ids.sort_unstable();
    message_ids.dedup();

    let mut tx = ctx.db.begin().await?;
    // Recipients first, message rows last: a batch holds its messages' locks only for the
    // counter update and the commit, so writers of the same bulk (one message, many
    // dispatchers) overlap their recipient updates instead of queueing behind one message
    // row for the whole transaction.
    let mut changed = repo::update_recipients(&mut tx, &rows).await?;
    // Rows left unchanged are duplicates, or recipients cancelled while in flight.
    let unchanged: Vec<ResultRow> = if changed.len() < rows.len() {
        let done: HashSet<i64> = changed.iter().map(|r| r.id).collect();
        rows.into_iter()
            .filter(|r| !done.contains(&r.recipient_id) && r.status != RecipientStatus::Pending)
            .collect()
    } else {
        Vec::new()
    };
    let uncancelled = if unchanged.is_empty() {
        Vec::new()
    } else {
        repo::record_in_flight_at_cancel(&mut tx, &unchanged).await?
    };
    repo::lock_messages(&mut tx, &message_ids).await?;

    let mut deltas: BTreeMap<i64, CounterDelta> = message_ids
        .iter()
        .map(|id| (*id, CounterDelta::default()))
        .collect();
    for recipient in &uncancelled {
        deltas.entry(recipient.message_id).or_default().uncancelled += 1;
    }
    changed.extend(uncancelled);
    let mut minute = CounterDelta::default();
    for recipient in &changed {
        let delta = deltas.entry(recipient.message_id).or_default();
        for d in [delta, &mut minute] {
            match recipient.status {
                RecipientStatus::Sent => d.sent += 1,
                RecipientStatus::Failed => d.failed += 1,
                RecipientStatus::Expired => d.expired += 1,
                _ => {}
            }
        }
    }
    let ids: Vec<i64> = deltas.keys().copied().collect();
    let counts: Vec<CounterDelta> = deltas.values().copied().collect();
    let messages = repo::update_message_counters(&mut tx, &ids, &counts).await?;
    if minute.sent + minute.failed + minute.expired > 0 {
        let shard = (message_ids[0] % 8) as i16;
        repo::count_traffic(&mut tx, shard, minute.sent, minute.failed, minute.expired).await?;
    }
    // In the same transaction as the change: a committed result always has its webhook
    // deliveries, whatever happens to this process next.
    webhooks::enqueue_status(&mut tx, &messages, &changed).await?;

    // Only recipients this batch actually failed get a dead letter: a duplicate job for
    // an already-failed recipient must not add a second one.
    let failed_now: HashMap<i64, i32> = changed
        .iter()
        .filter(|r| r.status == RecipientStatus::Failed)
        .map(|r| (r.id, r.attempts))
        .collect();
    let dead: Vec<DeadLetterRow> = batch
        .iter()
        .zip(dispositions)
        .filter_map(|(c, d)| match d {
            Disposition::Dead { reason } => {
                let attempts = *failed_now.get(&c.job.recipient_id())?;
                Some(DeadLetterRow {
                    recipient_id: c.job.recipient_id(),
                    message_id: c.job.message_id(),
                    reason: reason.clone(),
                    attempts,
                    payload: serde_json::to_value(&c.job).unwrap_or_default(),
                })
            }
            _ => None,
        })
        .collect();
    repo::insert_dead_letters(&mut tx, &dead).await?;
    tx.commit().await?;
    Ok(Changes {
        recipients: changed,
        messages,
    })
}

/// Publishes retries to the exchange of their step's delay and exhausted jobs to the dead queue, with
/// confirms. False if any publish failed.
async fn route_retries_and_dead(
    ctx: &Context,
    batch: &[Completed],
    dispositions: &[Disposition],
) -> bool {
    let mut by_exchange: BTreeMap<String, Vec<OutgoingMessage>> = BTreeMap::new();
    for (completed, disposition) in batch.iter().zip(dispositions) {
        let (exchange, routing_key, headers) = match disposition {
            Disposition::Record => continue,
            Disposition::Retry { step, attempt } => (
                ctx.names.retry_queue(ctx.retry_policy.delay(*step)),
                completed.routing_key.clone(),
                with_attempt(completed.headers.as_ref(), *attempt),
            ),
            // The default exchange routes by queue name.
            Disposition::Dead { .. } => (
                String::new(),
                ctx.names.dead_queue(),
                with_attempt(completed.headers.as_ref(), completed.attempt),
            ),
        };
        by_exchange
            .entry(exchange)
            .or_default()
            .push(OutgoingMessage {
                routing_key,
                payload: completed.payload.clone(),
                headers,
            });
    }
    for (exchange, messages) in by_exchange {
        if let Err(e) = ctx
            .broker
            .publisher(exchange.clone())
            .publish_all(messages)
            .await
        {
            warn!(error = %e, exchange, "could not route jobs for retry");
            return false;
        }
    }
    true
}

/// One progress event per message a committed batch touched (absolute counters plus the
/// recipients it changed).
fn status_events(changes: Changes) -> Vec<OutgoingMessage> {
    if changes.messages.is_empty() {
        return Vec::new();
    }
    let mut updates: HashMap<i64, Vec<RecipientUpdate>> = HashMap::new();
    for r in changes.recipients {
        updates
            .entry(r.message_id)
            .or_default()
            .push(RecipientUpdate {
                recipient_id: r.id,
                status: r.status,
                attempts: r.attempts,
                error: r.last_error,
            });
    }
    changes
        .messages
        .into_iter()
        .map(|m| {
            let event = m.event(updates.remove(&m.id).unwrap_or_default());
            OutgoingMessage {
                routing_key: routing::status(m.id),
                payload: event.to_json(),
                headers: FieldTable::default(),
            }
        })
        .collect()
}

/// Publishes the batches' events one batch after another, off the write path, so this
/// dispatcher's events for a message arrive in commit order (events of different
/// dispatchers may still interleave). Best effort: events only feed live views, the next
/// one corrects a lost one (they carry absolute counters), and the views re-read the
/// database when events stop.
async fn publish_events_in_order(
    ctx: Arc<Context>,
    mut queued: mpsc::UnboundedReceiver<Vec<OutgoingMessage>>,
) {
    let publisher = ctx.broker.publisher(ctx.names.events_exchange());
    while let Some(events) = queued.recv().await {
        if let Err(e) = publisher.publish_all(events).await {
            debug!(error = %e, "status events not published");
        }
    }
}
