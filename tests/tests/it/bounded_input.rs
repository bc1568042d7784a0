//! Bad input is bounded: junk recipient lists report their first problems and a count,
//! and page numbers cannot overflow.

use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_tests::app::{TestApp, ADMIN_PASSWORD};

fn junk(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("junk-{i}")).collect()
}

#[tokio::test]
async fn a_junk_bulk_lists_the_first_hundred_problems_with_a_count_and_stores_nothing() {
    let app = TestApp::spawn_without_dispatcher().await;
    let mut recipients: Vec<Value> = junk(5_000).into_iter().map(Value::from).collect();
    recipients.insert(0, json!("12345678"));
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": recipients, "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_RECIPIENTS");
    assert_eq!(body["error"]["invalid_count"], 5_000);
    let details = body["error"]["details"].as_array().expect("details");
    assert_eq!(details.len(), 100);
    assert_eq!(details[0]["index"], 1);
    assert_eq!(details[0]["value"], "junk-0");
    assert_eq!(details[99]["index"], 100);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("5000 invalid recipients"), "{message}");
    assert!(message.contains("first 100"), "{message}");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_bulk_over_the_limit_is_refused_by_count_however_long() {
    let app = TestApp::spawn_without_dispatcher().await;
    // 400,000 one-digit entries: four times the limit, without a number among them.
    let recipients = vec![1; 400_000];
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": recipients, "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_RECIPIENTS");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("400000 recipients given"), "{message}");
    assert!(body["error"].get("details").is_none(), "{body}");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn recipients_that_are_not_a_list_are_a_validation_error() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": "12345678", "content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert!(body["error"]["message"].as_str().unwrap().contains("list"));
    app.teardown().await;
}

#[tokio::test]
async fn a_junk_csv_in_the_compose_form_lists_the_first_hundred_lines_and_a_count() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let rows: String = junk(20_000).iter().map(|j| format!("{j}\n")).collect();
    let csv = format!("phone\n{rows}");
    let response = client.compose("Hello", "12345678", Some(&csv), None).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .body
            .contains("20000 invalid numbers; nothing was sent"),
        "{}",
        &response.body[..response.body.len().min(4000)]
    );
    assert!(response.body.contains("The first 100 are listed."));
    assert_eq!(response.body.matches("<li>CSV line").count(), 100);
    assert!(response.body.contains("CSV line 2: <code>junk-0</code>"));
    assert!(!response.body.contains("junk-100<"));
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn page_numbers_out_of_range_are_400_not_500() {
    let app = TestApp::spawn_without_dispatcher().await;
    let id = app.send_sms("12345678", "paged").await;
    for path in [
        "/api/sms?page=9223372036854775807".to_owned(),
        "/api/sms?page=1000001".to_owned(),
        "/api/sms?page=0".to_owned(),
        "/api/sms?page=-5".to_owned(),
        format!("/api/sms/{id}/recipients?page=9223372036854775807"),
        "/api/logs?page=9223372036854775807".to_owned(),
        "/api/sms/inbox?page=9223372036854775807".to_owned(),
        "/api/sms/outbox?page=9223372036854775807".to_owned(),
        "/api/sms-status?page=9223372036854775807".to_owned(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_QUERY", "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("between 1 and 1000000"),
            "{path}: {message}"
        );
    }
    // The panel reads its page numbers leniently (a stale link shows a page), but never
    // into an overflow.
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    for page in ["9223372036854775807", "368934881474191034", "-3"] {
        let response = client.get(&format!("/inbox?page={page}")).await;
        assert_eq!(response.status, StatusCode::OK, "/inbox?page={page}");
    }
    let (status, body) = app.get("/api/sms?page=1000000").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["messages"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );
    assert_eq!(body["data"]["current_page"], 1_000_000);
    app.teardown().await;
}
