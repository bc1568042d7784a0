//! `Idempotency-Key` on `POST /api/sms` and `POST /api/sms/send-bulk`: a repeated request
//! gets the first one's message and nothing is sent twice.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use smsgate_tests::app::{assert_error, numbers, TestApp};
use smsgate_tests::modem_sim::EdgeApp as _;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_repeated_single_send_with_its_key_gets_the_first_message_and_is_sent_once() {
    let app = TestApp::spawn().await;
    let body = json!({"recipient": "2345 6789", "content": "once only"});
    let (status, first, replayed) = app
        .post_with_key(&app.token, "/api/sms", "order-1001", body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert!(!replayed);
    let id = first["data"]["id"].as_i64().unwrap();
    app.wait_until_final(id, DEADLINE).await;

    let (status, again, replayed) = app
        .post_with_key(&app.token, "/api/sms", "order-1001", body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert!(replayed, "a replay says so in Idempotent-Replayed");
    assert_eq!(again["data"], first["data"], "the first answer, replayed");
    assert_eq!(again["message_id"], id);

    assert_eq!(app.message_count().await, 1);
    assert_eq!(app.mock.received_for("85223456789").len(), 1);
    app.teardown().await;
}

#[tokio::test]
async fn a_repeated_bulk_with_its_key_gets_the_first_message_and_every_recipient_is_sent_once() {
    let app = TestApp::spawn().await;
    let body = json!({"recipients": numbers(50, 3141), "content": "bulk once"});
    let (status, first, _) = app
        .post_with_key(&app.token, "/api/sms/send-bulk", "campaign-7", body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let id = first["data"]["id"].as_i64().unwrap();
    assert_eq!(first["data"]["total"], 50);

    let (status, again, replayed) = app
        .post_with_key(&app.token, "/api/sms/send-bulk", "campaign-7", body)
        .await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{again}");
    assert_eq!(again["data"], first["data"]);

    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["success_count"], 50);
    assert_eq!(app.message_count().await, 1);
    assert_eq!(app.mock.stats().total, 50, "no recipient posted twice");
    app.teardown().await;
}

#[tokio::test]
async fn a_key_reused_for_a_different_request_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, _, _) = app
        .post_with_key(
            &app.token,
            "/api/sms",
            "k-1",
            json!({"recipient": "2345 6789", "content": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    for (path, body) in [
        (
            "/api/sms",
            json!({"recipient": "2345 6789", "content": "other text"}),
        ),
        (
            "/api/sms",
            json!({"recipient": "3456 7890", "content": "first"}),
        ),
        // The same text and number to the other endpoint is another request too.
        (
            "/api/sms/send-bulk",
            json!({"recipients": ["2345 6789"], "content": "first"}),
        ),
    ] {
        let (status, body, replayed) = app.post_with_key(&app.token, path, "k-1", body).await;
        assert_error(
            (status, &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
        );
        assert!(!replayed);
    }
    assert_eq!(app.message_count().await, 1);
    app.teardown().await;
}

#[tokio::test]
async fn the_same_number_written_two_ways_is_the_same_request() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, first, _) = app
        .post_with_key(
            &app.token,
            "/api/sms",
            "k-2",
            json!({"recipient": "2345 6789", "content": "hi"}),
        )
        .await;
    let (status, again, replayed) = app
        .post_with_key(
            &app.token,
            "/api/sms",
            "k-2",
            json!({"recipient": "+85223456789", "message": "hi"}),
        )
        .await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    app.teardown().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_store_one_message_and_all_get_it() {
    let app = TestApp::spawn().await;
    let body = json!({"recipients": numbers(200, 2718), "content": "raced"});
    let answers =
        futures::future::join_all((0..8).map(|_| {
            app.post_with_key(&app.token, "/api/sms/send-bulk", "race-key", body.clone())
        }))
        .await;
    let mut ids = Vec::new();
    let mut replays = 0;
    for (status, body, replayed) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["data"]["id"].as_i64().unwrap());
        replays += usize::from(*replayed);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every request got the same message: {ids:?}");
    assert_eq!(replays, 7, "one stored, seven replayed");
    assert_eq!(app.message_count().await, 1);
    let recipients: i64 = sqlx::query_scalar("SELECT count(*) FROM recipients")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(recipients, 200, "the losers' recipients were rolled back");
    app.wait_until_final(ids[0], DEADLINE).await;
    assert_eq!(app.mock.stats().total, 200);
    app.teardown().await;
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, other) = app.create_user("keyholder", "Keyholder#1").await;
    let body = json!({"recipient": "2345 6789", "content": "mine"});
    let (_, admins, _) = app
        .post_with_key(&app.token, "/api/sms", "shared-name", body.clone())
        .await;
    let (status, others, replayed) = app
        .post_with_key(&other, "/api/sms", "shared-name", body)
        .await;
    assert_eq!(
        (status, replayed),
        (StatusCode::ACCEPTED, false),
        "{others}"
    );
    assert_ne!(admins["data"]["id"], others["data"]["id"]);
    assert_eq!(app.message_count().await, 2);
    app.teardown().await;
}

#[tokio::test]
async fn malformed_keys_are_refused_before_anything_is_stored() {
    let app = TestApp::spawn_without_dispatcher().await;
    let body = json!({"recipient": "2345 6789", "content": "x"});
    for key in ["", &"k".repeat(256), "has space"] {
        let (status, answer, _) = app
            .post_with_key(&app.token, "/api/sms", key, body.clone())
            .await;
        let message = assert_error(
            (status, &answer),
            StatusCode::BAD_REQUEST,
            "INVALID_IDEMPOTENCY_KEY",
        );
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn an_expired_key_sends_again_and_the_sweeper_deletes_it() {
    let app = TestApp::spawn_without_dispatcher().await;
    let body = json!({"recipient": "2345 6789", "content": "daily reminder"});
    let (_, first, _) = app
        .post_with_key(&app.token, "/api/sms", "daily", body.clone())
        .await;
    // Older than the 24 h the test stack honours keys for.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();

    let (status, again, replayed) = app
        .post_with_key(&app.token, "/api/sms", "daily", body)
        .await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false), "{again}");
    assert_ne!(again["data"]["id"], first["data"]["id"]);

    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let swept = smsgate_core::idempotency::sweep(&app.db, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(swept, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_sim_routed_send_replays_with_its_sim_number() {
    let app = TestApp::spawn_without_dispatcher().await;
    let sim_id = app.create_sim("6111 0009").await;
    let body = json!({"recipient": "2345 6789", "message": "via sim", "sim_card_id": sim_id});
    let (status, first, _) = app
        .post_with_key(&app.token, "/api/sms", "sim-1", body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["sender_sim"], "+85261110009");
    let (_, again, replayed) = app
        .post_with_key(&app.token, "/api/sms", "sim-1", body)
        .await;
    assert!(replayed);
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["sender_sim"], "+85261110009");
    assert_eq!(app.message_count().await, 1);
    app.teardown().await;
}

/// The race, made deterministic: the key's row is held by a transaction that has not
/// committed when the request arrives, so the request stores its message, blocks on the
/// key, and must roll its message back and answer with the winner's once that commits.
#[tokio::test]
async fn a_request_that_loses_the_race_for_its_key_answers_with_the_winner() {
    use smsgate_core::sms::service::NewSend;
    use smsgate_shared::domain::{MessageBody, PhoneNumber};

    let app = TestApp::spawn_without_dispatcher().await;
    let winner = app.send_sms("2345 6789", "raced").await;
    let fingerprint = NewSend {
        recipients: vec![PhoneNumber::parse("2345 6789").unwrap()],
        body: MessageBody::parse("raced", 10).unwrap(),
        options: Default::default(),
    }
    .fingerprint("sms.send", "hkt");
    let mut winner_tx = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, message_id) VALUES (1, 'slow', $1, $2)",
    )
    .bind(fingerprint.as_bytes().as_slice())
    .bind(winner)
    .execute(&mut *winner_tx)
    .await
    .unwrap();

    let (status, answer, replayed) = send_while_the_key_is_held(
        &app,
        "slow",
        json!({"recipient": "2345 6789", "content": "raced"}),
        winner_tx,
        Rival::Commits,
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{answer}");
    assert_eq!(answer["data"]["id"], winner);
    assert_eq!(
        app.message_count().await,
        1,
        "the loser's message was rolled back"
    );
    app.teardown().await;
}

/// The other side of the race: the first request's transaction rolls back (its send
/// failed), so the waiting request takes the key and sends.
#[tokio::test]
async fn a_request_whose_rival_rolls_back_takes_the_key_and_sends() {
    let app = TestApp::spawn_without_dispatcher().await;
    let placeholder = app.send_sms("2345 6789", "placeholder").await;
    let mut rival = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, message_id) VALUES (1, 'k', '\\x00', $1)",
    )
    .bind(placeholder)
    .execute(&mut *rival)
    .await
    .unwrap();

    let (status, answer, replayed) = send_while_the_key_is_held(
        &app,
        "k",
        json!({"recipient": "3456 7890", "content": "mine"}),
        rival,
        Rival::RollsBack,
    )
    .await;
    assert_eq!(
        (status, replayed),
        (StatusCode::ACCEPTED, false),
        "{answer}"
    );
    assert_ne!(answer["data"]["id"], placeholder);
    assert_eq!(app.message_count().await, 2);
    app.teardown().await;
}

/// How the transaction holding the key ends.
enum Rival {
    Commits,
    RollsBack,
}

/// Sends `body` with `key` while `rival` holds the key's row uncommitted, checks that the
/// request waits for it (it stores its message, then blocks on the key), ends `rival` and
/// returns the request's answer.
async fn send_while_the_key_is_held(
    app: &TestApp,
    key: &str,
    body: serde_json::Value,
    rival: sqlx::Transaction<'_, sqlx::Postgres>,
    ends: Rival,
) -> (StatusCode, serde_json::Value, bool) {
    let racing = app.post_with_key(&app.token, "/api/sms", key, body);
    tokio::pin!(racing);
    tokio::select! {
        answer = &mut racing => panic!("answered before the key's holder ended: {answer:?}"),
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    match ends {
        Rival::Commits => rival.commit().await.unwrap(),
        Rival::RollsBack => rival.rollback().await.unwrap(),
    }
    racing.await
}
