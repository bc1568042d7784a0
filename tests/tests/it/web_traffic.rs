//! Web panel: traffic control (issue #14): priority, schedule and validity on the compose
//! form, the message page's progress bar, ETA and Cancel, the scheduled list and the
//! dashboard's traffic chart.

use std::time::Duration;

use chrono::{FixedOffset, Utc};
use reqwest::StatusCode;
use smsgate_tests::app::{hidden_input, PanelClient, PanelResponse, TestApp, ADMIN_PASSWORD};

fn message_id(location: Option<&str>) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/history/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a message page: {location:?}"))
}

/// A `datetime-local` value `offset` from now in the panel's display zone (Hong Kong by
/// default, UTC+8 all year).
fn local_in(offset: chrono::Duration) -> String {
    let hk = FixedOffset::east_opt(8 * 3600).unwrap();
    (Utc::now() + offset)
        .with_timezone(&hk)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// Sends the compose form with traffic options, as the browser does (multipart).
async fn compose_with(
    client: &PanelClient,
    content: &str,
    recipients: &str,
    options: &[(&str, &str)],
) -> PanelResponse {
    let page = client.get("/compose").await;
    let mut form = reqwest::multipart::Form::new()
        .text(
            "csrf_token",
            hidden_input(&page.body, "csrf_token").unwrap(),
        )
        .text(
            "idempotency_key",
            hidden_input(&page.body, "idempotency_key").unwrap(),
        )
        .text("content", content.to_owned())
        .text("recipients", recipients.to_owned());
    for (name, value) in options {
        form = form.text(name.to_string(), value.to_string());
    }
    let response = client
        .http
        .post(format!("{}/compose", client.base_url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    PanelResponse {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn message_row(app: &TestApp, id: i64) -> (String, String, i32) {
    sqlx::query_as("SELECT status, priority, cancelled_count FROM messages WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Results in the last full minute (and this one, in case the minute turns during the
/// test), so the ETA has a measured rate: the test stack's gateway has no configured limit.
async fn record_recent_traffic(app: &TestApp) {
    sqlx::query(
        "INSERT INTO traffic_minutes (minute, shard, sent, failed)
         SELECT date_trunc('minute', now()) - make_interval(mins => m), s, 50, 10
         FROM generate_series(0, 30) m, generate_series(0, 1) s",
    )
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn compose_with_high_priority_stores_priority_high() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let form = admin.get("/compose").await;
    assert!(
        form.body.contains(r#"<option value="normal" selected>"#),
        "{}",
        form.body
    );

    let sent = compose_with(&admin, "urgent", "12345678", &[("priority", "high")]).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let id = message_id(sent.location());
    let (status, priority, _) = message_row(&app, id).await;
    assert_eq!((status.as_str(), priority.as_str()), ("pending", "high"));
    let page = admin.get(&format!("/history/{id}")).await;
    assert!(
        page.body
            .contains(r#"<dd data-testid="priority">high</dd>"#),
        "{}",
        page.body
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_scheduled_compose_waits_on_the_scheduled_list_and_a_past_schedule_is_refused() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;

    let past = compose_with(
        &admin,
        "too late",
        "12345678",
        &[("send_at", &local_in(-chrono::Duration::hours(1)))],
    )
    .await;
    assert_eq!(
        past.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        past.body
    );
    assert!(
        past.body
            .contains(r#"id="send_at-error" role="alert">The schedule must be in the future."#),
        "{}",
        past.body
    );
    // The form is filled in again.
    assert!(past.body.contains("too late</textarea>"));
    assert_eq!(app.message_count().await, 0);

    let at = local_in(chrono::Duration::hours(2));
    let scheduled = compose_with(
        &admin,
        "see you later",
        "12345678\n23456789",
        &[("send_at", &at), ("priority", "low"), ("valid_for", "30")],
    )
    .await;
    assert_eq!(
        scheduled.status,
        StatusCode::SEE_OTHER,
        "{}",
        scheduled.body
    );
    let id = message_id(scheduled.location());
    let (status, priority, _) = message_row(&app, id).await;
    assert_eq!((status.as_str(), priority.as_str()), ("scheduled", "low"));
    let valid_secs: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM valid_until - send_at)::float8 FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(valid_secs, 1800.0);

    let page = admin.get(&format!("/history/{id}")).await;
    let shown = at.replace('T', " ");
    assert!(
        page.body.contains(&format!("scheduled for {shown}:00 HKT")),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-testid="send-at""#));

    let list = admin.get("/scheduled").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("see you later"), "{}", list.body);
    assert!(list
        .body
        .contains(&format!(r#"href="/history/{id}/cancel""#)));
    assert!(list
        .body
        .contains(r#"<a href="/scheduled" aria-current="page">Scheduled</a>"#));

    // Another user's list does not show it.
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;
    let bobs = bob.get("/scheduled").await;
    assert!(!bobs.body.contains("see you later") && bobs.body.contains("no-scheduled"));
    app.teardown().await;
}

#[tokio::test]
async fn the_message_page_shows_progress_eta_and_cancel_and_a_second_cancel_is_harmless() {
    let app = TestApp::spawn_without_dispatcher().await;
    record_recent_traffic(&app).await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let sent = compose_with(&admin, "stop me", "12345678\n23456789\n34567890", &[]).await;
    let id = message_id(sent.location());

    let page = admin.get(&format!("/history/{id}")).await;
    assert!(
        page.body.contains(r#"data-testid="progress""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<span data-field="pending">3</span>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-testid="eta""#), "{}", page.body);
    assert!(page.body.contains(&format!(
        r#"href="/history/{id}/cancel" data-testid="cancel""#
    )));

    let confirm = admin.get(&format!("/history/{id}/cancel")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Cancel 3 recipients"),
        "{}",
        confirm.body
    );
    let path = format!("/history/{id}/cancel");
    let done = admin.submit(&path, &path, &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some(format!("/history/{id}").as_str()));
    let after = admin.get(&format!("/history/{id}")).await;
    assert!(
        after.body.contains("Cancelled 3 recipients of message"),
        "{}",
        after.body
    );
    assert!(!after.body.contains(r#"data-testid="cancel""#));
    assert!(after
        .body
        .contains(r#"<span data-field="cancelled">3</span>"#));
    assert_eq!(
        message_row(&app, id).await,
        ("cancelled".into(), "normal".into(), 3)
    );
    let cancelled_recipients: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM recipients WHERE message_id = $1 AND status = 'cancelled'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(cancelled_recipients, 3);
    // Cancelled recipients are not "pending today" on the dashboard.
    let dashboard = admin.get("/").await;
    assert!(
        dashboard.body.contains(r#"data-testid="today-pending">0<"#),
        "{}",
        dashboard.body
    );

    // Again (a second tab, a double click): nothing changes and nothing breaks.
    let token_page = admin.get(&format!("/history/{id}")).await;
    let token = hidden_input(&token_page.body, "csrf_token").unwrap();
    let again = admin
        .post_form(&path, &[("csrf_token", token.as_str())])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let note = admin.get(&format!("/history/{id}")).await;
    assert!(
        note.body.contains("already cancelled; nothing changed"),
        "{}",
        note.body
    );
    assert_eq!(message_row(&app, id).await.2, 3);
    // Without the CSRF token nothing is done.
    assert_eq!(
        admin.post_form(&path, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    app.teardown().await;
}

#[tokio::test]
async fn another_user_cannot_cancel_and_nothing_changes() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let id = message_id(
        compose_with(&admin, "mine", "12345678", &[])
            .await
            .location(),
    );
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;
    let path = format!("/history/{id}/cancel");
    assert_eq!(bob.get(&path).await.status, StatusCode::NOT_FOUND);
    let refused = bob.submit("/history", &path, &[]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    assert_eq!(
        message_row(&app, id).await,
        ("pending".into(), "normal".into(), 0)
    );
    app.teardown().await;
}

#[tokio::test]
async fn cancelling_a_finished_message_says_so_instead_of_failing() {
    let app = TestApp::spawn().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let id = message_id(
        compose_with(&admin, "quick", "12345678", &[])
            .await
            .location(),
    );
    let message = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(message["status"], "sent");
    let page = admin.get(&format!("/history/{id}")).await;
    assert!(!page.body.contains(r#"data-testid="cancel""#));
    assert!(!page.body.contains(r#"data-testid="eta""#));

    let path = format!("/history/{id}/cancel");
    let refused = admin.submit(&format!("/history/{id}"), &path, &[]).await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
    let back = admin.get(refused.location().unwrap()).await;
    assert!(
        back.body
            .contains("already finished (sent); there is nothing left to cancel"),
        "{}",
        back.body
    );
    assert!(back.body.contains("flash-error"));
    assert_eq!(admin.get(&path).await.status, StatusCode::SEE_OTHER);
    assert_eq!(message_row(&app, id).await.0, "sent");
    app.teardown().await;
}

#[tokio::test]
async fn the_dashboard_draws_the_last_days_traffic_as_an_inline_svg() {
    let app = TestApp::spawn_without_dispatcher().await;
    record_recent_traffic(&app).await;
    sqlx::query(
        "INSERT INTO backlog_minutes (minute, pending, high, normal, low)
         SELECT date_trunc('minute', now()) - make_interval(mins => m), 1000 - m, 0, 1000 - m, 0
         FROM generate_series(1, 30) m
         ON CONFLICT (minute) DO NOTHING",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = admin.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-testid="traffic-chart""#));
    for class in ["chart-sent", "chart-failed", "chart-backlog"] {
        assert!(
            page.body
                .contains(&format!(r#"class="{class}" fill="none""#)),
            "{class}: {}",
            page.body
        );
    }
    // 2 shards × 50 sent a minute: the scale tops at 100 … 200, never at one shard's 50.
    assert!(page.body.contains(">100<") || page.body.contains(">200<"));
    assert!(!page.body.contains("No traffic in the last"));
    app.teardown().await;
}

#[tokio::test]
async fn the_scheduled_list_pages_soonest_first() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    // Composed latest first, so the list's order is not the creation order.
    for n in (1..=26).rev() {
        let at = local_in(chrono::Duration::hours(1) + chrono::Duration::minutes(n));
        let sent = compose_with(
            &admin,
            &format!("wave {n:02}"),
            "12345678",
            &[("send_at", &at)],
        )
        .await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    }
    let first = admin.get("/scheduled").await;
    assert!(first.body.contains("wave 01") && first.body.contains("wave 25"));
    assert!(!first.body.contains("wave 26"));
    assert!(first.body.find("wave 01") < first.body.find("wave 02"));
    assert!(!first.body.contains("← Sooner"));
    let later = href_before(&first.body, r#"data-testid="later""#);
    assert!(later.starts_with("/scheduled?after="), "{later}");
    let second = admin.get(&later).await;
    assert!(second.body.contains("wave 26") && !second.body.contains("wave 25"));
    assert!(!second.body.contains(r#"data-testid="later""#));
    let sooner = href_before(&second.body, r#"rel="prev""#);
    assert!(sooner.starts_with("/scheduled?before="), "{sooner}");
    let back = admin.get(&sooner).await;
    assert!(
        back.body.contains("wave 25") && !back.body.contains("wave 26"),
        "{}",
        back.body
    );
    app.teardown().await;
}

/// The `href` of the link whose tag holds `marker`.
fn href_before(html: &str, marker: &str) -> String {
    let end = html.find(marker).expect("the link");
    let start = html[..end].rfind(r#"href=""#).expect("its href") + r#"href=""#.len();
    let href = &html[start..];
    href[..href.find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#x2F;", "/")
}
