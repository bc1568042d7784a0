//! Traffic control (issue #14): strict bodies, priorities, fair share, scheduling, cancel,
//! expiry, ETA and the queue's status, against the real broker, database and dispatchers.
//! Orders and shares are asserted, never speeds: `make bench` measures those.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, numbers, TestApp, TestOptions};
use smsgate_tests::webhook_receiver::WebhookReceiver;

const DEADLINE: Duration = Duration::from_secs(30);

fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

async fn send(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.request(Method::POST, path, Some(token), Some(body))
        .await
}

/// Sends and asserts 202; returns the message id.
async fn accepted(app: &TestApp, token: &str, path: &str, body: Value) -> i64 {
    let (status, answer) = send(app, token, path, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["data"]["id"].as_i64().unwrap()
}

async fn message_as(app: &TestApp, token: &str, id: i64) -> Value {
    let (status, body) = app
        .request(Method::GET, &format!("/api/sms/{id}"), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

async fn cancel(app: &TestApp, token: &str, id: i64) -> (StatusCode, Value) {
    send(app, token, &format!("/api/sms/{id}/cancel"), json!({})).await
}

/// Gateway requests the mock received for texts starting with `content`.
fn gateway_requests(app: &TestApp, content: &str) -> usize {
    app.mock
        .received()
        .iter()
        .filter(|r| r.msg_utf8.starts_with(content))
        .count()
}

async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn recipient_statuses(app: &TestApp, id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM recipients WHERE message_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

fn limited(rate: f64) -> TestOptions {
    TestOptions {
        hkt_rate_limit: Some(rate),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_unknown_field_is_refused_by_name_and_nothing_is_stored() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "12345678", "content": "later", "sendat": in_secs(60)}),
        )
        .await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_FIELD");
    assert!(message.contains("sendat"), "{message}");
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["12345678"], "content": "x", "priorty": "high"}),
        )
        .await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_FIELD");
    assert!(message.contains("priorty"), "{message}");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn bad_schedules_validities_and_priorities_are_400_naming_the_field() {
    let app = TestApp::spawn_without_dispatcher().await;
    let cases = [
        (
            json!({"send_at": in_secs(-5)}),
            "INVALID_SEND_AT",
            "send_at",
        ),
        (
            json!({"send_at": in_secs(36 * 86_400)}),
            "INVALID_SEND_AT",
            "35 days",
        ),
        (
            json!({"send_at": "next tuesday"}),
            "INVALID_SEND_AT",
            "RFC 3339",
        ),
        (json!({"priority": "urgent"}), "INVALID_PRIORITY", "urgent"),
        (json!({"valid_for": 0}), "INVALID_VALIDITY", "valid_for"),
        (
            json!({"valid_for": 60, "valid_until": in_secs(120)}),
            "INVALID_VALIDITY",
            "not both",
        ),
        (
            json!({"send_at": in_secs(600), "valid_until": in_secs(300)}),
            "INVALID_VALIDITY",
            "after send_at",
        ),
    ];
    for (extra, code, needle) in cases {
        let mut body = json!({"recipient": "12345678", "content": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = app.post("/api/sms", body.clone()).await;
        let message = assert_error((status, &answer), StatusCode::BAD_REQUEST, code);
        assert!(message.contains(needle), "{body} → {message}");
    }
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_scheduled_bulk_waits_for_its_time_then_goes_out_whole() {
    let app = TestApp::spawn().await;
    let send_at = Utc::now() + chrono::Duration::seconds(2);
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(50, 3100), "content": "scheduled hello",
               "send_at": send_at.to_rfc3339()}),
    )
    .await;
    let message = app.message(id).await;
    assert_eq!(message["status"], "scheduled");
    let stored: DateTime<Utc> = message["send_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (stored - send_at).num_milliseconds().abs() < 1_000,
        "{stored} vs {send_at}"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        gateway_requests(&app, "scheduled hello"),
        0,
        "sent before its time"
    );

    let done = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(done["status"], "sent");
    assert_eq!(done["success_count"], 50);
    let first = app
        .mock
        .received()
        .iter()
        .filter(|r| r.msg_utf8 == "scheduled hello")
        .map(|r| r.received_at)
        .min()
        .unwrap();
    assert!(
        first >= send_at,
        "first request {first} before send_at {send_at}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_schedule_survives_a_restart_of_the_api_and_the_dispatcher() {
    let mut app = TestApp::spawn().await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms",
        json!({"recipient": "23456789", "content": "durable schedule", "send_at": in_secs(3)}),
    )
    .await;
    app.kill_dispatcher().await;
    app.restart_api().await;
    assert_eq!(app.message(id).await["status"], "scheduled");
    app.start_dispatcher().await;
    let done = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(done["status"], "sent");
    assert_eq!(gateway_requests(&app, "durable schedule"), 1);
    app.teardown().await;
}

#[tokio::test]
async fn cancel_stops_a_running_bulk_and_nothing_more_reaches_the_gateway() {
    let app = TestApp::spawn_with(limited(20.0)).await;
    let id = app.send_bulk(&numbers(400, 3200), "cancel me").await;
    wait_for("the bulk to be sending", || async {
        gateway_requests(&app, "cancel me") >= 10
    })
    .await;

    let (status, body) = cancel(&app, &app.token, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at_answer = gateway_requests(&app, "cancel me");
    assert_eq!(body["status"], "cancelled");
    assert!(body["cancelled_now"].as_i64().unwrap() > 300, "{body}");

    // Requests already past their last look may still land; nothing released after.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = gateway_requests(&app, "cancel me");
    assert!(
        after <= at_answer + 2,
        "{at_answer} at the answer, {after} later"
    );
    wait_for("in-flight results to be recorded", || async {
        let m = app.message(id).await;
        m["success_count"].as_i64().unwrap() + m["cancelled_count"].as_i64().unwrap() == 400
    })
    .await;
    let message = app.message(id).await;
    assert_eq!(message["status"], "cancelled");
    assert_eq!(
        message["success_count"].as_u64().unwrap() as usize,
        after,
        "{message}"
    );
    let statuses = recipient_statuses(&app, id).await;
    assert!(
        statuses.iter().all(|s| s == "sent" || s == "cancelled"),
        "{statuses:?}"
    );

    let (status, again) = cancel(&app, &app.token, id).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a second cancel is harmless: {again}"
    );
    assert_eq!(again["cancelled_now"], 0);
    assert_eq!(again["success_count"], message["success_count"]);
    app.teardown().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_cancels_and_a_finished_message_is_409() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", "alice-pass-1").await;
    let (_, bob) = app.create_user("bob", "bob-pass-12").await;
    let later = accepted(
        &app,
        &alice,
        "/api/sms",
        json!({"recipient": "34567890", "content": "alice later", "send_at": in_secs(600)}),
    )
    .await;
    let (status, body) = cancel(&app, &bob, later).await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(message_as(&app, &alice, later).await["status"], "scheduled");

    let (status, body) = cancel(&app, &app.token, later).await;
    assert_eq!(status, StatusCode::OK, "an admin may cancel: {body}");
    assert_eq!(body["cancelled_now"], 1);
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'message.cancel' AND target = $1",
    )
    .bind(format!("message:{later}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        audit, 1,
        "an admin's cancel of another's message is audited"
    );

    let done = app.send_sms_as(&alice, "45678901", "alice now").await;
    wait_for("alice's send to finish", || async {
        message_as(&app, &alice, done).await["status"] == "sent"
    })
    .await;
    let (status, body) = cancel(&app, &alice, done).await;
    assert_error((status, &body), StatusCode::CONFLICT, "MESSAGE_FINISHED");
    assert_eq!(message_as(&app, &alice, done).await["status"], "sent");
    assert_eq!(gateway_requests(&app, "alice later"), 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_job_whose_validity_ran_out_in_the_queue_expires_unsent() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(5, 3300), "content": "stale otp", "valid_for": 1}),
    )
    .await;
    assert!(app.message(id).await["valid_until"].is_string());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.start_dispatcher().await;
    let done = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(done["status"], "expired", "{done}");
    assert_eq!(done["expired_count"], 5);
    assert_eq!(gateway_requests(&app, "stale otp"), 0);
    assert!(recipient_statuses(&app, id)
        .await
        .iter()
        .all(|s| s == "expired"));
    let scrape = app.dispatcher_metrics().await;
    assert_eq!(
        scrape.sum("smsgate_dispatch_jobs_expired_total", &[]),
        Some(5.0)
    );
    app.teardown().await;
}

#[tokio::test]
async fn recipients_not_released_by_their_deadline_expire_and_the_rest_are_sent() {
    let app = TestApp::spawn_with(limited(10.0)).await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(100, 3400), "content": "short lived", "valid_for": 2}),
    )
    .await;
    let done = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(done["status"], "partial", "{done}");
    let sent = done["success_count"].as_i64().unwrap();
    let expired = done["expired_count"].as_i64().unwrap();
    assert_eq!(sent + expired, 100, "{done}");
    assert!(sent > 0 && expired > 50, "{done}");
    assert_eq!(gateway_requests(&app, "short lived") as i64, sent);
    app.teardown().await;
}

#[tokio::test]
async fn a_users_default_validity_applies_when_a_send_names_none() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let (user_id, token) = app.create_user("otp", "otp-pass-123").await;
    sqlx::query("UPDATE users SET default_valid_for_secs = 1 WHERE id = $1")
        .bind(user_id)
        .execute(&app.db)
        .await
        .unwrap();
    let id = app
        .send_sms_as(&token, "56789012", "default validity")
        .await;
    let message = message_as(&app, &token, id).await;
    assert!(message["valid_until"].is_string(), "{message}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.start_dispatcher().await;
    wait_for("the recipient to expire", || async {
        recipient_statuses(&app, id).await == ["expired"]
    })
    .await;
    assert_eq!(gateway_requests(&app, "default validity"), 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_high_priority_send_overtakes_a_running_campaign() {
    let app = TestApp::spawn_with(limited(20.0)).await;
    let (_, b) = app.create_user("otp-b", "otp-pass-b12").await;
    let campaign = app.send_bulk(&numbers(400, 3500), "campaign").await;
    wait_for("the campaign to be sending", || async {
        gateway_requests(&app, "campaign") >= 20
    })
    .await;
    let otp = accepted(
        &app,
        &b,
        "/api/sms",
        json!({"recipient": "67890123", "content": "otp 123456", "priority": "high"}),
    )
    .await;
    let done = async {
        loop {
            let m = message_as(&app, &b, otp).await;
            if m["status"] == "sent" {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let otp_message = tokio::time::timeout(DEADLINE, done)
        .await
        .expect("the OTP is sent");
    assert_eq!(otp_message["priority"], "high");
    let campaign_now = app.message(campaign).await;
    assert!(
        campaign_now["pending_count"].as_i64().unwrap() > 300,
        "the OTP waited for the campaign: {campaign_now}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn two_users_share_the_gateway_about_equally_across_two_dispatchers() {
    let app = TestApp::spawn_with(limited(40.0)).await;
    let second = smsgate_dispatcher::start(app.dispatcher_settings())
        .await
        .unwrap();
    let (_, a) = app.create_user("share-a", "share-pass-a1").await;
    let (_, b) = app.create_user("share-b", "share-pass-b1").await;
    accepted(
        &app,
        &a,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(400, 3600), "content": "share a"}),
    )
    .await;
    accepted(
        &app,
        &b,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(400, 3700), "content": "share b"}),
    )
    .await;
    // Skip the first window (released before B's bulk existed), then compare.
    wait_for("a first window", || async {
        app.mock.received().len() >= 40
    })
    .await;
    let (a0, b0) = (
        gateway_requests(&app, "share a"),
        gateway_requests(&app, "share b"),
    );
    wait_for("200 more sends", || async {
        app.mock.received().len() >= a0 + b0 + 200
    })
    .await;
    let a1 = gateway_requests(&app, "share a") - a0;
    let b1 = gateway_requests(&app, "share b") - b0;
    let share = a1 as f64 / (a1 + b1) as f64;
    assert!((0.4..=0.6).contains(&share), "A got {a1}, B got {b1}");
    second.kill().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_small_send_is_not_queued_behind_another_users_large_one() {
    let app = TestApp::spawn_with(limited(20.0)).await;
    let (_, c) = app.create_user("small-c", "small-pass-c1").await;
    let campaign = app.send_bulk(&numbers(400, 3800), "big one").await;
    wait_for("the campaign to be sending", || async {
        gateway_requests(&app, "big one") >= 20
    })
    .await;
    let small = accepted(
        &app,
        &c,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(10, 3900), "content": "small one"}),
    )
    .await;
    wait_for("the small send to finish", || async {
        message_as(&app, &c, small).await["status"] == "sent"
    })
    .await;
    let campaign_now = app.message(campaign).await;
    assert!(
        campaign_now["pending_count"].as_i64().unwrap() > 300,
        "{campaign_now}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn eta_and_queue_status_describe_the_waiting_work() {
    // No dispatcher: everything stays waiting at 2 requests a second.
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        hkt_rate_limit: Some(2.0),
        ..Default::default()
    })
    .await;
    let id = app.send_bulk(&numbers(100, 4000), "eta").await;
    let before = Utc::now();
    let message = app.message(id).await;
    let eta: DateTime<Utc> = message["eta"].as_str().expect("an eta").parse().unwrap();
    let secs = (eta - before).num_seconds();
    assert!(
        (45..=55).contains(&secs),
        "100 recipients at 2/s: eta in {secs} s"
    );
    let (_, later) = app
        .post(
            "/api/sms",
            json!({"recipient": "78901234", "content": "later", "send_at": in_secs(600)}),
        )
        .await;
    let later = app.message(later["data"]["id"].as_i64().unwrap()).await;
    let send_at: DateTime<Utc> = later["send_at"].as_str().unwrap().parse().unwrap();
    let eta: DateTime<Utc> = later["eta"]
        .as_str()
        .expect("a scheduled eta")
        .parse()
        .unwrap();
    assert!(
        eta > send_at && eta - send_at <= chrono::Duration::seconds(60),
        "{later}"
    );

    let (status, queue) = app.get("/api/queue/status").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["queue_depth"], 100);
    assert_eq!(queue["msgs_per_sec"]["configured"], 2.0);
    assert!(queue["msgs_per_sec"]["measured"].is_number());
    assert_eq!(queue["pending_messages"], 1);
    assert_eq!(queue["scheduled_messages"], 1);
    assert!(queue["oldest_pending_at"].is_string());
    assert_eq!(
        queue["backlog"],
        json!({"high": 0, "normal": 100, "low": 0})
    );
    assert_eq!(queue["mine"]["recipients"], 100);
    assert!(queue["mine"]["eta"].is_string());

    let (_, other) = app.create_user("idle", "idle-pass-12").await;
    let (_, theirs) = app
        .request(Method::GET, "/api/queue/status", Some(&other), None)
        .await;
    assert_eq!(theirs["queue_depth"], 100);
    assert_eq!(theirs["mine"]["recipients"], 0);
    assert!(theirs["mine"]["eta"].is_null());
    app.teardown().await;
}

#[tokio::test]
async fn webhooks_report_a_cancel_with_its_counters() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (status, body) = app
        .post(
            "/api/webhooks",
            json!({"url": receiver.url(), "description": "t"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(3, 4100), "content": "never", "send_at": in_secs(600)}),
    )
    .await;
    let (status, _) = cancel(&app, &app.token, id).await;
    assert_eq!(status, StatusCode::OK);
    let received = receiver
        .wait_until("the cancel's event", DEADLINE, |r| {
            r.iter().any(|d| d.json["data"]["status"] == "cancelled")
        })
        .await;
    let event = received
        .iter()
        .find(|d| d.json["data"]["status"] == "cancelled")
        .unwrap();
    assert_eq!(event.json["data"]["message_id"], id);
    assert_eq!(event.json["data"]["cancelled"], 3);
    assert_eq!(event.json["data"]["sent"], 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_cancel_racing_the_release_of_a_scheduled_bulk_sends_each_recipient_at_most_once() {
    let app = TestApp::spawn().await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(2_000, 4200), "content": "race", "send_at": in_secs(1)}),
    )
    .await;
    wait_for("the release to start", || async {
        gateway_requests(&app, "race") > 0
    })
    .await;
    let (status, body) = cancel(&app, &app.token, id).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::CONFLICT,
        "{status} {body}"
    );
    let at_answer = gateway_requests(&app, "race");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after = gateway_requests(&app, "race");
    if status == StatusCode::OK {
        assert!(after <= at_answer + 32 * 4, "{at_answer} then {after}");
    }
    wait_for("every recipient to be final", || async {
        recipient_statuses(&app, id)
            .await
            .iter()
            .all(|s| s != "pending")
    })
    .await;
    let sent: Vec<String> = app
        .mock
        .received()
        .iter()
        .filter(|r| r.msg_utf8 == "race")
        .map(|r| r.mrt.clone())
        .collect();
    let distinct: HashSet<&String> = sent.iter().collect();
    assert_eq!(distinct.len(), sent.len(), "a recipient was sent twice");
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM recipients WHERE message_id = $1 AND status = 'sent'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        recorded as usize,
        sent.len(),
        "every gateway request is recorded sent"
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_dispatcher_killed_while_a_scheduled_bulk_is_released_loses_nothing() {
    let mut app = TestApp::spawn().await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(3_000, 4300), "content": "killed", "send_at": in_secs(1)}),
    )
    .await;
    wait_for("the release to start", || async {
        gateway_requests(&app, "killed") > 0
    })
    .await;
    app.kill_dispatcher().await;
    app.start_dispatcher().await;
    let done = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["success_count"], 3_000);
    let distinct: HashSet<String> = app
        .mock
        .received()
        .iter()
        .filter(|r| r.msg_utf8 == "killed")
        .map(|r| r.mrt.clone())
        .collect();
    assert_eq!(distinct.len(), 3_000);
    app.teardown().await;
}

#[tokio::test]
async fn a_scheduled_release_is_counted_in_the_metrics() {
    let app = TestApp::spawn().await;
    let id = accepted(
        &app,
        &app.token,
        "/api/sms",
        json!({"recipient": "89012345", "content": "counted", "send_at": in_secs(1),
               "priority": "low"}),
    )
    .await;
    app.wait_until_final(id, DEADLINE).await;
    let scrape = app.api_metrics().await;
    assert_eq!(
        scrape.sum("smsgate_scheduled_messages_released_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        scrape.sum("smsgate_released_jobs_total", &[("priority", "low")]),
        Some(1.0)
    );
    assert_eq!(scrape.sum("smsgate_releaser_leading", &[]), Some(1.0));
    app.teardown().await;
}

/// Sets a user's limits through the admin API.
async fn set_limits(app: &TestApp, user_id: i64, limits: Value) {
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{user_id}"),
            Some(&app.token),
            Some(limits),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn messages_of(app: &TestApp, user_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_daily_limit_refuses_a_send_whole_on_every_send_path() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("daily", "daily-pass-1").await;
    set_limits(&app, id, json!({"daily_recipient_limit": 5})).await;
    let bulk = |n: u32| json!({"recipients": numbers(3, 4400 + n), "content": "d"});
    accepted(&app, &token, "/api/sms/send-bulk", bulk(0)).await;
    let (status, body) = send(&app, &token, "/api/sms/send-bulk", bulk(1)).await;
    assert_error(
        (status, &body),
        StatusCode::TOO_MANY_REQUESTS,
        "QUOTA_EXCEEDED",
    );
    // The single-send fast path, which batches senders without quotas, charges too.
    for n in ["11112222", "11113333"] {
        app.send_sms_as(&token, n, "d").await;
    }
    let response = app
        .http
        .post(app.url("/api/sms"))
        .bearer_auth(&token)
        .json(&json!({"recipient": "11114444", "content": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(
        messages_of(&app, id).await,
        3,
        "a refused send stores nothing"
    );
    app.teardown().await;
}

#[tokio::test]
async fn requests_per_second_and_the_high_allowance_answer_429_and_422() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("rate", "rate-pass-12").await;
    set_limits(
        &app,
        id,
        json!({"requests_per_second": 1, "high_priority_per_minute": 2}),
    )
    .await;
    let high = |to: &str| json!({"recipient": to, "content": "h", "priority": "high"});
    accepted(&app, &token, "/api/sms", high("22221111")).await;
    let (status, body) = send(&app, &token, "/api/sms", high("22222222")).await;
    assert_error(
        (status, &body),
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    accepted(&app, &token, "/api/sms", high("22223333")).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = send(&app, &token, "/api/sms", high("22224444")).await;
    assert_error(
        (status, &body),
        StatusCode::TOO_MANY_REQUESTS,
        "PRIORITY_ALLOWANCE_EXCEEDED",
    );
    let (status, body) = send(
        &app,
        &token,
        "/api/sms/send-bulk",
        json!({"recipients": numbers(3, 4500), "content": "h", "priority": "high"}),
    )
    .await;
    assert_error(
        (status, &body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "PRIORITY_ALLOWANCE_TOO_SMALL",
    );
    assert_eq!(messages_of(&app, id).await, 2);
    app.teardown().await;
}

#[tokio::test]
async fn a_daily_limit_is_exact_across_two_api_instances_racing() {
    let app = TestApp::spawn_without_dispatcher().await;
    let second = smsgate_api::start(app.api_settings()).await.unwrap();
    let (id, token) = app.create_user("racer", "racer-pass-1").await;
    set_limits(&app, id, json!({"daily_recipient_limit": 20})).await;
    let urls = [
        app.url("/api/sms"),
        format!("http://{}/api/sms", second.addr),
    ];
    let sends = (0..40).map(|i| {
        let http = app.http.clone();
        let url = urls[i % 2].clone();
        let token = token.clone();
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"recipient": format!("3333{i:04}"), "content": "race"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted, refused), (20, 20), "{statuses:?}");
    assert_eq!(messages_of(&app, id).await, 20);
    second.stop().await;
    app.teardown().await;
}
