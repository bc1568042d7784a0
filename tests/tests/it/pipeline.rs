//! The send pipeline end to end: API → PostgreSQL → RabbitMQ → dispatcher → mock HKT.

use std::time::Duration;

use serde_json::json;
use smsgate_mock_hkt::MockConfig;
use smsgate_tests::app::{numbers, TestApp};

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_single_sms_reaches_sent_and_the_gateway_gets_all_four_fields() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("1234 5678", "Hello World").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(message["success_count"], 1);
    assert_eq!(message["failed_count"], 0);
    assert!(message["completed_at"].is_string());

    let received = app.mock.received_for("85212345678");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].msg_utf8, "Hello World");
    assert_eq!(received[0].application, "LabourDept");
    assert_eq!(received[0].sender, "852520702793127");
    assert_eq!(
        app.recipient_rows(id).await,
        vec![("+85212345678".into(), "sent".into(), 1)]
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_bulk_reaches_sent_for_every_recipient_exactly_once() {
    let app = TestApp::spawn().await;
    let recipients = numbers(300, 5123);
    let id = app.send_bulk(&recipients, "bulk hello").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(message["recipient_count"], 300);
    assert_eq!(message["success_count"], 300);
    let rows = app.recipient_rows(id).await;
    assert!(rows
        .iter()
        .all(|(_, status, attempts)| status == "sent" && *attempts == 1));
    assert_eq!(
        app.mock.stats().total,
        300,
        "every recipient posted once, none twice"
    );
    app.teardown().await;
}

/// Single sends that arrive together share one INSERT statement; each caller must still get
/// its own message, owned by its own user, and every one must be sent exactly once.
#[tokio::test]
async fn concurrent_single_sends_of_two_users_each_get_their_own_message_sent_once() {
    let app = TestApp::spawn().await;
    let (second_user, second_token) = app.create_user("second", "second-password").await;
    let first_user: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'SMSadmin'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    const SENDS: usize = 200;

    let sends = (0..SENDS).map(|i| {
        let token = if i % 2 == 0 {
            app.token.clone()
        } else {
            second_token.clone()
        };
        let app = &app;
        async move {
            let body =
                json!({"recipient": format!("+85261{i:06}"), "content": format!("send {i}")});
            let (status, body) = app
                .request(reqwest::Method::POST, "/api/sms", Some(&token), Some(body))
                .await;
            assert_eq!(status, 202, "send {i}: {body}");
            body["data"]["id"].as_i64().unwrap()
        }
    });
    let ids = futures::future::join_all(sends).await;

    for (i, id) in ids.iter().enumerate() {
        let (user_id, content): (i64, String) =
            sqlx::query_as("SELECT user_id, content FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        let owner = if i % 2 == 0 { first_user } else { second_user };
        assert_eq!(
            (user_id, content.as_str()),
            (owner, format!("send {i}").as_str())
        );
        let rows = app.recipient_rows(*id).await;
        assert_eq!(rows.len(), 1, "send {i}");
        assert_eq!(rows[0].0, format!("+85261{i:06}"));
    }
    let until = tokio::time::Instant::now() + DEADLINE;
    while app.mock.stats().total < SENDS as u64 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, id) in ids.iter().enumerate() {
        let until = tokio::time::Instant::now() + DEADLINE;
        while app.recipient_rows(*id).await[0].1 != "sent" {
            assert!(tokio::time::Instant::now() < until, "send {i} not sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            app.mock.received_for(&format!("85261{i:06}")).len(),
            1,
            "send {i} posted once"
        );
    }
    let (_, listing) = app.get("/api/sms?per_page=1").await;
    assert_eq!(
        listing["data"]["total"],
        SENDS as i64 / 2,
        "each user's own count"
    );
    app.teardown().await;
}

#[tokio::test]
async fn content_containing_error_fails_permanently_after_one_attempt() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("23456789", "this has an ERROR inside").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(message["failed_count"], 1);
    assert_eq!(
        app.recipient_rows(id).await[0],
        ("+85223456789".into(), "failed".into(), 1)
    );
    let (_, recipients) = app.get(&format!("/api/sms/{id}/recipients")).await;
    assert!(recipients["data"]["recipients"][0]["error_message"]
        .as_str()
        .unwrap()
        .contains("401"));
    assert_eq!(
        app.dead_letter_count(id).await,
        0,
        "a permanent failure is not a dead letter"
    );
    assert_eq!(app.mock.stats().total, 1);
    app.teardown().await;
}

#[tokio::test]
async fn two_503s_then_200_is_sent_on_the_third_attempt() {
    let app = TestApp::spawn().await;
    app.mock.set_config(MockConfig {
        burst_5xx: 2,
        ..MockConfig::default()
    });
    let id = app.send_sms("34567890", "retry me").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(
        app.recipient_rows(id).await[0],
        ("+85234567890".into(), "sent".into(), 3)
    );
    let statuses: Vec<u16> = app.mock.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    app.teardown().await;
}

#[tokio::test]
async fn a_gateway_down_through_the_whole_schedule_ends_failed_with_a_dead_letter() {
    let app = TestApp::spawn().await;
    app.mock.set_config(MockConfig {
        fail_share: 1.0,
        fail_status: 503,
        ..MockConfig::default()
    });
    let id = app.send_sms("45678901", "nobody home").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "failed");
    // One first try plus one per step of the three-step test schedule.
    assert_eq!(
        app.recipient_rows(id).await[0],
        ("+85245678901".into(), "failed".into(), 4)
    );
    assert_eq!(app.mock.stats().total, 4);
    assert_eq!(app.dead_letter_count(id).await, 1);
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM dead_letters WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(reason.contains("503"), "{reason}");

    // The exhausted job itself waits in the dead queue for inspection.
    let broker = smsgate_shared::queue::Broker::new(&smsgate_tests::app::test_amqp_url());
    let channel = broker.channel().await.unwrap();
    let dead = smsgate_shared::queue::Names::new(&app.prefix).dead_queue();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(&dead, passive, lapin::types::FieldTable::default())
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 1, "the job is parked in {dead}");
    broker.close().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_bulk_with_some_numbers_refused_ends_partial() {
    let app = TestApp::spawn().await;
    let recipients = numbers(10, 6000);
    app.mock.set_config(MockConfig {
        fail_numbers: vec!["85260000003".into(), "85260000007".into()],
        fail_status: 400,
        ..MockConfig::default()
    });
    let id = app.send_bulk(&recipients, "mixed").await;

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "partial");
    assert_eq!(message["success_count"], 8);
    assert_eq!(message["failed_count"], 2);
    app.teardown().await;
}

#[tokio::test]
async fn history_lists_own_messages_newest_first_with_totals() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let first = app.send_sms("12345678", "one").await;
    let second = app.send_sms("12345678", "two").await;
    let third = app.send_bulk(&numbers(3, 7000), "three").await;

    let (status, body) = app.get("/api/sms?page=1&per_page=2").await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["total"], 3);
    assert_eq!(data["pages"], 2);
    let ids: Vec<i64> = data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![third, second]);
    let (_, page2) = app.get("/api/sms?page=2&per_page=2").await;
    assert_eq!(page2["data"]["messages"][0]["id"], first);

    let (_, detail) = app.get(&format!("/api/sms/{third}")).await;
    assert_eq!(detail["data"]["recipient_count"], 3);
    assert_eq!(detail["data"]["status"], "pending");
    assert!(
        detail["data"]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "RFC 3339 UTC"
    );

    let (_, recipients) = app
        .get(&format!("/api/sms/{third}/recipients?per_page=2"))
        .await;
    assert_eq!(recipients["data"]["total"], 3);
    assert_eq!(recipients["data"]["pages"], 2);
    let first_recipient = &recipients["data"]["recipients"][0];
    assert_eq!(first_recipient["phone"], "+85270000000");
    assert_eq!(first_recipient["status"], "pending");
    assert_eq!(first_recipient["attempts"], 0);
    app.teardown().await;
}

#[tokio::test]
async fn every_job_carries_a_traceparent_and_an_attempt_header() {
    use futures::StreamExt;
    use smsgate_tests::spy::spy_on;

    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    // A spy queue bound like the HKT queue sees a copy of every job.
    let broker = smsgate_shared::queue::Broker::new(&smsgate_tests::app::test_amqp_url());
    let channel = broker.channel().await.unwrap();
    let names = smsgate_shared::queue::Names::new(&app.prefix);
    let mut consumer = spy_on(&channel, &names.outbound_exchange(), "hkt").await;

    let id = app.send_sms("12345678", "traced").await;
    let delivery = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let headers = delivery.properties.headers().clone().unwrap();
    let traceparent = headers
        .inner()
        .get("traceparent")
        .expect("traceparent header");
    let lapin::types::AMQPValue::LongString(raw) = traceparent else {
        panic!("traceparent is not a string")
    };
    let text = String::from_utf8(raw.as_bytes().to_vec()).unwrap();
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert_eq!(parts[0], "00", "W3C version");
    assert!(
        parts[1].len() == 32 && parts[1] != "0".repeat(32),
        "a real trace id: {text}"
    );
    assert_eq!(parts[2].len(), 16);
    assert_eq!(smsgate_shared::queue::attempt_of(Some(&headers)), 1);
    let job = smsgate_shared::queue::OutboundJob::from_json(&delivery.data).unwrap();
    assert_eq!(job.message_id(), id);
    let payload: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(payload["type"], json!("SendV1"));
    broker.close().await;
    app.teardown().await;
}

#[tokio::test]
async fn an_unparseable_job_is_parked_in_the_dead_queue_and_dispatch_goes_on() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::BasicProperties;

    let app = TestApp::spawn().await;
    let broker = smsgate_shared::queue::Broker::new(&smsgate_tests::app::test_amqp_url());
    let channel = broker.channel().await.unwrap();
    let names = smsgate_shared::queue::Names::new(&app.prefix);
    channel
        .basic_publish(
            &names.outbound_exchange(),
            "hkt",
            BasicPublishOptions::default(),
            b"{\"type\":\"NoSuchJobV9\"}",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // A real send after the poison one still goes out.
    let id = app.send_sms("12345678", "after the poison").await;
    assert_eq!(app.wait_until_final(id, DEADLINE).await["status"], "sent");

    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let dead = channel
        .queue_declare(&names.dead_queue(), passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(
        dead.message_count(),
        1,
        "the unparseable job waits in the dead queue"
    );
    broker.close().await;
    app.teardown().await;
}
