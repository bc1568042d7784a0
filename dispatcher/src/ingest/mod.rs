//! The central side of the edge gateway: consumes the events modem agents publish (send
//! results, delivery reports, received SMS, heartbeats) from one durable queue, writes them
//! to PostgreSQL and publishes status events for the live panel.
//!
//! It lives in the dispatcher because the dispatcher already owns result writing (message
//! counters, status events); the API stays free of consumers other than its live stream.
//! One event per transaction: a modem sends a few SMS a minute, so batching would buy
//! nothing here. Ack after commit, as everywhere; every write is idempotent (only
//! `pending` recipients change, parts and inbound SMS are unique), so a redelivered event
//! changes nothing twice.

mod inbound;
mod repo;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use smsgate_core::optout::Keywords;
use smsgate_shared::domain::RecipientStatus;
use smsgate_shared::domain::{MessageBody, PhoneNumber};
use smsgate_shared::queue::edge::{ingest_queue, EdgeEvent, SimSendOutcome};
use smsgate_shared::queue::{
    bury_in_dead_queue, declare_central, job_headers, routing, OutboundJob, OutgoingMessage,
    RecipientUpdate, StatusEvent,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::metrics::{DeadReason, EdgeEventKind};
use crate::retry::{NextStep, RetryPolicy};
use crate::{webhooks, Context};
use verify::AuditThrottle;
pub use verify::Rejection;

/// Events taken from the broker ahead of the one being written. They are written one at
/// a time, so a small window is enough to hide the broker round trip.
const PREFETCH: u16 = 20;

/// Consumes until `shutdown` or `kill` is cancelled, reconnecting with backoff.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken, kill: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() && !kill.is_cancelled() {
        match session(&ctx, &mut backoff, &shutdown, &kill).await {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, "edge ingest lost its broker session; reconnecting in {backoff:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = kill.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn session(
    ctx: &Context,
    backoff: &mut Duration,
    shutdown: &CancellationToken,
    kill: &CancellationToken,
) -> anyhow::Result<()> {
    let channel = ctx.broker.channel().await?;
    declare_central(&channel, &ctx.settings.queue).await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let queue = ingest_queue(&ctx.names);
    let mut consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    *backoff = Duration::from_millis(500);
    info!(queue = %queue, "ingesting edge events");
    let mut audit = AuditThrottle::default();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = kill.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(delivery) => delivery?,
            None => anyhow::bail!("the broker closed the consumer"),
        };
        ingest_one(ctx, delivery, &mut audit, kill).await?;
    }
}

async fn ingest_one(
    ctx: &Context,
    delivery: Delivery,
    audit: &mut AuditThrottle,
    kill: &CancellationToken,
) -> anyhow::Result<()> {
    let event = match EdgeEvent::from_json(&delivery.data) {
        Ok(event) => event,
        Err(e) => {
            // Nothing can ever make it parse: keep it for a human, don't redeliver forever.
            error!(error = %e, "unparseable edge event moved to the dead queue");
            bury_in_dead_queue(&ctx.broker, &ctx.names, delivery).await?;
            ctx.metrics.dead_letter(DeadReason::UnparseableEvent);
            return Ok(());
        }
    };
    let span = info_span!("ingest.edge_event", sim.id = event.sim_id());
    let publisher = delivery
        .properties
        .user_id()
        .as_ref()
        .map(|u| u.to_string());
    if let Err(rejection) = verify::check_publisher(&ctx.names, publisher.as_deref(), &event) {
        refuse(ctx, audit, publisher.as_deref(), &event, &rejection).await;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        return Ok(());
    }
    let mut retry = Duration::from_millis(100);
    let effect = loop {
        match handle(
            &ctx.db,
            &ctx.retry_policy,
            &ctx.settings.opt_out_keywords,
            &event,
        )
        .instrument(span.clone())
        .await
        {
            Ok(effect) => break effect,
            Err(e) => {
                // The event stays unacked while PostgreSQL is away; prefetch stops the flow.
                error!(error = %e, "writing an edge event failed; retrying in {retry:?}");
                tokio::select! {
                    _ = kill.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    };
    match effect {
        Effect::Nothing => {}
        Effect::Progress(status) => publish_status(ctx, status),
        Effect::Rejected(rejection) => {
            refuse(ctx, audit, publisher.as_deref(), &event, &rejection).await;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            return Ok(());
        }
        // Committed first: a publish that fails leaves the event unacked, and its
        // redelivery publishes the retry again (at least once, as every job).
        Effect::Retry { step, job } => {
            ctx.broker
                .publisher(ctx.names.retry_queue(ctx.retry_policy.delay(step)))
                .publish_one(job)
                .instrument(span)
                .await?;
            ctx.metrics.retry_scheduled(step);
        }
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    ctx.metrics.edge_event(kind_of(&event));
    Ok(())
}

async fn refuse(
    ctx: &Context,
    audit: &mut AuditThrottle,
    publisher: Option<&str>,
    event: &EdgeEvent,
    rejection: &Rejection,
) {
    ctx.metrics.edge_event_rejected(rejection);
    audit.record(&ctx.db, publisher, event, rejection).await;
}

/// What writing one event changed, beyond the database.
#[derive(Debug)]
pub enum Effect {
    Nothing,
    /// A message's progress changed: its status event to publish.
    Progress(StatusEvent),
    /// The event is not the publisher's to make; nothing was written.
    Rejected(Rejection),
    /// A SIM job failed transiently: its next attempt, to publish to retry queue `step`.
    Retry {
        step: usize,
        job: OutgoingMessage,
    },
}

/// Writes one event whose publisher was checked ([`verify::check_publisher`]). Idempotent:
/// handling the same event twice changes nothing the second time. No broker in here, so it
/// is tested against a database alone. `retries` decides a transiently failed SIM job's
/// next attempt; `keywords` are what a received SMS must say to opt its sender out (or
/// back in).
pub async fn handle(
    db: &PgPool,
    retries: &RetryPolicy,
    keywords: &Keywords,
    event: &EdgeEvent,
) -> Result<Effect, sqlx::Error> {
    match event {
        EdgeEvent::SimSendResultV1 {
            sim_id,
            recipient_id,
            message_id,
            outcome,
            references,
            error,
            attempts,
            ..
        } => {
            let mut tx = db.begin().await?;
            crate::repo::lock_messages(&mut tx, &[*message_id]).await?;
            let Some(job) = repo::lock_sim_job(&mut tx, *recipient_id).await? else {
                return Ok(Effect::Rejected(Rejection::NotRoutedHere {
                    recipient_id: *recipient_id,
                }));
            };
            // Routed here: the releaser gave this recipient's job to this SIM. A result for
            // any other recipient would let one Pi report for another SIM's, or HKT's, sends.
            if job.message_id != *message_id || job.sim_card_id != Some(*sim_id) {
                return Ok(Effect::Rejected(Rejection::NotRoutedHere {
                    recipient_id: *recipient_id,
                }));
            }
            if job.status != RecipientStatus::Pending {
                return Ok(Effect::Rejected(Rejection::NotPending {
                    recipient_id: *recipient_id,
                }));
            }
            let attempts_i32 = i32::try_from(*attempts).unwrap_or(i32::MAX);
            let reason = error.as_deref().unwrap_or("transient modem error");
            let (status, error) = match outcome {
                SimSendOutcome::Sent => (RecipientStatus::Sent, None),
                SimSendOutcome::Failed => (RecipientStatus::Failed, error.clone()),
                SimSendOutcome::Retry => match retries.after_failure(*attempts, None) {
                    NextStep::RetryIn { step, attempt } => {
                        let next = retry_job(*sim_id, *recipient_id, &job, attempt);
                        repo::note_sim_retry(&mut tx, *recipient_id, attempts_i32, reason).await?;
                        tx.commit().await?;
                        return Ok(match next {
                            Some(job) => Effect::Retry { step, job },
                            None => Effect::Nothing,
                        });
                    }
                    NextStep::GiveUp => (
                        RecipientStatus::Failed,
                        Some(format!("gave up after {attempts} attempts: {reason}")),
                    ),
                },
            };
            let response = (*outcome == SimSendOutcome::Sent)
                .then(|| format!("SIM {sim_id}: message references {references:?}"));
            let changed = repo::record_sim_result(
                &mut tx,
                *recipient_id,
                status,
                attempts_i32,
                error.as_deref(),
                response.as_deref(),
            )
            .await?;
            let Some(changed) = changed else {
                tx.commit().await?;
                debug!("result for a recipient that is no longer pending ignored");
                return Ok(Effect::Nothing);
            };
            let refs: Vec<i16> = references.iter().map(|r| i16::from(*r)).collect();
            repo::insert_part_refs(&mut tx, *sim_id, *recipient_id, &refs).await?;
            let (sent, failed) = match changed.status {
                RecipientStatus::Sent => (1, 0),
                _ => (0, 1),
            };
            let delta = crate::repo::CounterDelta {
                sent,
                failed,
                ..Default::default()
            };
            let progress =
                crate::repo::update_message_counters(&mut tx, &[changed.message_id], &[delta])
                    .await?;
            webhooks::enqueue_status(&mut tx, &progress, std::slice::from_ref(&changed)).await?;
            tx.commit().await?;
            Ok(progress.into_iter().next().map_or(Effect::Nothing, |m| {
                Effect::Progress(m.event(vec![update_of(changed)]))
            }))
        }
        EdgeEvent::DeliveryReportV1 {
            sim_id,
            reference,
            delivered,
            status,
            ..
        } => {
            let mut tx = db.begin().await?;
            let Some((recipient_id, message_id)) = repo::mark_part_reported(
                &mut tx,
                *sim_id,
                i16::from(*reference),
                *delivered,
                i16::from(*status),
            )
            .await?
            else {
                tx.commit().await?;
                debug!(reference, "delivery report for an unknown part ignored");
                return Ok(Effect::Nothing);
            };
            let changed = if *delivered {
                repo::mark_delivered_if_complete(&mut tx, recipient_id).await?
            } else {
                let reason = format!("delivery failed: status report TP-ST 0x{status:02X}");
                repo::note_delivery_failure(&mut tx, recipient_id, &reason).await?;
                None
            };
            let progress = match &changed {
                Some(_) => repo::message_progress(&mut tx, message_id).await?,
                None => None,
            };
            if let (Some(changed), Some(progress)) = (&changed, &progress) {
                webhooks::enqueue_status(
                    &mut tx,
                    std::slice::from_ref(progress),
                    std::slice::from_ref(changed),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(match (changed, progress) {
                (Some(changed), Some(m)) => Effect::Progress(m.event(vec![update_of(changed)])),
                _ => Effect::Nothing,
            })
        }
        EdgeEvent::InboundSmsV1 {
            sim_id,
            key,
            sender,
            text,
            parts,
            sent_at,
            received_at,
        } => {
            let sms = inbound::Received {
                sim_id: *sim_id,
                key,
                sender,
                text,
                parts: *parts,
                sent_at: *sent_at,
                received_at: *received_at,
            };
            inbound::store(db, keywords, sms).await?;
            Ok(Effect::Nothing)
        }
        EdgeEvent::HeartbeatV1 {
            sim_id,
            number,
            signal,
            registration,
            operator,
            ..
        } => {
            let registered = repo::record_heartbeat(
                db,
                *sim_id,
                signal.map(i16::from),
                registration.as_str(),
                operator.as_deref(),
            )
            .await?;
            match (registered, number) {
                (None, _) => warn!("heartbeat from an agent whose SIM id is not registered"),
                (Some(registered), Some(reported)) if registered != *reported => {
                    warn!("heartbeat from an agent configured with another SIM's number; check SIM_ID")
                }
                _ => {}
            }
            Ok(Effect::Nothing)
        }
    }
}

/// The next attempt of a SIM job, rebuilt from the database (the agent's copy is not
/// trusted), for the SIM's own queue. `None` when the stored message no longer parses.
fn retry_job(
    sim_id: i64,
    recipient_id: i64,
    job: &repo::SimJobState,
    attempt: u32,
) -> Option<OutgoingMessage> {
    // Bodies in the table passed the segment limit when they were accepted.
    let body = MessageBody::parse(&job.content, u32::MAX).ok()?;
    let to = PhoneNumber::parse(&job.phone).ok()?;
    let next = OutboundJob::SendV1 {
        recipient_id,
        message_id: job.message_id,
        to,
        body,
        valid_until: job.valid_until,
    };
    Some(OutgoingMessage {
        routing_key: routing::sim(sim_id),
        payload: next.to_json(),
        headers: job_headers(attempt),
    })
}

fn kind_of(event: &EdgeEvent) -> EdgeEventKind {
    match event {
        EdgeEvent::SimSendResultV1 { .. } => EdgeEventKind::SimSendResult,
        EdgeEvent::DeliveryReportV1 { .. } => EdgeEventKind::DeliveryReport,
        EdgeEvent::InboundSmsV1 { .. } => EdgeEventKind::InboundSms,
        EdgeEvent::HeartbeatV1 { .. } => EdgeEventKind::Heartbeat,
    }
}

fn update_of(changed: repo::ChangedRecipient) -> RecipientUpdate {
    RecipientUpdate {
        recipient_id: changed.id,
        status: changed.status,
        attempts: changed.attempts,
        error: changed.last_error,
    }
}

/// Off the write path, as the writer does: events feed live views and carry absolute
/// counters, so a lost one is corrected by the next.
fn publish_status(ctx: &Context, event: StatusEvent) {
    let message = OutgoingMessage {
        routing_key: routing::status(event.message_id()),
        payload: event.to_json(),
        headers: FieldTable::default(),
    };
    let publisher = ctx.broker.publisher(ctx.names.events_exchange());
    tokio::spawn(async move {
        if let Err(e) = publisher.publish_one(message).await {
            debug!(error = %e, "status event not published");
        }
    });
}
