//! The dispatcher's coalesced acks against a real broker: jobs settled out of order, with
//! a requeue and a job that never finishes, leave exactly the unfinished jobs with the
//! broker, and never an ack the broker refuses (that would close the channel).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use smsgate_dispatcher::acks::{Acks, Settle, STRAGGLER_WAIT};
use smsgate_shared::queue::{Broker, OutgoingMessage};
use smsgate_tests::app::test_amqp_url;
use tokio_util::task::TaskTracker;

const JOBS: u32 = 60;
/// Never settled: it holds back the multiple ack, so the jobs after it go as stragglers.
const NEVER_FINISHES: u32 = 10;
const REQUEUED: u32 = 20;

fn number_of(delivery: &Delivery) -> u32 {
    std::str::from_utf8(&delivery.data)
        .unwrap()
        .parse()
        .unwrap()
}

async fn next(consumer: &mut Consumer) -> Option<Delivery> {
    let next = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await;
    next.ok().flatten().map(|delivery| delivery.unwrap())
}

async fn consume(channel: &Channel, queue: &str) -> Consumer {
    channel
        .basic_qos(JOBS as u16 * 2, BasicQosOptions::default())
        .await
        .unwrap();
    channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn out_of_order_settles_leave_only_unfinished_jobs_and_keep_the_channel_open() {
    let broker = Broker::new(&test_amqp_url());
    let queue = format!("t{:016x}.acks", rand::random::<u64>());
    let setup = broker.channel().await.unwrap();
    setup
        .queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let jobs = (1..=JOBS)
        .map(|n| OutgoingMessage {
            routing_key: queue.clone(),
            payload: n.to_string().into_bytes(),
            headers: FieldTable::default(),
        })
        .collect();
    broker
        .publisher(String::new())
        .publish_all(jobs)
        .await
        .unwrap();

    let channel = broker.channel().await.unwrap();
    let mut consumer = consume(&channel, &queue).await;
    let tracker = TaskTracker::new();
    let acks = Acks::start(channel.clone(), &tracker);
    let mut tags = Vec::new();
    for _ in 1..=JOBS {
        let delivery = next(&mut consumer).await.expect("every job is delivered");
        acks.delivered(vec![delivery.delivery_tag]);
        tags.push((number_of(&delivery), delivery.delivery_tag));
    }

    // In order up to the one that never finishes (multiple acks), then the rest backwards
    // (held behind it until released one by one), one of them handed back.
    for &(n, tag) in &tags {
        if n < NEVER_FINISHES {
            acks.settle(tag, Settle::Ack);
        }
    }
    for &(n, tag) in tags.iter().rev() {
        match n {
            REQUEUED => acks.settle(tag, Settle::Requeue),
            n if n > NEVER_FINISHES => acks.settle(tag, Settle::Ack),
            _ => {}
        }
    }
    // The requeued job comes straight back; this consumer leaves it unfinished too.
    let redelivered = next(&mut consumer).await.expect("the requeued job returns");
    assert_eq!(number_of(&redelivered), REQUEUED);
    assert!(redelivered.redelivered);
    acks.delivered(vec![redelivered.delivery_tag]);

    tokio::time::sleep(STRAGGLER_WAIT * 4).await;
    assert!(
        next(&mut consumer).await.is_none(),
        "nothing else was handed back"
    );
    drop(acks);
    tracker.close();
    tracker.wait().await;
    assert!(
        channel.status().connected(),
        "the broker accepted every ack (a refused one closes the channel)"
    );
    channel.close(200, "done").await.unwrap();

    // What the broker still holds is exactly what was never finished.
    let again = broker.channel().await.unwrap();
    let mut consumer = consume(&again, &queue).await;
    let mut left = BTreeSet::new();
    while let Some(delivery) = next(&mut consumer).await {
        left.insert(number_of(&delivery));
    }
    assert_eq!(left, BTreeSet::from([NEVER_FINISHES, REQUEUED]));
    setup
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    broker.close().await;
}
