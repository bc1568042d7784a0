//! Webhook secrets encrypted at rest (issue #13): what the database holds, the sealing of
//! rows from before encryption, key rotation, and rows that do not open.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_shared::secret_box::{
    test_keys, webhook_secret_context, OpenError, SecretBox, TEST_KEY_LIST,
};
use smsgate_tests::app::{test_amqp_url, test_database_server_url, with_database, TestApp};
use smsgate_tests::webhook_receiver::WebhookReceiver;

const DEADLINE: Duration = Duration::from_secs(30);
/// A second key for rotations: 32 bytes of 0x42.
const NEW_KEY: &str = "k2:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

/// Registers `url`; returns (id, the secret the answer showed).
async fn register(app: &TestApp, url: &str) -> (i64, String) {
    let (status, body) = app
        .request(
            Method::POST,
            "/api/webhooks",
            Some(&app.token),
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    (body["id"].as_i64().unwrap(), secret)
}

/// The `secret` column as it is.
async fn stored_secret(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("SELECT secret FROM webhooks WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn set_stored_secret(app: &TestApp, id: i64, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhooks SET secret = $2 WHERE id = $1")
        .bind(id)
        .bind(value)
        .execute(&app.db)
        .await
        .map(|_| ())
}

/// Queues a test event; its delivery id.
async fn send_test_event(app: &TestApp, webhook: i64) -> i64 {
    let (status, body) = app
        .post(&format!("/api/webhooks/{webhook}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["delivery_id"].as_i64().unwrap()
}

/// Waits until the delivery has `status`; the delivery as the API shows it.
async fn wait_for(app: &TestApp, webhook: i64, delivery: i64, status: &str) -> Value {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, body) = app
            .get(&format!("/api/webhooks/{webhook}/deliveries"))
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let found = body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == delivery)
            .cloned();
        if let Some(d) = found.filter(|d| d["status"] == status) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "delivery {delivery} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_webhook_secret_is_stored_encrypted_and_deliveries_are_signed_with_it() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (id, secret) = register(&app, &receiver.url()).await;

    let stored = stored_secret(&app, id).await;
    assert!(!stored.contains(&secret), "plain text in the row: {stored}");
    assert!(!stored.contains(secret.trim_start_matches("whsec_")));
    assert!(stored.starts_with("v1:test:"), "{stored}");
    let keys = test_keys();
    assert_eq!(
        keys.open(&stored, &webhook_secret_context(id)).unwrap(),
        secret
    );

    let delivery = send_test_event(&app, id).await;
    let received = receiver
        .wait_until("the test event", DEADLINE, |r| !r.is_empty())
        .await;
    assert_eq!(received[0].delivery, delivery);
    assert!(received[0].signed_with(&secret));
    assert!(
        !received[0].signed_with(&stored),
        "signed with the ciphertext"
    );

    // A rotated secret is sealed too.
    let (status, rotated) = app
        .post(&format!("/api/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    let stored = stored_secret(&app, id).await;
    assert!(!stored.contains(new_secret), "{stored}");
    assert_eq!(
        keys.open(&stored, &webhook_secret_context(id)).unwrap(),
        new_secret
    );
    app.teardown().await;
}

#[tokio::test]
async fn plain_text_secrets_from_before_encryption_are_sealed_when_the_api_starts() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (id, _) = register(&app, &receiver.url()).await;

    // The migration refuses new plain-text values…
    let refused = set_stored_secret(&app, id, "whsec_written_in_plain_text")
        .await
        .unwrap_err();
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("23514"),
        "{refused}"
    );
    // …but rows from before it are plain text: put one back the way the migration found it
    // (the constraint added NOT VALID after the row was written).
    let constraint: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'webhooks_secret_sealed'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(constraint.ends_with("NOT VALID"), "{constraint}");
    sqlx::query("ALTER TABLE webhooks DROP CONSTRAINT webhooks_secret_sealed")
        .execute(&app.db)
        .await
        .unwrap();
    let legacy = "whsec_legacy_0123456789abcdef";
    set_stored_secret(&app, id, legacy).await.unwrap();
    sqlx::query(&format!(
        "ALTER TABLE webhooks ADD CONSTRAINT webhooks_secret_sealed {constraint}"
    ))
    .execute(&app.db)
    .await
    .unwrap();

    // An API starting on this database seals it.
    let mut settings = smsgate_api::settings::Settings::for_tests(
        &with_database(&test_database_server_url(), &app.db_name),
        &test_amqp_url(),
        &app.prefix,
    );
    // The topology this test's first API declared.
    settings.core.queue.retry_schedule = app.options.retry_schedule.clone();
    let second_api = smsgate_api::start(settings).await.unwrap();
    let stored = stored_secret(&app, id).await;
    assert!(stored.starts_with("v1:test:"), "{stored}");
    assert_eq!(
        test_keys()
            .open(&stored, &webhook_secret_context(id))
            .unwrap(),
        legacy
    );
    // Again, it changes nothing.
    let again = smsgate_core::webhooks::reseal_secrets(&app.db, &test_keys())
        .await
        .unwrap();
    assert_eq!((again.encrypted, again.rotated), (0, 0));
    assert!(again.unreadable.is_empty());
    assert_eq!(stored_secret(&app, id).await, stored);

    // Receivers keep the secret they have.
    send_test_event(&app, id).await;
    let received = receiver
        .wait_until("the test event", DEADLINE, |r| !r.is_empty())
        .await;
    assert!(received[0].signed_with(legacy));
    second_api.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn after_a_key_rotation_old_secrets_open_and_are_resealed_under_the_new_key() {
    let mut app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let (id, secret) = register(&app, &receiver.url()).await;
    let old_only = test_keys();
    let rotated = SecretBox::parse(&format!("{NEW_KEY},{TEST_KEY_LIST}")).unwrap();
    let sealed_old = stored_secret(&app, id).await;
    assert_eq!(
        rotated
            .open(&sealed_old, &webhook_secret_context(id))
            .unwrap(),
        secret,
        "the old key still opens it while it is listed"
    );

    // What `smsgate-api rotate-webhook-secrets` (and every start) does.
    let done = smsgate_core::webhooks::reseal_secrets(&app.db, &rotated)
        .await
        .unwrap();
    assert_eq!((done.encrypted, done.rotated), (0, 1));
    assert!(done.unreadable.is_empty());
    let sealed_new = stored_secret(&app, id).await;
    assert!(sealed_new.starts_with("v1:k2:"), "{sealed_new}");
    let context = webhook_secret_context(id);
    assert_eq!(rotated.open(&sealed_new, &context).unwrap(), secret);
    assert_eq!(
        SecretBox::parse(NEW_KEY)
            .unwrap()
            .open(&sealed_new, &context)
            .unwrap(),
        secret,
        "the old key can be dropped now"
    );
    assert_eq!(
        old_only.open(&sealed_new, &context),
        Err(OpenError::UnknownKey("k2".into()))
    );

    // A dispatcher left with only the old key (the runbook's order not followed) fails the
    // delivery with a clear error, sends nothing unsigned, and keeps running.
    let delivery = send_test_event(&app, id).await;
    let failed = wait_for(&app, id, delivery, "failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("could not be decrypted"),
        "{failed}"
    );
    assert!(receiver.received().is_empty());

    // Given the new key, it delivers, signed with the unchanged secret.
    app.kill_dispatcher().await;
    let mut settings = app.dispatcher_settings();
    settings.webhooks.secret_keys = rotated.clone();
    app.start_dispatcher_with(settings).await;
    let (status, body) = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let received = receiver
        .wait_until("the retried test event", DEADLINE, |r| !r.is_empty())
        .await;
    assert_eq!(received[0].delivery, delivery);
    assert!(received[0].signed_with(&secret));
    wait_for(&app, id, delivery, "delivered").await;
    app.teardown().await;
}

#[tokio::test]
async fn a_secret_moved_to_another_webhook_does_not_open_and_the_others_still_deliver() {
    let app = TestApp::spawn().await;
    let good_receiver = WebhookReceiver::spawn().await;
    let bad_receiver = WebhookReceiver::spawn().await;
    let (good, good_secret) = register(&app, &good_receiver.url()).await;
    let (bad, _) = register(&app, &bad_receiver.url()).await;
    // Someone with write access to the table copies a secret they know the receiver of
    // into another row: it is sealed to its own webhook's id, so it does not open there.
    let copied = stored_secret(&app, good).await;
    set_stored_secret(&app, bad, &copied).await.unwrap();

    let bad_delivery = send_test_event(&app, bad).await;
    let good_delivery = send_test_event(&app, good).await;
    let failed = wait_for(&app, bad, bad_delivery, "failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("could not be decrypted"),
        "{failed}"
    );
    assert!(bad_receiver.received().is_empty());
    wait_for(&app, good, good_delivery, "delivered").await;
    let received = good_receiver.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].signed_with(&good_secret));

    // Re-sealing reports the row and leaves it as it is.
    let done = smsgate_core::webhooks::reseal_secrets(&app.db, &test_keys())
        .await
        .unwrap();
    assert!(
        done.unreadable.is_empty(),
        "under the current key: not read"
    );
    let rotated = SecretBox::parse(&format!("{NEW_KEY},{TEST_KEY_LIST}")).unwrap();
    let done = smsgate_core::webhooks::reseal_secrets(&app.db, &rotated)
        .await
        .unwrap();
    assert_eq!(done.rotated, 1, "the good row moves to the new key");
    assert_eq!(
        done.unreadable,
        vec![(bad, OpenError::Tampered("test".into()))]
    );
    assert_eq!(stored_secret(&app, bad).await, copied);
    app.teardown().await;
}
