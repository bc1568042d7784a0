//! How results and bulks are written: concurrent batch writers on one message, the order
//! of status events, and a bulk insert that fails halfway.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use smsgate_shared::queue::{Broker, Names, StatusEvent};
use smsgate_tests::app::{numbers, test_amqp_url, TestApp, TestOptions};
use smsgate_tests::spy::spy_on;

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
    let mut events = spy_on(
        &channel,
        &Names::new(&app.prefix).events_exchange(),
        "status.*",
    )
    .await;
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

/// The recipients of a bulk go in by COPY inside the message's transaction: if PostgreSQL
/// refuses one of them, nothing of the message is left behind, the caller gets an error in
/// our format, and the connection it used goes on serving requests.
#[tokio::test]
async fn a_bulk_whose_recipients_cannot_all_be_stored_leaves_nothing_behind() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_marked_number() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.phone = '+85298888888' THEN RAISE EXCEPTION 'refused for the test'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_marked_number BEFORE INSERT ON recipients
             FOR EACH ROW EXECUTE FUNCTION refuse_marked_number();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let mut recipients = numbers(9_000, 6213);
    recipients.push("+85298888888".into());

    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": recipients, "content": "half a bulk"}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (messages, recipients_left, outbox): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM recipients),
                (SELECT count(*) FROM message_outbox)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((messages, recipients_left, outbox), (0, 0, 0));

    // Every pooled connection, the one whose COPY failed among them, still works.
    for round in 0..20 {
        let (status, body) = app
            .post(
                "/api/sms/send-bulk",
                json!({"recipients": numbers(3, 6300 + round), "content": "after"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    app.teardown().await;
}
