//! Web panel: the webhook pages. Every signed-in user manages their own webhooks through
//! `webhooks::service`, as `/api/webhooks` does; deliveries go to a real receiver.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use smsgate_tests::app::{hidden_input, PanelClient, TestApp, ADMIN_PASSWORD};
use smsgate_tests::webhook_receiver::{Behaviour, WebhookReceiver};

const DEADLINE: Duration = Duration::from_secs(30);
const BOB: (&str, &str) = ("bob", "Bob-pass-2026!");

async fn webhook_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// (is_active, secret) straight from the database, the secret decrypted with the tests'
/// WEBHOOK_SECRET_KEYS (it is stored encrypted).
async fn stored(app: &TestApp, id: i64) -> (bool, String) {
    let (is_active, sealed): (bool, String) =
        sqlx::query_as("SELECT is_active, secret FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let secret = smsgate_shared::secret_box::test_keys()
        .open(
            &sealed,
            &smsgate_shared::secret_box::webhook_secret_context(id),
        )
        .unwrap();
    (is_active, secret)
}

/// The `whsec_…` secret a page shows, if any.
fn secret_on(body: &str) -> Option<String> {
    let at = body.find("whsec_")?;
    Some(body[at..].split('"').next()?.to_owned())
}

/// Adds a webhook through the panel's form; returns (id, the secret its page showed).
async fn add_webhook(client: &PanelClient, url: &str, description: &str) -> (i64, String) {
    let page = client
        .submit(
            "/webhooks",
            "/webhooks",
            &[("url", url), ("description", description)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("shown only once"), "{}", page.body);
    let secret = secret_on(&page.body).expect("the secret on its page");
    assert_eq!(secret.len(), "whsec_".len() + 64, "{secret}");
    let link = "href=\"/webhooks/";
    let at = page.body.find(link).expect("a link to the webhook") + link.len();
    let id = page.body[at..]
        .split('"')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("the webhook's id in its link");
    (id, secret)
}

/// The `<tr>` of delivery `id` on a detail page.
fn delivery_row(page: &str, id: i64) -> Option<String> {
    let start = page.find(&format!("data-delivery-id=\"{id}\""))?;
    let end = page[start..].find("</tr>")? + start;
    Some(page[start..end].to_owned())
}

/// Reloads the detail page until delivery `delivery`'s row shows `status`; returns the row.
async fn wait_for_row(client: &PanelClient, webhook: i64, delivery: i64, status: &str) -> String {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = client.get(&format!("/webhooks/{webhook}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let row = delivery_row(&page.body, delivery);
        if let Some(row) = row.filter(|r| r.contains(&format!(">{status}<"))) {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "delivery {delivery} not {status}: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The newest delivery of a webhook, straight from the database.
async fn latest_delivery(app: &TestApp, webhook: i64) -> i64 {
    sqlx::query_scalar("SELECT max(id) FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(webhook)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn webhook_pages_require_a_session() {
    let app = TestApp::spawn_without_dispatcher().await;
    let anonymous = app.panel_client();
    for path in ["/webhooks", "/webhooks/1", "/webhooks/1/delete"] {
        let response = anonymous.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        let location = response.location().unwrap_or_default();
        assert!(location.starts_with("/login"), "{path} → {location}");
    }
    let forged = anonymous
        .post_form("/webhooks", &[("url", "https://hooks.example.com/x")])
        .await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    assert_eq!(webhook_count(&app).await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_user_adds_a_webhook_and_sees_its_secret_only_once() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, bob_token) = app.create_user(BOB.0, BOB.1).await;
    let bob = app.panel_login(BOB.0, BOB.1).await;
    let empty = bob.get("/webhooks").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("data-testid=\"no-webhooks\""));
    assert!(empty
        .body
        .contains("href=\"/webhooks\" aria-current=\"page\""));

    let invalid = bob
        .submit(
            "/webhooks",
            "/webhooks",
            &[("url", "ftp://hooks.example.com/x"), ("description", "CRM")],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        invalid.body.contains(
            "<p class=\"field-error\" id=\"url-error\">url must start with http:&#x2F;&#x2F; or https:&#x2F;&#x2F;</p>"
        ),
        "{}",
        invalid.body
    );
    assert_eq!(
        hidden_input(&invalid.body, "url").as_deref(),
        Some("ftp://hooks.example.com/x")
    );
    assert_eq!(
        hidden_input(&invalid.body, "description").as_deref(),
        Some("CRM")
    );
    // Both bad fields are reported at once.
    let long = "d".repeat(201);
    let both = bob
        .submit(
            "/webhooks",
            "/webhooks",
            &[("url", "not a url"), ("description", &long)],
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(both
        .body
        .contains("id=\"url-error\">url is not a valid URL"));
    assert!(both
        .body
        .contains("id=\"description-error\">description is longer than 200 characters"));
    assert_eq!(webhook_count(&app).await, 0);

    let receiver = WebhookReceiver::spawn().await;
    let (id, secret) = add_webhook(&bob, &receiver.url(), "CRM").await;
    assert_eq!(stored(&app, id).await, (true, secret.clone()));
    let list = bob.get("/webhooks").await.body;
    assert!(
        list.contains(&format!("data-webhook-id=\"{id}\"")),
        "{list}"
    );
    assert!(list.contains("CRM") && list.contains(" HKT</time>"));
    for page in [list, bob.get(&format!("/webhooks/{id}")).await.body] {
        assert!(
            !page.contains("whsec_"),
            "the secret is shown again: {page}"
        );
    }
    // The JSON API sees what the panel made, under bob's name.
    let (status, listed) = app
        .request(
            reqwest::Method::GET,
            "/api/webhooks",
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["webhooks"][0]["url"], receiver.url());
    let actor: String = sqlx::query_scalar(
        "SELECT u.username FROM audit_log a JOIN users u ON u.id = a.actor_id
         WHERE a.action = 'webhook.create'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(actor, "bob");

    // At the cap the form is refused with the reason, keeping what was typed.
    for n in 1..10 {
        let (status, body) = app
            .request(
                reqwest::Method::POST,
                "/api/webhooks",
                Some(&bob_token),
                Some(json!({"url": format!("https://hooks.example.com/{n}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let full = bob
        .submit(
            "/webhooks",
            "/webhooks",
            &[
                ("url", "https://hooks.example.com/11"),
                ("description", "one too many"),
            ],
        )
        .await;
    assert_eq!(full.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        full.body.contains("at most 10 webhooks per user"),
        "{}",
        full.body
    );
    assert_eq!(
        hidden_input(&full.body, "description").as_deref(),
        Some("one too many")
    );
    assert_eq!(webhook_count(&app).await, 10);
    app.teardown().await;
}

#[tokio::test]
async fn the_test_action_delivers_a_signed_event_that_the_detail_page_lists() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let (id, secret) = add_webhook(&admin, &receiver.url(), "test receiver").await;
    let detail = format!("/webhooks/{id}");
    assert!(admin
        .get(&detail)
        .await
        .body
        .contains("data-testid=\"no-deliveries\""));

    let queued = admin
        .submit(&detail, &format!("/webhooks/{id}/test"), &[])
        .await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER);
    assert_eq!(queued.location(), Some(detail.as_str()));
    let delivery = latest_delivery(&app, id).await;
    let page = admin.get(&detail).await.body;
    assert!(
        page.contains(&format!("Test event queued (delivery #{delivery}).")),
        "{page}"
    );

    let received = receiver
        .wait_until("the test event", DEADLINE, |r| !r.is_empty())
        .await;
    assert_eq!(received[0].event, "webhook.test");
    assert_eq!(received[0].delivery, delivery);
    assert_eq!(received[0].json["data"]["webhook_id"], id);
    assert!(received[0].signed_with(&secret));

    let row = wait_for_row(&admin, id, delivery, "delivered").await;
    assert!(row.contains("webhook.test"), "{row}");
    assert!(row.contains("badge badge-delivered"), "{row}");
    assert!(row.contains("HTTP 204"), "{row}");
    assert!(row.contains(" HKT</time>"), "{row}");
    assert!(!row.contains("Retry"), "{row}");
    app.teardown().await;
}

#[tokio::test]
async fn a_failed_delivery_shows_its_error_and_retry_sends_it_again() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    receiver.set(Behaviour::always(StatusCode::INTERNAL_SERVER_ERROR));
    let (_, bob_token) = app.create_user(BOB.0, BOB.1).await;
    let bob = app.panel_login(BOB.0, BOB.1).await;
    let (id, _) = add_webhook(&bob, &receiver.url(), "flaky").await;
    let detail = format!("/webhooks/{id}");
    bob.submit(&detail, &format!("/webhooks/{id}/test"), &[])
        .await;
    let delivery = latest_delivery(&app, id).await;

    // Once plus once per step of the test stack's schedule (200 ms, 400 ms).
    let row = wait_for_row(&bob, id, delivery, "failed").await;
    assert!(row.contains("badge badge-failed"), "{row}");
    assert!(row.contains("data-field=\"attempts\">3</td>"), "{row}");
    assert!(row.contains("HTTP 500</td>"), "{row}");
    assert!(row.contains("data-field=\"error\">HTTP 500</td>"), "{row}");
    assert!(
        row.contains(&format!("data-testid=\"retry-{delivery}\"")),
        "{row}"
    );

    receiver.set(Behaviour::default());
    let retry = format!("/webhooks/{id}/deliveries/{delivery}/retry");
    let requeued = bob.submit(&detail, &retry, &[]).await;
    assert_eq!(requeued.status, StatusCode::SEE_OTHER);
    assert_eq!(requeued.location(), Some(detail.as_str()));
    assert!(bob
        .get(&detail)
        .await
        .body
        .contains(&format!("Delivery #{delivery} queued again.")));
    receiver
        .wait_until("the retried delivery", DEADLINE, |r| {
            r.iter().any(|r| r.delivery == delivery)
        })
        .await;
    let row = wait_for_row(&bob, id, delivery, "delivered").await;
    assert!(row.contains("HTTP 204"), "{row}");

    // A delivery that is no longer failed (an old tab) is refused with the reason.
    let stale = bob.submit(&detail, &retry, &[]).await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert_eq!(stale.location(), Some(detail.as_str()));
    assert!(bob
        .get(&detail)
        .await
        .body
        .contains("no failed delivery with that id for this webhook"));
    // The JSON API agrees on what happened.
    let (_, page) = app
        .request(
            reqwest::Method::GET,
            &format!("/api/webhooks/{id}/deliveries"),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(page["deliveries"][0]["status"], "delivered");
    app.teardown().await;
}

#[tokio::test]
async fn a_user_disables_enables_rotates_and_deletes_a_webhook() {
    let app = TestApp::spawn_without_dispatcher().await;
    app.create_user(BOB.0, BOB.1).await;
    let bob = app.panel_login(BOB.0, BOB.1).await;
    let (id, first_secret) = add_webhook(&bob, "http://127.0.0.1:9/hook", "").await;

    let toggle = format!("/webhooks/{id}/toggle");
    let disabled = bob.submit("/webhooks", &toggle, &[]).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    assert_eq!(disabled.location(), Some("/webhooks"));
    let list = bob.get("/webhooks").await.body;
    // Tera escapes the slashes of the URL in the flash, as everywhere.
    let url = "http:&#x2F;&#x2F;127.0.0.1:9&#x2F;hook";
    assert!(
        list.contains(&format!("Webhook {url} disabled: it gets no new events")),
        "{list}"
    );
    assert!(list.contains("badge badge-inactive"));
    assert!(list.contains(&format!("aria-label=\"Enable {url}\">Enable</button>")));
    assert!(!stored(&app, id).await.0);
    bob.submit("/webhooks", &toggle, &[]).await;
    assert!(stored(&app, id).await.0);
    assert!(bob.get("/webhooks").await.body.contains("enabled."));

    let detail = format!("/webhooks/{id}");
    let rotated = bob
        .submit(&detail, &format!("/webhooks/{id}/rotate-secret"), &[])
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert!(rotated.body.contains("New signing secret"));
    assert!(rotated.body.contains("shown only once"));
    assert!(rotated.body.contains("X-Smsgate-Signature"));
    let second_secret = secret_on(&rotated.body).expect("the new secret");
    assert_ne!(second_secret, first_secret);
    assert_eq!(stored(&app, id).await.1, second_secret);

    let delete = format!("/webhooks/{id}/delete");
    let confirm = bob.get(&delete).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains(&format!("Delete webhook #{id}?")));
    assert_eq!(webhook_count(&app).await, 1);
    let deleted = bob.submit(&delete, &delete, &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(deleted.location(), Some("/webhooks"));
    assert!(bob
        .get("/webhooks")
        .await
        .body
        .contains(&format!("Webhook {url} deleted.")));
    assert_eq!(webhook_count(&app).await, 0);
    assert_eq!(bob.get(&detail).await.status, StatusCode::NOT_FOUND);

    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'webhook.%' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        audited,
        [
            "webhook.create",
            "webhook.update",
            "webhook.update",
            "webhook.rotate_secret",
            "webhook.delete"
        ]
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_detail_page_lists_deliveries_fifty_at_a_time_newest_first() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let (id, _) = add_webhook(&admin, "http://127.0.0.1:9/hook", "").await;
    let message = app.send_sms("2345 6789", "reported").await;
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, message_id, payload)
         SELECT $1, 'message.status', $2, '{}'::jsonb FROM generate_series(1, 51)",
    )
    .bind(id)
    .bind(message)
    .execute(&app.db)
    .await
    .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();

    let first = admin.get(&format!("/webhooks/{id}")).await.body;
    let shown = first.matches("data-delivery-id=").count();
    assert_eq!(shown, 50);
    assert!(
        first.find(&format!("data-delivery-id=\"{}\"", ids[0]))
            < first.find(&format!("data-delivery-id=\"{}\"", ids[1]))
    );
    assert!(delivery_row(&first, ids[50]).is_none());
    let row = delivery_row(&first, ids[0]).unwrap();
    assert!(
        row.contains(&format!("href=\"/history/{message}\"")),
        "{row}"
    );
    assert!(row.contains("badge badge-pending"), "{row}");
    let older = format!("/webhooks/{id}?before={}", ids[49]);
    assert!(
        first.contains(&format!("href=\"{}\"", older.replace('/', "&#x2F;"))),
        "{first}"
    );

    let second = admin.get(&older).await.body;
    assert_eq!(second.matches("data-delivery-id=").count(), 1);
    assert!(delivery_row(&second, ids[50]).is_some());
    assert!(!second.contains("data-testid=\"older\""));
    app.teardown().await;
}

#[tokio::test]
async fn another_user_gets_404_for_a_webhook_and_forged_posts_are_refused() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, created) = app
        .post(
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "description": "the admin's"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, test) = app
        .post(&format!("/api/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let delivery = test["delivery_id"].as_i64().unwrap();
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', completed_at = now() WHERE id = $1",
    )
    .bind(delivery)
    .execute(&app.db)
    .await
    .unwrap();

    app.create_user(BOB.0, BOB.1).await;
    let bob = app.panel_login(BOB.0, BOB.1).await;
    assert!(!bob.get("/webhooks").await.body.contains("the admin"));
    for path in [format!("/webhooks/{id}"), format!("/webhooks/{id}/delete")] {
        assert_eq!(bob.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(bob.get("/webhooks/abc").await.status, StatusCode::NOT_FOUND);
    // Valid CSRF tokens (from bob's own page) do not open someone else's webhook.
    for path in [
        format!("/webhooks/{id}/toggle"),
        format!("/webhooks/{id}/test"),
        format!("/webhooks/{id}/rotate-secret"),
        format!("/webhooks/{id}/delete"),
        format!("/webhooks/{id}/deliveries/{delivery}/retry"),
    ] {
        let refused = bob.submit("/webhooks", &path, &[]).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{path}");
    }

    // The owner's own POSTs need the session's token.
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let toggle = format!("/webhooks/{id}/toggle");
    assert_eq!(
        admin.post_form(&toggle, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin
            .post_form(&toggle, &[("csrf_token", "not-the-token")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let no_csrf = admin
        .post_form("/webhooks", &[("url", "https://hooks.example.com/x")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);

    assert_eq!(stored(&app, id).await, (true, secret));
    assert_eq!(webhook_count(&app).await, 1);
    let deliveries: Vec<String> =
        sqlx::query_scalar("SELECT status FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(deliveries, ["failed"]);
    app.teardown().await;
}

#[tokio::test]
async fn a_description_with_markup_is_shown_as_text() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let markup = "<script>alert(1)</script>";
    let (id, _) = add_webhook(&admin, "http://127.0.0.1:9/hook", markup).await;
    for path in [
        "/webhooks".to_owned(),
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/delete"),
    ] {
        let body = admin.get(&path).await.body;
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{path}: {body}"
        );
        assert!(!body.contains("<script>alert"), "{path}");
    }
    app.teardown().await;
}
