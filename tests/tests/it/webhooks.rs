//! Delivery webhooks: registration, signed `message.status` events for every committed
//! change, retries, refusals of internal targets, and crash safety.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, numbers, TestApp, TestOptions};
use smsgate_tests::webhook_receiver::{Behaviour, Received, WebhookReceiver};

const DEADLINE: Duration = Duration::from_secs(30);

/// Registers `url` for `token`'s user; returns (id, secret).
async fn register(app: &TestApp, token: &str, url: &str) -> (i64, String) {
    let (status, body) = app
        .request(
            Method::POST,
            "/api/webhooks",
            Some(token),
            Some(json!({"url": url, "description": "test receiver"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_i64().unwrap(), secret)
}

/// Each recipient's last reported status, from every `message.status` event received.
fn final_states(received: &[Received], message_id: i64) -> BTreeMap<i64, (String, String)> {
    let mut states = BTreeMap::new();
    for r in received.iter().filter(|r| r.event == "message.status") {
        let data = &r.json["data"];
        if data["message_id"] != message_id {
            continue;
        }
        for recipient in data["recipients"].as_array().unwrap() {
            states.insert(
                recipient["id"].as_i64().unwrap(),
                (
                    recipient["phone"].as_str().unwrap().to_owned(),
                    recipient["status"].as_str().unwrap().to_owned(),
                ),
            );
        }
    }
    states
}

async fn deliveries(app: &TestApp, webhook: i64, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/webhooks/{webhook}/deliveries{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

async fn wait_for_delivery(app: &TestApp, webhook: i64, status: &str) -> Value {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = deliveries(app, webhook, &format!("?status={status}")).await;
        if let Some(first) = found.into_iter().next() {
            return first;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no {status} delivery for webhook {webhook}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_webhook_gets_signed_status_events_until_every_recipient_is_final() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (_, secret) = register(&app, &app.token, &receiver.url()).await;
    let mut recipients = numbers(30, 4242);
    recipients.push("5555 0000".into());
    let id = app.send_bulk(&recipients, "webhook hello").await;
    app.wait_until_final(id, DEADLINE).await;

    let received = receiver
        .wait_until("every recipient reported sent", DEADLINE, |r| {
            let states = final_states(r, id);
            states.len() == 31 && states.values().all(|(_, s)| s == "sent")
        })
        .await;
    for r in &received {
        assert!(
            r.signed_with(&secret),
            "bad signature on delivery {}",
            r.delivery
        );
        assert!(!r.signed_with("whsec_wrong"));
        assert_eq!(r.json["type"], "message.status");
        assert_eq!(r.json["id"], r.delivery, "the body names its delivery");
        assert!(r.json["created_at"].is_string());
    }
    let states = final_states(&received, id);
    assert!(states.values().any(|(phone, _)| phone == "+85255550000"));
    let last = received
        .iter()
        .max_by_key(|r| r.json["data"]["sent"].as_i64())
        .unwrap();
    assert_eq!(last.json["data"]["status"], "sent");
    assert_eq!(last.json["data"]["total"], 31);
    assert_eq!(last.json["data"]["sent"], 31);
    app.teardown().await;
}

#[tokio::test]
async fn a_failed_send_is_reported_with_its_error() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    register(&app, &app.token, &receiver.url()).await;
    let id = app.send_sms("2345 6789", "this will error at HKT").await;
    let received = receiver
        .wait_until("the failure", DEADLINE, |r| {
            final_states(r, id).values().any(|(_, s)| s == "failed")
        })
        .await;
    let event = &received[0].json["data"];
    assert_eq!(event["status"], "failed");
    assert_eq!(event["failed"], 1);
    assert!(event["recipients"][0]["error"]
        .as_str()
        .unwrap()
        .contains("401"));
    app.teardown().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_answers() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    receiver.set(Behaviour {
        fail_next: 2,
        ..Behaviour::default()
    });
    let (webhook, _) = register(&app, &app.token, &receiver.url()).await;
    let id = app.send_sms("2345 6789", "retry me").await;
    receiver
        .wait_until("the event, third time lucky", DEADLINE, |r| {
            !final_states(r, id).is_empty()
        })
        .await;
    assert_eq!(receiver.refused(), 2);
    let delivered = wait_for_delivery(&app, webhook, "delivered").await;
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["last_status_code"], 204);
    assert_eq!(delivered["message_id"], id);
    let metrics = app.dispatcher_metrics().await;
    let attempts = |outcome| metrics.sum("smsgate_webhook_attempts_total", &[("outcome", outcome)]);
    assert_eq!(
        (attempts("retry"), attempts("delivered"), attempts("failed")),
        (Some(2.0), Some(1.0), Some(0.0))
    );
    app.teardown().await;
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_ends_failed_and_can_be_requeued() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    receiver.set(Behaviour::always(StatusCode::INTERNAL_SERVER_ERROR));
    let (webhook, _) = register(&app, &app.token, &receiver.url()).await;
    let id = app.send_sms("2345 6789", "nobody listens").await;
    let failed = wait_for_delivery(&app, webhook, "failed").await;
    // Once plus once per step of the test schedule (200 ms, 400 ms).
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["last_status_code"], 500);
    assert_eq!(failed["last_error"], "HTTP 500");
    assert!(failed["completed_at"].is_string());

    receiver.set(Behaviour::default());
    let delivery = failed["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/webhooks/{webhook}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    receiver
        .wait_until("the requeued delivery", DEADLINE, |r| {
            !final_states(r, id).is_empty()
        })
        .await;
    // Only a failed delivery can be requeued.
    let (status, body) = app
        .post(
            &format!("/api/webhooks/{webhook}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    app.teardown().await;
}

#[tokio::test]
async fn webhooks_get_only_their_owners_events_and_only_while_active() {
    let app = TestApp::spawn().await;
    let (_, other) = app.create_user("webhookowner", "Webhook#Owner1").await;
    let admins = WebhookReceiver::spawn().await;
    let others = WebhookReceiver::spawn().await;
    let (admin_hook, _) = register(&app, &app.token, &admins.url()).await;
    register(&app, &other, &others.url()).await;

    let mine = app.send_sms("2345 6789", "admin's").await;
    let theirs = app.send_sms_as(&other, "3456 7890", "other's").await;
    admins
        .wait_until("the admin's event", DEADLINE, |r| {
            !final_states(r, mine).is_empty()
        })
        .await;
    others
        .wait_until("the other's event", DEADLINE, |r| {
            !final_states(r, theirs).is_empty()
        })
        .await;
    assert!(final_states(&admins.received(), theirs).is_empty());
    assert!(final_states(&others.received(), mine).is_empty());

    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/webhooks/{admin_hook}"),
            Some(&app.token),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(
        (status, &body["is_active"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    let later = app.send_sms("2345 6789", "while disabled").await;
    app.wait_until_final(later, DEADLINE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(final_states(&admins.received(), later).is_empty());
    assert!(deliveries(&app, admin_hook, "?status=pending")
        .await
        .is_empty());
    app.teardown().await;
}

#[tokio::test]
async fn webhooks_are_managed_by_their_owner_only() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, other) = app.create_user("someoneelse", "Someone#Else1").await;
    let (id, first_secret) = register(&app, &app.token, "http://127.0.0.1:9/hook").await;

    let (status, list) = app.get("/api/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["webhooks"][0]["id"], id);
    assert!(
        list["webhooks"][0].get("secret").is_none(),
        "secrets are shown once"
    );

    for (method, path) in [
        (Method::GET, format!("/api/webhooks/{id}")),
        (Method::PUT, format!("/api/webhooks/{id}")),
        (Method::DELETE, format!("/api/webhooks/{id}")),
        (Method::POST, format!("/api/webhooks/{id}/rotate-secret")),
        (Method::POST, format!("/api/webhooks/{id}/test")),
        (Method::GET, format!("/api/webhooks/{id}/deliveries")),
    ] {
        let (status, body) = app
            .request(method.clone(), &path, Some(&other), Some(json!({})))
            .await;
        assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    }

    let (status, rotated) = app
        .post(&format!("/api/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["secret"], first_secret);

    let (status, body) = app
        .request(
            Method::DELETE,
            &format!("/api/webhooks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!((status, &body["deleted"]), (StatusCode::OK, &json!(true)));
    let (status, _) = app.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'webhook.%' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        audited,
        ["webhook.create", "webhook.rotate_secret", "webhook.delete"]
    );
    app.teardown().await;
}

#[tokio::test]
async fn registration_refuses_bad_and_internal_urls_and_caps_webhooks_per_user() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        allow_internal_webhooks: false,
        ..TestOptions::default()
    })
    .await;
    for url in [
        "not a url",
        "ftp://hooks.example.com/x",
        "https://user:secret@hooks.example.com/x",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
    ] {
        let (status, body) = app.post("/api/webhooks", json!({"url": url})).await;
        let message = assert_error(
            (status, &body),
            StatusCode::BAD_REQUEST,
            "INVALID_WEBHOOK_URL",
        );
        assert!(message.contains("url"), "{message}");
    }
    let (status, body) = app.post("/api/webhooks", json!({})).await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");

    for n in 0..10 {
        let (status, body) = app
            .post(
                "/api/webhooks",
                json!({"url": format!("https://hooks.example.com/{n}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app
        .post(
            "/api/webhooks",
            json!({"url": "https://hooks.example.com/11"}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::CONFLICT,
        "WEBHOOK_LIMIT_REACHED",
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_dispatcher_refuses_to_call_an_internal_address_it_was_not_allowed() {
    // The API lets a loopback URL in (as in development); this dispatcher does not.
    let mut app = TestApp::spawn_without_dispatcher().await;
    let receiver = WebhookReceiver::spawn().await;
    let (webhook, _) = register(&app, &app.token, &receiver.url()).await;
    let mut settings = app.dispatcher_settings();
    settings.webhooks.allow_internal_targets = false;
    app.start_dispatcher_with(settings).await;

    app.send_sms("2345 6789", "to nowhere").await;
    let failed = wait_for_delivery(&app, webhook, "failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("internal address"),
        "{failed}"
    );
    assert!(receiver.received().is_empty() && receiver.refused() == 0);
    app.teardown().await;
}

#[tokio::test]
async fn the_test_event_reaches_the_endpoint_signed() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (webhook, secret) = register(&app, &app.token, &receiver.url()).await;
    let (status, body) = app
        .post(&format!("/api/webhooks/{webhook}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let received = receiver
        .wait_until("the test event", DEADLINE, |r| !r.is_empty())
        .await;
    assert_eq!(received[0].event, "webhook.test");
    assert_eq!(received[0].delivery, body["delivery_id"].as_i64().unwrap());
    assert_eq!(received[0].json["data"]["webhook_id"], webhook);
    assert!(received[0].signed_with(&secret));
    app.teardown().await;
}

/// A dispatcher that dies mid-POST records nothing; the lease runs out and another
/// dispatcher delivers it again (at-least-once: the receiver may see it twice, by id).
#[tokio::test]
async fn a_delivery_cut_off_by_a_dispatcher_crash_is_made_again() {
    let mut app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    receiver.set(Behaviour {
        delay: Duration::from_millis(1500),
        ..Behaviour::default()
    });
    let (webhook, _) = register(&app, &app.token, &receiver.url()).await;
    let id = app.send_sms("2345 6789", "crash mid delivery").await;
    receiver
        .wait_until("the first attempt", DEADLINE, |r| !r.is_empty())
        .await;
    app.kill_dispatcher().await;
    receiver.set(Behaviour::default());
    app.start_dispatcher().await;

    let delivered = wait_for_delivery(&app, webhook, "delivered").await;
    assert_eq!(delivered["attempts"], 2, "the cut-off attempt counts");
    let received = receiver.received();
    let copies = received
        .iter()
        .filter(|r| r.delivery == delivered["id"])
        .count();
    assert_eq!(copies, 2, "delivered twice under one id");
    assert!(!final_states(&received, id).is_empty());
    app.teardown().await;
}

#[tokio::test]
async fn a_name_that_resolves_to_an_internal_address_fails_at_once_without_showing_it() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let receiver = WebhookReceiver::spawn().await;
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    let (webhook, _) = register(&app, &app.token, &by_name).await;
    let mut settings = app.dispatcher_settings();
    settings.webhooks.allow_internal_targets = false;
    app.start_dispatcher_with(settings).await;

    app.send_sms("2345 6789", "to a name").await;
    let failed = wait_for_delivery(&app, webhook, "failed").await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("localhost is or resolves to an internal address"),
        "{error}"
    );
    assert!(
        !error.contains("127.0.0.1"),
        "the address is not shown: {error}"
    );
    assert_eq!(failed["attempts"], 1, "refusals are not retried");
    assert!(receiver.received().is_empty() && receiver.refused() == 0);
    app.teardown().await;
}

#[tokio::test]
async fn gone_ends_a_delivery_at_once_and_a_disabled_webhooks_queue_ends_failed() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let receiver = WebhookReceiver::spawn().await;
    receiver.set(Behaviour::always(StatusCode::GONE));
    let (gone, _) = register(&app, &app.token, &receiver.url()).await;
    let (disabled, _) = register(&app, &app.token, &receiver.url()).await;
    for webhook in [gone, disabled] {
        let (status, _) = app
            .post(&format!("/api/webhooks/{webhook}/test"), json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, _) = app
        .request(
            Method::PUT,
            &format!("/api/webhooks/{disabled}"),
            Some(&app.token),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.start_dispatcher().await;

    let failed = wait_for_delivery(&app, gone, "failed").await;
    assert_eq!(
        (&failed["attempts"], &failed["last_status_code"]),
        (&json!(1), &json!(410))
    );
    let failed = wait_for_delivery(&app, disabled, "failed").await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("disabled"),
        "{failed}"
    );
    assert_eq!(
        receiver.refused(),
        1,
        "only the gone endpoint was called, once"
    );
    app.teardown().await;
}

/// Two claims, the first attempt's lease run out in between: the first attempt's late
/// record must not overwrite the second's.
#[tokio::test]
async fn a_late_record_of_an_attempt_whose_lease_ran_out_changes_nothing() {
    use smsgate_dispatcher::webhooks::repo::{claim_due, record_attempt, Recorded};

    let app = TestApp::spawn_without_dispatcher().await;
    let (webhook, _) = register(&app, &app.token, "http://127.0.0.1:9/hook").await;
    let (_, queued) = app
        .post(&format!("/api/webhooks/{webhook}/test"), json!({}))
        .await;
    let delivery = queued["delivery_id"].as_i64().unwrap();

    let first = claim_due(&app.db, 10, 0.0, 8).await.unwrap();
    assert_eq!((first.len(), first[0].attempts), (1, 1));
    let second = claim_due(&app.db, 10, 60.0, 8).await.unwrap();
    assert_eq!(
        (second.len(), second[0].attempts),
        (1, 2),
        "the lease ran out"
    );

    let stale = record_attempt(
        &app.db,
        delivery,
        1,
        &Recorded::Failed,
        Some(500),
        Some("late"),
    )
    .await
    .unwrap();
    assert!(!stale, "fenced off");
    let current = record_attempt(&app.db, delivery, 2, &Recorded::Delivered, Some(204), None)
        .await
        .unwrap();
    assert!(current);
    let listed = wait_for_delivery(&app, webhook, "delivered").await;
    assert_eq!(listed["last_status_code"], 204);
    app.teardown().await;
}

#[tokio::test]
async fn one_endpoint_gets_at_most_its_cap_in_flight_and_the_others_still_flow() {
    use smsgate_dispatcher::webhooks::repo::claim_due;

    let app = TestApp::spawn_without_dispatcher().await;
    let (slow, _) = register(&app, &app.token, "http://127.0.0.1:9/slow").await;
    let (quick, _) = register(&app, &app.token, "http://127.0.0.1:9/quick").await;
    for _ in 0..5 {
        app.post(&format!("/api/webhooks/{slow}/test"), json!({}))
            .await;
    }
    app.post(&format!("/api/webhooks/{quick}/test"), json!({}))
        .await;

    let count = |claimed: &[smsgate_dispatcher::webhooks::repo::Due], id: i64| {
        claimed.iter().filter(|d| d.webhook_id == id).count()
    };
    let claimed = claim_due(&app.db, 16, 60.0, 2).await.unwrap();
    assert_eq!((count(&claimed, slow), count(&claimed, quick)), (2, 1));
    // The slow endpoint's two are still in flight: nothing more for it.
    let again = claim_due(&app.db, 16, 60.0, 2).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    app.teardown().await;
}

#[tokio::test]
async fn a_recipient_waiting_for_a_retry_is_reported_only_with_its_verdict() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (webhook, _) = register(&app, &app.token, &receiver.url()).await;
    app.mock.set_config(smsgate_mock_hkt::MockConfig {
        burst_5xx: 1,
        ..Default::default()
    });
    let id = app.send_sms("2345 6789", "second time lucky").await;
    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    receiver
        .wait_until("the verdict", DEADLINE, |r| !final_states(r, id).is_empty())
        .await;
    // The 503 was committed as a retry in a batch of its own, and made no event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.received();
    assert_eq!(
        events.len(),
        1,
        "{:?}",
        events.iter().map(|e| &e.json).collect::<Vec<_>>()
    );
    assert_eq!(events[0].json["data"]["recipients"][0]["attempts"], 2);
    assert_eq!(deliveries(&app, webhook, "").await.len(), 1);
    app.teardown().await;
}
