//! The edge gateway's Socket.IO `sms_status_update` events, carried over with auth.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use smsgate_tests::app::TestApp;
use smsgate_tests::socketio::{Handshake, PollingSocket};

const EVENT: &str = "sms_status_update";

/// True once an update for `phone` with `status` was seen.
fn reached(phone: &'static str, status: &'static str) -> impl Fn(&[Value]) -> bool {
    move |seen: &[Value]| {
        seen.iter()
            .any(|e| e["receiver_number"] == phone && e["status"] == status)
    }
}

#[tokio::test]
async fn sockets_receive_status_updates_of_their_own_messages_and_admins_all() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", "a long enough password").await;
    let (_, bob) = app.create_user("bob", "a long enough password").await;
    // Three ways of presenting a credential: connect auth, handshake query, header.
    let alice_socket = PollingSocket::connect(
        &app.base_url,
        Handshake {
            auth: Some(json!({"api_key": alice})),
            ..Default::default()
        },
    )
    .await
    .expect("alice connects");
    let admin_socket = PollingSocket::connect(
        &app.base_url,
        Handshake {
            query: format!("token={}", app.token),
            ..Default::default()
        },
    )
    .await
    .expect("the admin connects");
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_str(&bob).unwrap());
    let bob_socket = PollingSocket::connect(
        &app.base_url,
        Handshake {
            headers,
            ..Default::default()
        },
    )
    .await
    .expect("bob connects");

    let message_id = app
        .send_sms_as(&alice, "9123 4567", "to alice's customer")
        .await;

    let seen = alice_socket
        .events_until(
            EVENT,
            Duration::from_secs(20),
            reached("+85291234567", "sent"),
        )
        .await;
    let update = seen
        .iter()
        .find(|e| e["status"] == "sent")
        .unwrap_or_else(|| panic!("alice saw no `sent` update: {seen:?}"));
    assert_eq!(update["message_id"], message_id);
    assert_eq!(update["sender_number"], Value::Null, "HKT route");
    assert_eq!(update["attempts"], 1);
    assert_eq!(update["message_status"], "sent");
    assert_eq!(update["total"], 1);
    assert_eq!(update["sent"], 1);
    assert!(update["timestamp"].as_str().unwrap().ends_with('Z'));

    let seen = admin_socket
        .events_until(
            EVENT,
            Duration::from_secs(20),
            reached("+85291234567", "sent"),
        )
        .await;
    assert!(reached("+85291234567", "sent")(&seen), "admin: {seen:?}");

    // Bob's own send comes through; alice's never reached him before it.
    app.send_sms_as(&bob, "9123 4568", "bob's").await;
    let seen = bob_socket
        .events_until(
            EVENT,
            Duration::from_secs(20),
            reached("+85291234568", "sent"),
        )
        .await;
    assert!(reached("+85291234568", "sent")(&seen), "bob: {seen:?}");
    assert!(
        seen.iter().all(|e| e["receiver_number"] != "+85291234567"),
        "bob saw alice's message: {seen:?}"
    );

    // Disabling a user reaches their open socket too (credentials are checked again
    // every 10 s), not only their next request.
    sqlx::query("UPDATE users SET is_active = false WHERE username = 'alice'")
        .execute(&app.db)
        .await
        .unwrap();
    assert!(
        alice_socket
            .disconnected_within(Duration::from_secs(25))
            .await,
        "a disabled user's socket stayed connected"
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_socket_without_valid_credentials_is_refused_with_the_reason() {
    let app = TestApp::spawn_without_dispatcher().await;
    let refused = PollingSocket::connect(&app.base_url, Handshake::default())
        .await
        .err()
        .expect("no credentials is refused");
    assert!(refused.contains("authentication required"), "{refused}");
    let refused = PollingSocket::connect(
        &app.base_url,
        Handshake {
            auth: Some(json!({"token": "sgk_not_a_real_key"})),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("a bad key is refused");
    assert_eq!(refused, "invalid or expired token");
    app.teardown().await;
}
