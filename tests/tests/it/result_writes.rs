//! How results are written: concurrent batch writers on one message, and the order of
//! status events.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use smsgate_shared::queue::{Broker, Names, StatusEvent};
use smsgate_tests::app::{numbers, test_amqp_url, TestApp};

const DEADLINE: Duration = Duration::from_secs(60);

/// Many small result batches from two dispatchers land on the same message at once. The
/// writers lock the message only after their recipient updates, so they overlap; the
/// counters must still add up exactly.
#[tokio::test]
async fn two_dispatchers_writing_one_bulk_keep_its_counters_exact() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let mut settings = app.dispatcher_settings();
    settings.batch_size = 25;
    settings.batch_max_wait = Duration::from_millis(5);
    let first = smsgate_dispatcher::start(settings.clone()).await.unwrap();
    let second = smsgate_dispatcher::start(settings).await.unwrap();

    let recipients = numbers(2_000, 6211);
    let id = app.send_bulk(&recipients, "two writers").await;
    let message = app.wait_until_final(id, DEADLINE).await;

    assert_eq!(message["status"], "sent");
    assert_eq!(message["success_count"], 2_000);
    assert_eq!(message["failed_count"], 0);
    let rows = app.recipient_rows(id).await;
    assert_eq!(rows.len(), 2_000);
    assert!(rows
        .iter()
        .all(|(_, status, attempts)| status == "sent" && *attempts == 1));
    assert_eq!(app.mock.stats().total, 2_000, "each recipient posted once");
    first.stop().await;
    second.stop().await;
    app.dispatcher = None;
    app.teardown().await;
}

/// A dispatcher writes a message's batches one after another; the live views that apply
/// its events must see them in that order, never an older count after a newer one.
#[tokio::test]
async fn a_dispatchers_status_events_for_a_message_arrive_in_commit_order() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let broker = Broker::new(&test_amqp_url());
    let channel = broker.channel().await.unwrap();
    let spy = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            spy.name().as_str(),
            &Names::new(&app.prefix).events_exchange(),
            "status.*",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            spy.name().as_str(),
            "spy",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut settings = app.dispatcher_settings();
    settings.batch_size = 20;
    settings.batch_max_wait = Duration::from_millis(2);
    app.dispatcher = Some(smsgate_dispatcher::start(settings).await.unwrap());

    let id = app.send_bulk(&numbers(600, 6212), "in order").await;
    let mut done = Vec::new();
    loop {
        let delivery = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event within the deadline")
            .unwrap()
            .unwrap();
        let StatusEvent::MessageProgressV1 {
            message_id,
            sent,
            failed,
            status,
            ..
        } = StatusEvent::from_json(&delivery.data).unwrap();
        assert_eq!(message_id, id);
        done.push(sent + failed);
        if status.is_final() {
            break;
        }
    }
    assert!(done.len() > 5, "many batches, so many events: {done:?}");
    assert!(
        done.windows(2).all(|pair| pair[0] <= pair[1]),
        "events in commit order: {done:?}"
    );
    assert_eq!(done.last(), Some(&600));
    broker.close().await;
    app.teardown().await;
}
