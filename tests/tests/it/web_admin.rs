//! Web panel: user administration, dead letters and the audit log.

use std::time::Duration;

use reqwest::StatusCode;
use smsgate_core::admin::users::{self, UserAdminError, UserChange};
use smsgate_mock_hkt::MockConfig;
use smsgate_tests::app::{hidden_input, TestApp, TestOptions, ADMIN_PASSWORD};

async fn user_id(app: &TestApp, username: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_creates_a_user_who_signs_in_without_admin_pages() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let weak = admin
        .submit(
            "/admin/users/new",
            "/admin/users/new",
            &[
                ("username", "carol"),
                ("password", "carol"),
                ("confirm", "carol"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("at least 10 characters"));
    assert!(
        weak.body.contains("value=\"carol\""),
        "the form keeps the username"
    );

    let created = admin
        .submit(
            "/admin/users/new",
            "/admin/users/new",
            &[
                ("username", "carol"),
                ("password", "Harbour-42-Lights"),
                ("confirm", "Harbour-42-Lights"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains("User carol created."));
    let taken = admin
        .submit(
            "/admin/users/new",
            "/admin/users/new",
            &[
                ("username", "CAROL"),
                ("password", "Harbour-42-Lights"),
                ("confirm", "Harbour-42-Lights"),
            ],
        )
        .await;
    assert!(taken.body.contains("already taken"));

    let carol = app.panel_login("carol", "Harbour-42-Lights").await;
    assert_eq!(
        carol.get("/admin/users").await.status,
        StatusCode::FORBIDDEN
    );
    let forged = carol
        .submit(
            "/",
            "/admin/users/new",
            &[
                ("username", "mallory"),
                ("password", "Mallory-2026!"),
                ("confirm", "Mallory-2026!"),
                ("is_admin", "on"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let audit = admin.get("/admin/audit").await;
    assert!(audit.body.contains("user.create") && audit.body.contains("carol"));
    app.teardown().await;
}

#[tokio::test]
async fn admins_never_delete_or_disable_themselves_nor_the_last_admin() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let me = user_id(&app, "SMSadmin").await;
    let confirm = admin.get(&format!("/admin/users/{me}/delete")).await;
    assert_eq!(confirm.status, StatusCode::SEE_OTHER);
    let refused = admin
        .submit("/admin/users", &format!("/admin/users/{me}/delete"), &[])
        .await;
    assert_eq!(refused.location(), Some("/admin/users"));
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains("cannot delete yourself"));
    let toggled = admin
        .submit("/admin/users", &format!("/admin/users/{me}/toggle"), &[])
        .await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER);
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains("cannot disable yourself"));

    // The last active admin is kept whoever asks: two admins disabling each other at once
    // are serialised by the service, and the second finds the other is the last one.
    let (dave, _) = app.create_user("dave", "Dave-pass-2026").await;
    let gate = smsgate_core::auth::PasswordGate::new(1, Duration::from_secs(30));
    let change = || UserChange {
        is_active: Some(false),
        ..Default::default()
    };
    let refused = users::update_user(&app.db, &gate, dave, me, change()).await;
    assert!(
        matches!(refused, Err(UserAdminError::LastAdmin)),
        "{refused:?}"
    );
    let refused = users::delete_user(&app.db, dave, me).await;
    assert!(
        matches!(refused, Err(UserAdminError::LastAdmin)),
        "{refused:?}"
    );
    let demote = UserChange {
        is_admin: Some(false),
        ..Default::default()
    };
    let refused = users::update_user(&app.db, &gate, dave, me, demote).await;
    assert!(
        matches!(refused, Err(UserAdminError::LastAdmin)),
        "{refused:?}"
    );
    let confirm = admin.get(&format!("/admin/users/{dave}/delete")).await;
    assert!(confirm.body.contains("Delete dave?"));
    let deleted = admin
        .submit("/admin/users", &format!("/admin/users/{dave}/delete"), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains("User dave deleted."));
    app.teardown().await;
}

#[tokio::test]
async fn a_regenerated_api_token_is_shown_once_and_replaces_the_old_one() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, old_token) = app.create_user("erin", "Erin-pass-2026").await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = admin
        .submit("/admin/users", &format!("/admin/users/{id}/token"), &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("shown only once"));
    assert!(page.body.contains("data-copy-target=\"token\""));
    let token = hidden_input(&page.body, "token").or_else(|| {
        let at = page.body.find("sgk_")?;
        Some(page.body[at..].split('"').next()?.to_owned())
    });
    let token = token.expect("token on the page");
    let (old, _) = app
        .request(reqwest::Method::GET, "/api/sms", Some(&old_token), None)
        .await;
    assert_eq!(old, StatusCode::UNAUTHORIZED);
    let (new, _) = app
        .request(reqwest::Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_eq!(new, StatusCode::OK);
    // Never stored in plain text.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE substring(token_hash FROM 1 FOR 4) = 'sgk_'::bytea",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(plain, 0);
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_changes_a_password_and_the_users_sessions_end() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, _) = app.create_user("frank", "Frank-pass-2026").await;
    let frank = app.panel_login("frank", "Frank-pass-2026").await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let changed = admin
        .submit(
            &format!("/admin/users/{id}/password"),
            &format!("/admin/users/{id}/password"),
            &[
                ("password", "Kowloon-Bay-77"),
                ("confirm", "Kowloon-Bay-77"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert_eq!(frank.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        frank.login("frank", "Kowloon-Bay-77").await.status,
        StatusCode::SEE_OTHER
    );
    app.teardown().await;
}

#[tokio::test]
async fn dead_letters_are_listed_retried_and_abandoned() {
    let app = TestApp::spawn_with(TestOptions {
        retry_schedule: vec![Duration::from_millis(100)],
        ..Default::default()
    })
    .await;
    // Both numbers get 503s through the whole (one-step) retry schedule.
    app.mock.set_config(MockConfig {
        fail_numbers: vec!["85212345678".into(), "85223456789".into()],
        fail_status: 503,
        ..MockConfig::default()
    });
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let sent = admin
        .compose("doomed", "12345678\n23456789", None, None)
        .await;
    let id: i64 = sent
        .location()
        .unwrap()
        .trim_start_matches("/history/")
        .parse()
        .unwrap();
    let done = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed");
    let page = admin.get("/admin/dead-letters").await;
    assert!(
        page.body.contains("+85212345678") && page.body.contains("+85223456789"),
        "{}",
        page.body
    );
    let letters: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM dead_letters WHERE message_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(letters.len(), 2);

    let abandoned = admin
        .submit(
            "/admin/dead-letters",
            &format!("/admin/dead-letters/{}/abandon", letters[0]),
            &[],
        )
        .await;
    assert_eq!(abandoned.status, StatusCode::SEE_OTHER);
    app.mock.set_config(MockConfig::default());
    let retried = admin
        .submit("/admin/dead-letters", "/admin/dead-letters/retry-all", &[])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    assert!(admin
        .get("/admin/dead-letters")
        .await
        .body
        .contains("1 recipient(s) queued again"));
    let message = app.wait_until_final(id, Duration::from_secs(20)).await;
    assert_eq!(message["status"], "partial");
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(open, 0);
    app.teardown().await;
}
