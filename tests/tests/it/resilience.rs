//! Outages and crashes: nothing accepted is ever lost.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use smsgate_mock_hkt::MockConfig;
use smsgate_tests::app::{numbers, test_amqp_url, test_database_server_url, TestApp, TestOptions};
use smsgate_tests::proxy::CuttableProxy;

fn amqp_addr() -> SocketAddr {
    let url = test_amqp_url();
    let host_port = url
        .split('@')
        .nth(1)
        .unwrap_or("127.0.0.1:5672")
        .split('/')
        .next()
        .unwrap();
    tokio_lookup(host_port)
}

fn postgres_addr() -> SocketAddr {
    let url = test_database_server_url();
    let after_at = url.rsplit('@').next().unwrap();
    tokio_lookup(after_at.split('/').next().unwrap())
}

fn tokio_lookup(host_port: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    with_port.to_socket_addrs().unwrap().next().unwrap()
}

#[tokio::test]
async fn a_bulk_accepted_while_rabbitmq_is_down_is_sent_once_it_is_back() {
    let proxy = CuttableProxy::start(amqp_addr()).await.unwrap();
    let options = TestOptions {
        api_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr())),
        ..TestOptions::default()
    };
    let app = TestApp::spawn_with(options).await;
    proxy.cut();

    let recipients = numbers(50, 8100);
    let id = app.send_bulk(&recipients, "outage").await;
    let in_outbox: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM message_outbox WHERE message_id = $1)")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        in_outbox,
        "nothing could be confirmed while the broker is away"
    );
    assert_eq!(
        app.recipient_rows(id).await.len(),
        50,
        "every recipient is durable before the 202"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.mock.stats().total, 0);
    proxy.restore();

    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(message["success_count"], 50);
    app.teardown().await;
}

#[tokio::test]
async fn a_dispatcher_killed_mid_bulk_and_restarted_leaves_every_recipient_terminal() {
    let mut app = TestApp::spawn().await;
    app.mock.set_config(MockConfig {
        latency_ms: 30,
        ..MockConfig::default()
    });
    let recipients = numbers(600, 8200);
    let id = app.send_bulk(&recipients, "crash test").await;

    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.mock.stats().total < 60 {
        assert!(
            tokio::time::Instant::now() < until,
            "dispatch never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill_dispatcher().await;
    let message = app.message(id).await;
    assert_ne!(
        message["status"], "sent",
        "the kill must land mid-bulk for this test to mean anything"
    );

    app.start_dispatcher().await;
    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(message["success_count"], 600);
    let rows = app.recipient_rows(id).await;
    assert_eq!(rows.len(), 600);
    assert!(
        rows.iter().all(|(_, status, _)| status == "sent"),
        "no recipient lost"
    );
    // At-least-once: every number reached the gateway; a few may have twice (the crash window).
    let received = app.mock.received();
    for number in &recipients {
        let digits = format!("852{number}");
        assert!(
            received.iter().any(|r| r.mrt == digits),
            "{digits} never reached the gateway"
        );
    }
    app.teardown().await;
}

#[tokio::test]
async fn postgresql_unavailable_answers_503_with_retry_after_quickly() {
    let proxy = CuttableProxy::start(postgres_addr()).await.unwrap();
    let app = TestApp::spawn().await;
    // A second API for the same database, reaching PostgreSQL through the proxy.
    let mut settings = smsgate_api::settings::Settings::for_tests(
        &smsgate_tests::app::with_database(
            &format!("postgres://postgres@{}/postgres", proxy.addr()),
            &app.db_name,
        ),
        &test_amqp_url(),
        &app.prefix,
    );
    settings.db_acquire_timeout = Duration::from_secs(1);
    settings.core.queue.retry_schedule = app.options.retry_schedule.clone();
    let api = smsgate_api::start(settings).await.unwrap();
    proxy.cut();

    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/sms", api.addr))
        .bearer_auth(&app.token)
        .json(&json!({"recipient": "12345678", "content": "db down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(10), "must not hang");

    let ready = reqwest::get(format!("http://{}/health/ready", api.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    proxy.restore();
    api.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_graceful_dispatcher_stop_records_every_send_it_made() {
    let mut app = TestApp::spawn().await;
    app.mock.set_config(MockConfig {
        latency_ms: 30,
        ..MockConfig::default()
    });
    let recipients = numbers(300, 8300);
    let id = app.send_bulk(&recipients, "sigterm").await;

    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.mock.stats().total < 40 {
        assert!(
            tokio::time::Instant::now() < until,
            "dispatch never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.dispatcher.take().unwrap().stop().await;

    // Every send that reached the gateway before the stop is committed: none is in limbo.
    let answered = app.mock.stats().total;
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM recipients WHERE message_id = $1 AND status = 'sent'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        sent as u64, answered,
        "in-flight sends finished and were flushed before exit"
    );
    assert!(
        sent < 300,
        "the stop must land mid-bulk for this test to mean anything"
    );

    app.start_dispatcher().await;
    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["success_count"], 300);
    assert_eq!(
        app.mock.stats().total,
        300,
        "a graceful stop causes no duplicate SMS"
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_hung_postgresql_gets_a_503_within_the_request_timeout_not_a_hang() {
    let proxy = CuttableProxy::start(postgres_addr()).await.unwrap();
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..TestOptions::default()
    })
    .await;
    let mut settings = smsgate_api::settings::Settings::for_tests(
        &smsgate_tests::app::with_database(
            &format!("postgres://postgres@{}/postgres", proxy.addr()),
            &app.db_name,
        ),
        &test_amqp_url(),
        &app.prefix,
    );
    settings.core.queue.retry_schedule = app.options.retry_schedule.clone();
    settings.request_timeout = Duration::from_secs(2);
    let api = smsgate_api::start(settings).await.unwrap();
    // Connections stay open but nothing comes back: queries hang rather than fail.
    proxy.stall();

    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/sms", api.addr))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered in {:?}",
        started.elapsed()
    );

    proxy.restore();
    drop(proxy);
    api.shutdown_token().cancel();
    app.teardown().await;
}

#[tokio::test]
async fn deleting_a_message_takes_it_out_of_the_outbox() {
    let app = TestApp::spawn_without_dispatcher().await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (user_id, content, encoding, segments, total_count)
         SELECT id, 'to be deleted', 'gsm7', 1, 1 FROM users LIMIT 1 RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    // Due in an hour, so the releaser leaves it alone while the test runs.
    sqlx::query(
        "INSERT INTO message_outbox (message_id, user_id, due_at, unreleased)
         SELECT $1, id, now() + interval '1 hour', 1 FROM users LIMIT 1",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();

    sqlx::query("DELETE FROM messages WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM message_outbox WHERE message_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    app.teardown().await;
}
