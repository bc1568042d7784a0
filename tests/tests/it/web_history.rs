//! Web panel: history, message detail, live updates and retrying failed recipients.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use smsgate_tests::app::{TestApp, TestOptions, ADMIN_PASSWORD};

fn message_id(location: Option<&str>) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/history/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a message page: {location:?}"))
}

#[tokio::test]
async fn staff_see_only_their_own_messages_and_admins_filter_by_user() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let admins = message_id(
        admin
            .compose("admin secret", "12345678", None, None)
            .await
            .location(),
    );
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;
    let bobs = message_id(
        bob.compose("bob hello", "23456789", None, None)
            .await
            .location(),
    );

    let list = bob.get("/history").await;
    assert!(
        list.body.contains("bob hello") && !list.body.contains("admin secret"),
        "{}",
        list.body
    );
    assert_eq!(
        bob.get(&format!("/history/{admins}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.get(&format!("/history/{admins}/events")).await.status,
        StatusCode::NOT_FOUND
    );
    for path in [
        "/admin/users",
        "/admin/messages",
        "/admin/dead-letters",
        "/admin/audit",
    ] {
        assert_eq!(bob.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }

    let all = admin.get("/history").await;
    assert!(all.body.contains("bob hello") && all.body.contains("admin secret"));
    let bob_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'bob'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let only_bob = admin.get(&format!("/admin/messages?user={bob_id}")).await;
    assert!(only_bob.body.contains("bob hello") && !only_bob.body.contains("admin secret"));
    assert!(admin
        .get(&format!("/history/{bobs}"))
        .await
        .body
        .contains("Sent by"));
    app.teardown().await;
}

#[tokio::test]
async fn history_filters_by_text_number_status_and_date_and_pages_stably() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    for i in 0..30 {
        let text = if i % 10 == 0 {
            format!("Typhoon 50%_warning {i}")
        } else {
            format!("routine {i}")
        };
        let to = if i == 7 {
            "9876 5432".to_owned()
        } else {
            format!("1234{i:04}")
        };
        client.compose(&text, &to, None, None).await;
    }
    let typhoon = client.get("/history?q=50%25_warn").await;
    assert_eq!(
        typhoon.body.matches("Typhoon").count(),
        3,
        "{}",
        typhoon.body
    );
    let by_number = client.get("/history?phone=98765432").await;
    assert!(by_number.body.contains("routine 7") && by_number.body.matches("routine").count() == 1);
    let bad_number = client.get("/history?phone=12-34").await;
    assert!(bad_number.body.contains("phone number contains"));
    assert!(client
        .get("/history?status=sent")
        .await
        .body
        .contains("No messages match"));
    assert!(client
        .get("/history?status=pending")
        .await
        .body
        .contains("routine 29"));
    assert!(client
        .get("/history?to=2000-01-01")
        .await
        .body
        .contains("No messages match"));
    assert!(client
        .get("/history?from=2000-01-01")
        .await
        .body
        .contains("routine 29"));

    // Keyset pages: 25 then 5, no overlap, newest first, and back again.
    let first = client.get("/history").await;
    assert!(first.body.contains("routine 29") && !first.body.contains("routine 4<"));
    let link_end = first
        .body
        .find("rel=\"next\" data-testid=\"older\"")
        .expect("an older link");
    let href_at = first.body[..link_end].rfind("href=\"").unwrap() + "href=\"".len();
    let older_url = first.body[href_at..link_end]
        .trim_end()
        .trim_end_matches('"')
        .replace("&#x2F;", "/")
        .replace("&amp;", "&");
    let second = client.get(&older_url).await;
    assert!(second.body.contains("routine 4<") && !second.body.contains("routine 29"));
    assert!(second.body.contains("← Newer"));
    app.teardown().await;
}

#[tokio::test]
async fn the_detail_page_streams_progress_until_the_message_is_sent() {
    let mut app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let id = message_id(
        client
            .compose("live", "12345678\n23456789", None, None)
            .await
            .location(),
    );
    let page = client.get(&format!("/history/{id}")).await;
    // Tera escapes `/` in attribute values; browsers read it back as `/`.
    assert!(page.body.contains(&format!(
        "data-live-url=\"&#x2F;history&#x2F;{id}&#x2F;events\""
    )));

    let response = client
        .http
        .get(app.url(&format!("/history/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut response = response;
    let mut seen = String::new();
    let mut dispatching = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "never reached sent: {seen}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if !dispatching && seen.contains("event: progress") {
            // The snapshot came first; now let the pipeline run and watch it arrive.
            assert!(seen.contains("\"status\":\"pending\""), "{seen}");
            dispatching = true;
            app.start_dispatcher().await;
        }
        if seen.contains("\"status\":\"sent\"") && seen.contains("\"final\":true") {
            assert!(seen.contains("\"sent\":2"), "{seen}");
            assert!(seen.contains("\"recipient_id\""), "{seen}");
            break;
        }
    }
    drop(response);
    app.teardown().await;
}

#[tokio::test]
async fn retrying_failed_recipients_sends_them_again() {
    let app = TestApp::spawn().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    // The mock gateway refuses texts containing "error" for good.
    let id = message_id(
        client
            .compose("an error text", "12345678\n23456789", None, None)
            .await
            .location(),
    );
    let done = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed");
    let page = client.get(&format!("/history/{id}")).await;
    assert!(page.body.contains("Retry 2 failed recipients"));

    let retried = client
        .submit(
            &format!("/history/{id}"),
            &format!("/history/{id}/retry"),
            &[],
        )
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = app.recipient_rows(id).await;
        if rows
            .iter()
            .all(|(_, status, attempts)| status == "failed" && *attempts == 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not retried: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(message["failed_count"], 2);
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'message.retry'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, 1);
    app.teardown().await;
}
