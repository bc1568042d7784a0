//! Web panel: composing and sending.

use std::time::Duration;

use reqwest::StatusCode;
use smsgate_tests::app::{hidden_input, TestApp, ADMIN_PASSWORD};

fn message_id(location: Option<&str>) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/history/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a message page: {location:?}"))
}

#[tokio::test]
async fn compose_lists_every_invalid_number_with_its_line_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = client.get("/compose").await;
    assert!(page.body.contains("0 characters · GSM-7 · 1 segment"));

    let typed = "1234 5678\n2345-6789, 87654321\n\n99";
    let response = client
        .compose("Hello from the panel", typed, None, None)
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .body
            .contains("2 invalid numbers; nothing was sent"),
        "{}",
        response.body
    );
    assert!(response
        .body
        .contains("Recipients line 2: <code>2345-6789</code>"));
    assert!(response.body.contains("Recipients line 4: <code>99</code>"));
    // The form keeps what was typed.
    assert!(response.body.contains("Hello from the panel</textarea>"));
    assert!(response.body.contains("2345-6789, 87654321"));
    assert_eq!(app.message_count().await, 0);

    let fixed = client
        .compose(
            "Hello from the panel",
            "1234 5678\n2345 6789, 87654321",
            None,
            None,
        )
        .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    let id = message_id(fixed.location());
    let detail = client.get(&format!("/history/{id}")).await;
    assert!(detail.body.contains("Message #"));
    assert!(detail.body.contains("queued for 3 recipients"));
    let message = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(message["status"], "sent");
    app.teardown().await;
}

#[tokio::test]
async fn a_double_submitted_compose_form_sends_once() {
    let app = TestApp::spawn().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = client.get("/compose").await;
    let key = hidden_input(&page.body, "idempotency_key").unwrap();
    let (first, second) = tokio::join!(
        client.compose("Once only", "12345678", None, Some(&key)),
        client.compose("Once only", "12345678", None, Some(&key)),
    );
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(second.status, StatusCode::SEE_OTHER);
    assert_eq!(message_id(first.location()), message_id(second.location()));
    let third = client
        .compose("Once only", "12345678", None, Some(&key))
        .await;
    assert_eq!(message_id(third.location()), message_id(first.location()));
    assert_eq!(app.message_count().await, 1);
    // A fresh form is a new message.
    let again = client.compose("Once only", "12345678", None, None).await;
    assert_ne!(message_id(again.location()), message_id(first.location()));
    app.teardown().await;
}

#[tokio::test]
async fn compose_reads_numbers_from_a_csv_upload() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let bad = client
        .compose(
            "From a file",
            "",
            Some("name,phone\nAlice,1234 5678\nBob,not-a-number\n"),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("CSV line 3: <code>not-a-number</code>"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("Choose the CSV file again"));

    let good = client
        .compose(
            "From a file",
            "98765432",
            Some("name,phone\nAlice,1234 5678\nBob,\"2345 6789\"\n"),
            None,
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.body);
    let id = message_id(good.location());
    let phones: Vec<String> =
        sqlx::query_scalar("SELECT phone FROM recipients WHERE message_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(phones, vec!["+85298765432", "+85212345678", "+85223456789"]);
    app.teardown().await;
}

#[tokio::test]
async fn compose_refuses_empty_or_too_long_content_and_no_recipients() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let empty = client.compose("   ", "12345678", None, None).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("Write the message."));
    let long = client
        .compose(&"x".repeat(153 * 10 + 1), "12345678", None, None)
        .await;
    assert!(long.body.contains("too long"), "{}", long.body);
    let none = client.compose("hi", " \n , ", None, None).await;
    assert!(none.body.contains("Add at least one recipient."));
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn what_users_typed_is_shown_as_text_never_as_markup() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let xss = "<script>alert(1)</script>";
    let sent = client.compose(xss, "12345678", None, None).await;
    let id = message_id(sent.location());
    for path in [
        format!("/history/{id}"),
        "/history".to_owned(),
        "/".to_owned(),
    ] {
        let page = client.get(&path).await;
        assert!(!page.body.contains(xss), "{path} echoes markup");
        assert!(
            page.body
                .contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{path}"
        );
    }
    let invalid = client.compose("x", "<b>1</b>", None, None).await;
    assert!(!invalid.body.contains("<b>1</b>"));
    app.teardown().await;
}
