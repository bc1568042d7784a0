//! Bad input and access control: each gets its status and machine code.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, TestApp};

/// No stack trace or internal detail reaches the client.
#[track_caller]
fn assert_no_internals(body: &Value) {
    let text = body.to_string();
    for leak in [
        "sqlx",
        "panicked",
        "backtrace",
        "src/",
        ".rs:",
        "axum::",
        "serde_json::",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
}

/// A POST with a raw body and an optional Content-Type, as the admin.
async fn post_raw(
    app: &TestApp,
    path: &str,
    body: impl Into<reqwest::Body>,
    content_type: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(app.url(path))
        .bearer_auth(&app.token)
        .timeout(Duration::from_secs(60))
        .body(body);
    if let Some(content_type) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    let response = req.send().await.expect("request sent");
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `n` distinct valid local numbers, 10000000, 10000001, …
fn distinct_numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{:08}", 10_000_000 + i)).collect()
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = post_raw(
        &app,
        "/api/sms",
        r#"{"recipient": "12345678", "content": "#,
        Some("application/json"),
    )
    .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_JSON");
    assert_no_internals(&body);
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_missing_recipient_is_a_validation_error_naming_the_field() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app.post("/api/sms", json!({"content": "hello"})).await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(message.contains("recipient"), "{message}");
    assert_no_internals(&body);
    app.teardown().await;
}

#[tokio::test]
async fn a_recipient_of_the_wrong_type_is_a_validation_error() {
    let app = TestApp::spawn_without_dispatcher().await;
    for recipient in [
        json!(5),
        json!({"phone": "12345678"}),
        json!(["12345678"]),
        Value::Null,
    ] {
        let (status, body) = app
            .post(
                "/api/sms",
                json!({"recipient": recipient, "content": "hello"}),
            )
            .await;
        let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert!(message.contains("recipient"), "{recipient}: {message}");
    }
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn missing_content_is_a_validation_error_naming_the_field() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app.post("/api/sms", json!({"recipient": "12345678"})).await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(message.contains("content"), "{message}");
    app.teardown().await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_400_invalid_content_type() {
    let app = TestApp::spawn_without_dispatcher().await;
    let json_text = r#"{"recipient": "12345678", "content": "hello"}"#;
    let (status, body) = post_raw(&app, "/api/sms", json_text, None).await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_CONTENT_TYPE",
    );
    let (status, body) = post_raw(&app, "/api/sms", json_text, Some("text/plain")).await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_CONTENT_TYPE",
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn every_malformed_number_is_400_invalid_phone_number_and_nothing_is_stored() {
    let app = TestApp::spawn_without_dispatcher().await;
    for recipient in ["1234-5678", "123456789", "12 3456", "", "abcdefgh", "+"] {
        let (status, body) = app
            .post(
                "/api/sms",
                json!({"recipient": recipient, "content": "hello"}),
            )
            .await;
        let message = assert_error(
            (status, &body),
            StatusCode::BAD_REQUEST,
            "INVALID_PHONE_NUMBER",
        );
        assert!(message.contains("recipient"), "{recipient:?}: {message}");
    }
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn every_accepted_number_form_is_answered_in_e164() {
    let app = TestApp::spawn_without_dispatcher().await;
    let forms = [
        ("1234 5678", "+85212345678"),
        ("12345678", "+85212345678"),
        // International input is checked against the plan (+852 1… is no HK number).
        ("+85291234567", "+85291234567"),
        ("+447911123456", "+447911123456"),
    ];
    for (given, e164) in forms {
        let (status, body) = app
            .post("/api/sms", json!({"recipient": given, "content": "hello"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{given:?}: {body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["data"]["recipient"], e164, "{given:?}");
        assert_eq!(body["data"]["status"], "pending");
    }
    assert_eq!(app.message_count().await, 4);
    app.teardown().await;
}

#[tokio::test]
async fn message_is_accepted_as_an_alias_of_content() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "12345678", "message": "via alias"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["content"], "via alias");
    let stored: String = sqlx::query_scalar("SELECT content FROM messages")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, "via alias");
    app.teardown().await;
}

#[tokio::test]
async fn blank_content_is_400_empty_content() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "12345678", "content": "   "}),
        )
        .await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "EMPTY_CONTENT");
    assert_eq!(message, "content must not be empty");
    let (status, body) = app
        .post("/api/sms", json!({"recipient": "12345678", "content": ""}))
        .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "EMPTY_CONTENT");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn content_of_eleven_segments_is_400_content_too_long() {
    let app = TestApp::spawn_without_dispatcher().await;
    // Ten full multipart segments of 153 septets, plus one character.
    let content = "a".repeat(10 * 153 + 1);
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "12345678", "content": content}),
        )
        .await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "CONTENT_TOO_LONG");
    assert!(
        message.contains("11 segments") && message.contains("10"),
        "{message}"
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn content_of_exactly_ten_segments_is_accepted() {
    let app = TestApp::spawn_without_dispatcher().await;
    let content = "a".repeat(10 * 153);
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "12345678", "content": content}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    assert_eq!(app.message(id).await["segments"], 10);
    app.teardown().await;
}

#[tokio::test]
async fn international_numbers_outside_their_numbering_plan_are_refused_with_the_reason() {
    let app = TestApp::spawn_without_dispatcher().await;
    // +852 and seven digits: the right length for E.164, but no Hong Kong number.
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "+8529043628", "content": "hello"}),
        )
        .await;
    let message = assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_PHONE_NUMBER",
    );
    assert!(
        message.contains("recipient") && message.contains("+852"),
        "{message}"
    );
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["+85291234567", "+8529043628", "+99912345678", "1234 5678"], "content": "hi"}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_RECIPIENTS",
    );
    let details = body["error"]["details"].as_array().unwrap();
    let refused: Vec<i64> = details
        .iter()
        .map(|d| d["index"].as_i64().unwrap())
        .collect();
    assert_eq!(refused, [1, 2], "{body}");
    assert_eq!(app.message_count().await, 0);
    // A SIM card's number is checked the same way.
    let (status, body) = app
        .post("/api/sim-cards", json!({"number": "+8529043628"}))
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_PHONE_NUMBER",
    );
    // Valid international numbers and the old panel's local rule still go through.
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["+85291234567", "+447911123456", "1234 5678"], "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_lists_every_invalid_number_and_stores_nothing() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["12345678", "1234-5678", "123"], "content": "hi"}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_RECIPIENTS",
    );
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("details missing: {body}"));
    assert_eq!(details.len(), 2, "{body}");
    assert_eq!(details[0]["index"], 1);
    assert_eq!(details[0]["value"], "1234-5678");
    assert_eq!(details[1]["index"], 2);
    assert_eq!(details[1]["value"], "123");
    for entry in details {
        assert!(
            !entry["reason"].as_str().unwrap_or("").is_empty(),
            "{entry}"
        );
    }
    assert!(
        details[1]["reason"].as_str().unwrap().contains("3 digits"),
        "{body}"
    );
    assert_eq!(app.message_count().await, 0);
    let recipients: i64 = sqlx::query_scalar("SELECT count(*) FROM recipients")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(recipients, 0);
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_with_no_recipients_is_400_empty_recipients() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": [], "content": "hi"}),
        )
        .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "EMPTY_RECIPIENTS");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_collapses_duplicate_spellings_of_one_number() {
    let app = TestApp::spawn_without_dispatcher().await;
    let recipients = json!(["91234567", "9123 4567", "+85291234567", "87654321"]);
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": recipients, "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 2);
    let id = body["data"]["id"].as_i64().unwrap();
    let phones: Vec<String> = app
        .recipient_rows(id)
        .await
        .into_iter()
        .map(|(phone, _, _)| phone)
        .collect();
    assert_eq!(phones, vec!["+85291234567", "+85287654321"]);
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_lists_a_non_string_entry_as_invalid() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["12345678", true, "87654321"], "content": "hi"}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_RECIPIENTS",
    );
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("details missing: {body}"));
    assert_eq!(details.len(), 1, "{body}");
    assert_eq!(details[0]["index"], 1);
    assert_eq!(details[0]["value"], "true");
    assert!(
        details[0]["reason"].as_str().unwrap().contains("string"),
        "{body}"
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_over_one_hundred_thousand_recipients_is_400_too_many_recipients() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": distinct_numbers(100_001), "content": "hi"}),
        )
        .await;
    let message = assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "TOO_MANY_RECIPIENTS",
    );
    assert!(
        message.contains("100001") && message.contains("100000"),
        "{message}"
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn bulk_send_of_exactly_one_hundred_thousand_recipients_is_accepted() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": distinct_numbers(100_000), "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 100_000);
    let id = body["data"]["id"].as_i64().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM recipients WHERE message_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 100_000);
    app.teardown().await;
}

#[tokio::test]
async fn a_body_over_sixteen_mebibytes_is_413_payload_too_large_in_our_format() {
    let app = TestApp::spawn_without_dispatcher().await;
    let content = "a".repeat(17 * 1024 * 1024);
    let body_text = json!({"recipient": "12345678", "content": content}).to_string();
    let (status, body) = post_raw(&app, "/api/sms", body_text, Some("application/json")).await;
    assert_error(
        (status, &body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    assert_no_internals(&body);
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found_in_our_format() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app.get("/api/nope").await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_no_internals(&body);
    // Unauthenticated too: the route does not exist whoever asks.
    let (status, body) = app
        .request(Method::POST, "/api/nope", None, Some(json!({})))
        .await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    app.teardown().await;
}

#[tokio::test]
async fn a_message_id_that_is_not_a_number_or_does_not_exist_is_404() {
    let app = TestApp::spawn_without_dispatcher().await;
    for path in [
        "/api/sms/abc",
        "/api/sms/999999",
        "/api/sms/0",
        "/api/sms/-1",
        "/api/sms/abc/recipients",
        "/api/sms/999999/recipients",
    ] {
        let (status, body) = app.get(path).await;
        assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
        assert_no_internals(&body);
    }
    app.teardown().await;
}

#[tokio::test]
async fn another_users_message_is_404_not_403_and_not_listed() {
    let app = TestApp::spawn_without_dispatcher().await;
    let id = app.send_sms("12345678", "admin only").await;
    let (_, token_b) = app.create_user("userb", "userb-password").await;

    for path in [
        format!("/api/sms/{id}"),
        format!("/api/sms/{id}/recipients"),
    ] {
        let (status, body) = app.request(Method::GET, &path, Some(&token_b), None).await;
        let message = assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
        assert!(!message.contains("admin only"), "{message}");
    }
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&token_b), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["total"], 0);
    assert_eq!(body["data"]["messages"], json!([]));
    // The owner still sees it.
    assert_eq!(app.message(id).await["id"], id);
    app.teardown().await;
}

#[tokio::test]
async fn a_pagination_query_that_is_not_a_number_is_400_invalid_query() {
    let app = TestApp::spawn_without_dispatcher().await;
    let id = app.send_sms("12345678", "paged").await;
    for path in [
        "/api/sms?page=abc".to_owned(),
        "/api/sms?per_page=x".to_owned(),
        format!("/api/sms/{id}/recipients?page=abc"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_QUERY");
        assert_no_internals(&body);
    }
    app.teardown().await;
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_answered_in_our_format() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .request(Method::DELETE, "/api/sms", Some(&app.token), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(
        body["error"]["code"], "METHOD_NOT_ALLOWED",
        "405 body is not our error format: {body}"
    );
    assert!(body["error"]["message"].is_string(), "{body}");
    app.teardown().await;
}
