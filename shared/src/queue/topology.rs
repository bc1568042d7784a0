//! Declares the topology. Every process calls this at start; declarations are idempotent,
//! so the order processes start in does not matter.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use super::contract::{routing, Names};
use super::edge;
use super::mismatch::TopologyError;
use crate::config::QueueSettings;

/// Declares exchanges, the HKT dispatch queue, one retry exchange+queue per delay of the
/// retry schedule and the dead queue. RabbitMQ refuses to redeclare a queue with other
/// arguments, so every argument here either comes from the queue's name (the retry TTL)
/// or from a setting whose change [`declare_or_explain`] turns into one clear error.
pub async fn declare_topology(
    channel: &Channel,
    settings: &QueueSettings,
) -> Result<(), lapin::Error> {
    let names = Names::new(&settings.prefix);
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            &names.outbound_exchange(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            &names.events_exchange(),
            ExchangeKind::Topic,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;

    declare_work_queue(channel, settings, &names.hkt_queue()).await?;
    channel
        .queue_bind(
            &names.hkt_queue(),
            &names.outbound_exchange(),
            routing::HKT,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for &delay in &settings.retry_schedule {
        let name = names.retry_queue(delay);
        channel
            .exchange_declare(
                &name,
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        let mut args = expiry_args(settings);
        // Classic queue on purpose: it only holds messages until their TTL runs out, and
        // dead-lettering keeps the original routing key, which sends the job back to the
        // queue of the route it came from.
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.outbound_exchange().into()),
        );
        channel
            .queue_declare(
                &name,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        channel
            .queue_bind(
                &name,
                &name,
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

    declare_work_queue(channel, settings, &names.dead_queue()).await?;
    Ok(())
}

/// Everything the central processes (API, dispatchers) declare: [`declare_topology`] and
/// [`declare_edge_ingest`], with a queue whose arguments a changed setting no longer
/// matches explained in one line (which queue, which setting, what to do).
pub async fn declare_central(
    channel: &Channel,
    settings: &QueueSettings,
) -> Result<(), TopologyError> {
    let explain = |e| TopologyError::from_declare(e, settings);
    declare_topology(channel, settings).await.map_err(explain)?;
    declare_edge_ingest(channel, settings)
        .await
        .map_err(explain)
}

/// Declares a durable queue that holds jobs (quorum where configured) and binds nothing.
pub async fn declare_work_queue(
    channel: &Channel,
    settings: &QueueSettings,
    name: &str,
) -> Result<(), lapin::Error> {
    let mut args = expiry_args(settings);
    if settings.quorum_queues {
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    Ok(())
}

/// Declares one SIM's queue, bound to `sim.<id>` on the outbound exchange. The API declares
/// it when a SIM is registered and the SIM's agent at every start, so jobs routed to a SIM
/// are queued even while its agent is away (instead of being dropped as unroutable).
pub async fn declare_sim_queue(
    channel: &Channel,
    settings: &QueueSettings,
    sim_id: i64,
) -> Result<(), lapin::Error> {
    let names = Names::new(&settings.prefix);
    declare_work_queue(channel, settings, &names.sim_queue(sim_id)).await?;
    channel
        .queue_bind(
            &names.sim_queue(sim_id),
            &names.outbound_exchange(),
            &routing::sim(sim_id),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declares the edge exchange and the queue the central side ingests edge events from,
/// bound to it. Only the central side declares them: agents have no configure permission
/// and check with passive declares that both exist before they publish (an event published
/// before the queue was bound would be unroutable, confirmed, and lost).
pub async fn declare_edge_ingest(
    channel: &Channel,
    settings: &QueueSettings,
) -> Result<(), lapin::Error> {
    let names = Names::new(&settings.prefix);
    channel
        .exchange_declare(
            &names.edge_exchange(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = edge::ingest_queue(&names);
    declare_work_queue(channel, settings, &queue).await?;
    for pattern in edge::INGEST_BINDINGS {
        channel
            .queue_bind(
                &queue,
                &names.edge_exchange(),
                pattern,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // Before per-SIM broker users, agents published on the events exchange. Those
        // bindings would let anyone who may write there (dispatchers, API) pass for an
        // agent; unbinding one that does not exist is a no-op.
        channel
            .queue_unbind(
                &queue,
                &names.events_exchange(),
                pattern,
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

fn expiry_args(settings: &QueueSettings) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(expiry) = settings.queue_expiry {
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(expiry.as_millis() as i64),
        );
    }
    args
}
