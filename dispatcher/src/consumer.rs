//! The consume loop: connect, declare, consume with manual acks; recover from broker
//! loss with backoff; on shutdown stop consuming and let in-flight sends finish.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use smsgate_shared::queue::{attempt_of, copy_to_dead_queue, declare_topology, OutboundJob};
use smsgate_shared::telemetry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, info_span, warn, Instrument};

use crate::acks::{Acks, Settle};
use crate::job::{handle, Outcome};
use crate::metrics::DeadReason;
use crate::repo;
use crate::writer::{Completed, ResultSender};
use crate::Context;

/// Jobs looked up together in one status query.
const LOOKUP_BATCH: usize = 256;

/// Consumes until `shutdown` (graceful) or `kill` (simulated crash) is cancelled. Each
/// broker session's ack task runs on `ack_tasks`, and outlives this function until the
/// writer has settled the session's last job.
pub async fn run(
    ctx: Arc<Context>,
    results: ResultSender,
    ack_tasks: TaskTracker,
    shutdown: CancellationToken,
    kill: CancellationToken,
) {
    let sends = TaskTracker::new();
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() && !kill.is_cancelled() {
        match session(&ctx, &results, &sends, &ack_tasks, &shutdown, &kill).await {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, "consumer lost its broker session; reconnecting in {backoff:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = kill.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    sends.close();
    sends.wait().await;
}

async fn session(
    ctx: &Arc<Context>,
    results: &ResultSender,
    sends: &TaskTracker,
    ack_tasks: &TaskTracker,
    shutdown: &CancellationToken,
    kill: &CancellationToken,
) -> anyhow::Result<()> {
    let channel = ctx.broker.channel().await?;
    let acks = Acks::start(channel.clone(), ack_tasks);
    declare_topology(&channel, &ctx.settings.queue).await?;
    channel
        .basic_qos(
            ctx.settings.effective_prefetch(),
            BasicQosOptions::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            &ctx.names.hkt_queue(),
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(queue = %ctx.names.hkt_queue(), prefetch = ctx.settings.effective_prefetch(), "consuming");
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = channel.basic_cancel(consumer.tag().as_str(), Default::default()).await;
                return Ok(());
            }
            _ = kill.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let first = match first {
            Some(delivery) => delivery?,
            None => anyhow::bail!("the broker closed the consumer"),
        };
        // Take whatever else is already buffered, so one status query serves many jobs.
        let mut deliveries = vec![first];
        while deliveries.len() < LOOKUP_BATCH {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => deliveries.push(delivery),
                _ => break,
            }
        }
        ctx.metrics.jobs_consumed.inc_by(deliveries.len() as u64);
        acks.delivered(deliveries.iter().map(|d| d.delivery_tag).collect());
        dispatch_batch(ctx, deliveries, &acks, results, sends, shutdown, kill).await;
    }
}

/// Parses the jobs, looks their recipients up in one query, acks the ones to skip and
/// starts a send for each of the others (bounded by the concurrency semaphore). Once a
/// shutdown starts, jobs not yet sent go back to the queue for another dispatcher.
async fn dispatch_batch(
    ctx: &Arc<Context>,
    deliveries: Vec<Delivery>,
    acks: &Acks,
    results: &ResultSender,
    sends: &TaskTracker,
    shutdown: &CancellationToken,
    kill: &CancellationToken,
) {
    let mut jobs = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match OutboundJob::from_json(&delivery.data) {
            Ok(job) => jobs.push((delivery, job)),
            Err(e) => bury_poison(ctx, &delivery, acks, e).await,
        }
    }
    let ids: Vec<i64> = jobs.iter().map(|(_, job)| job.recipient_id()).collect();
    let statuses = loop {
        match repo::recipient_statuses(&ctx.db, &ids).await {
            Ok(statuses) => break statuses,
            Err(e) => {
                error!(error = %e, "status lookup failed; retrying");
                tokio::select! {
                    _ = kill.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    for (delivery, job) in jobs {
        let current = statuses.get(&job.recipient_id()).copied();
        if current.is_none_or(|s| s.is_terminal()) {
            // Redelivered or duplicate job: its result is already committed.
            ctx.metrics.jobs_skipped.inc();
            acks.settle(delivery.delivery_tag, Settle::Ack);
            continue;
        }
        let permit = tokio::select! {
            permit = ctx.concurrency.clone().acquire_owned() => permit.ok(),
            _ = shutdown.cancelled() => None,
        };
        let Some(permit) = permit.filter(|_| !shutdown.is_cancelled()) else {
            acks.settle(delivery.delivery_tag, Settle::Requeue);
            continue;
        };
        let ctx = ctx.clone();
        let acks = acks.clone();
        let results = results.clone();
        let span = info_span!(
            "dispatch.job",
            message.id = job.message_id(),
            recipient.id = job.recipient_id()
        );
        telemetry::set_parent_from_headers(&span, delivery.properties.headers().as_ref());
        sends.spawn(
            async move {
                let attempt = attempt_of(delivery.properties.headers().as_ref());
                let outcome = handle(&job, current, &ctx.hkt, &ctx.gate).await;
                drop(permit);
                let Outcome::Attempted(verdict) = outcome else {
                    acks.settle(delivery.delivery_tag, Settle::Ack);
                    return;
                };
                let _ = results.send(Completed {
                    routing_key: delivery.routing_key.to_string(),
                    headers: delivery.properties.headers().clone(),
                    payload: delivery.data,
                    tag: delivery.delivery_tag,
                    acks,
                    job,
                    attempt,
                    verdict,
                });
            }
            .instrument(span),
        );
    }
}

/// A job that does not parse can never succeed: it goes to the dead queue for a human,
/// and is acked once the dead queue confirmed the copy.
async fn bury_poison(ctx: &Context, delivery: &Delivery, acks: &Acks, cause: serde_json::Error) {
    error!(error = %cause, "unparseable job moved to the dead queue");
    match copy_to_dead_queue(&ctx.broker, &ctx.names, delivery).await {
        Ok(()) => {
            ctx.metrics.dead_letter(DeadReason::UnparseableJob);
            acks.settle(delivery.delivery_tag, Settle::Ack)
        }
        Err(e) => {
            warn!(error = %e, "could not park the unparseable job; it goes back to the queue");
            acks.settle(delivery.delivery_tag, Settle::Requeue);
        }
    }
}
