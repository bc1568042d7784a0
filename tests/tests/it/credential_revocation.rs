//! A password change or reset ends every credential issued under the old password; the
//! forced first-login change holds for the API too; `POST /api/auth` keys are audited and
//! capped; logout is a CSRF-checked POST.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{TestApp, ADMIN_PASSWORD};

const OLD: &str = "Alice-pass-2026";
const NEW: &str = "Harbour-Lights-42";

async fn status_as(app: &TestApp, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    let body = (method == Method::POST).then(|| json!({"recipient": "91234567", "content": "hi"}));
    app.request(method, path, Some(token), body).await
}

/// The old JWT and API token are refused on reads and on the single-send route.
async fn assert_revoked(app: &TestApp, jwt: &str, api_token: &str) {
    for token in [jwt, api_token] {
        for (method, path) in [(Method::GET, "/api/sms"), (Method::POST, "/api/sms")] {
            let (status, body) = status_as(app, token, method.clone(), path).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "INVALID_TOKEN", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_password_change_in_the_panel_ends_earlier_jwts_api_tokens_and_other_sessions() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, api_token) = app.create_user("alice", OLD).await;
    let jwt = app.login("alice", OLD).await;
    assert_eq!(
        status_as(&app, &jwt, Method::GET, "/api/sms").await.0,
        StatusCode::OK
    );
    let here = app.panel_login("alice", OLD).await;
    let elsewhere = app.panel_login("alice", OLD).await;

    let changed = here
        .submit(
            "/account/password",
            "/account/password",
            &[("current", OLD), ("new_password", NEW), ("confirm", NEW)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);

    assert_revoked(&app, &jwt, &api_token).await;
    assert_eq!(here.get("/").await.status, StatusCode::OK);
    let other = elsewhere.get("/").await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    assert!(other.location().unwrap().starts_with("/login"));
    // The new password's tokens work.
    let fresh = app.login("alice", NEW).await;
    assert_eq!(
        status_as(&app, &fresh, Method::GET, "/api/sms").await.0,
        StatusCode::OK
    );

    let (details,): (Value,) = sqlx::query_as(
        "SELECT details FROM audit_log WHERE action = 'account.password' AND target = $1",
    )
    .bind(format!("user:{id}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(details["revoked_api_tokens"], 1);
    assert_eq!(details["ended_sessions"], 1);
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_reset_through_the_api_ends_the_users_jwts_and_api_tokens() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, api_token) = app.create_user("alice", OLD).await;
    let jwt = app.login("alice", OLD).await;
    let session = app.panel_login("alice", OLD).await;
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{id}"),
            Some(&app.token),
            Some(json!({"password": NEW})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_revoked(&app, &jwt, &api_token).await;
    assert_eq!(session.get("/").await.status, StatusCode::SEE_OTHER);
    // A change that sets no password revokes nothing.
    let jwt = app.login("alice", NEW).await;
    let (status, _) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{id}"),
            Some(&app.token),
            Some(json!({"admin": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        status_as(&app, &jwt, Method::GET, "/api/sms").await.0,
        StatusCode::OK
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'user.password'
         AND (details->>'revoked_api_tokens')::int = 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_reset_in_the_panel_ends_the_users_jwts_and_api_tokens() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, api_token) = app.create_user("alice", OLD).await;
    let jwt = app.login("alice", OLD).await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let path = format!("/admin/users/{id}/password");
    let reset = admin
        .submit(&path, &path, &[("password", NEW), ("confirm", NEW)])
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.body);
    assert_revoked(&app, &jwt, &api_token).await;
    app.teardown().await;
}

#[tokio::test]
async fn a_forced_password_change_applies_to_the_api_too() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, api_token) = app.create_user("alice", OLD).await;
    let jwt = app.login("alice", OLD).await;
    sqlx::query("UPDATE users SET must_change_password = TRUE WHERE username = 'alice'")
        .execute(&app.db)
        .await
        .unwrap();
    for path in ["/api/auth/login", "/api/auth"] {
        let (status, body) = app
            .request(
                Method::POST,
                path,
                None,
                Some(json!({"username": "alice", "password": OLD})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "PASSWORD_CHANGE_REQUIRED", "{path}");
        assert!(body["error"]["message"].as_str().unwrap().contains("panel"));
    }
    for token in [jwt.as_str(), api_token.as_str()] {
        for (method, path) in [(Method::GET, "/api/sms"), (Method::POST, "/api/sms")] {
            let (status, body) = status_as(&app, token, method.clone(), path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "PASSWORD_CHANGE_REQUIRED");
        }
    }
    // The panel still signs them in, to the password page.
    let panel = app.panel_login("alice", OLD).await;
    assert_eq!(panel.get("/").await.location(), Some("/account/password"));
    app.teardown().await;
}

#[tokio::test]
async fn post_api_auth_audits_every_key_it_mints_and_keeps_at_most_five() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, admin_issued) = app.create_user("alice", OLD).await;
    let mut keys = Vec::new();
    for _ in 0..7 {
        let (status, body) = app
            .request(
                Method::POST,
                "/api/auth",
                None,
                Some(json!({"username": "alice", "password": OLD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["username"], "alice");
        assert_eq!(body["role"], "user");
        assert!(body["token"].as_str().is_some());
        keys.push(body["api_key"].as_str().unwrap().to_owned());
    }
    let entries: Vec<(Option<i64>, String, Value)> = sqlx::query_as(
        "SELECT actor_id, target, details FROM audit_log WHERE action = 'token.mint' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(entries.len(), 7);
    for (actor, target, details) in &entries {
        assert_eq!(*actor, Some(id));
        assert_eq!(target, &format!("user:{id}"));
        assert!(details["token_id"].as_i64().is_some(), "{details}");
        assert_eq!(details["address"], "127.0.0.1");
        for key in &keys {
            assert!(
                !details.to_string().contains(key.as_str()),
                "the key leaked"
            );
        }
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND label = 'POST /api/auth'
         AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(live, 5);
    // The two oldest are revoked; the newest and keys from elsewhere still work.
    for (key, expected) in [
        (&keys[0], StatusCode::UNAUTHORIZED),
        (&keys[1], StatusCode::UNAUTHORIZED),
        (&keys[2], StatusCode::OK),
        (&keys[6], StatusCode::OK),
        (&admin_issued, StatusCode::OK),
    ] {
        assert_eq!(
            status_as(&app, key, Method::GET, "/api/sms").await.0,
            expected
        );
    }
    app.teardown().await;
}

#[tokio::test]
async fn logout_is_a_csrf_checked_post_and_a_get_signs_no_one_out() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let link = client.get("/logout").await;
    assert_eq!(link.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(client.get("/").await.status, StatusCode::OK);
    let page = client.get("/").await;
    assert!(page
        .body
        .contains(r#"<form method="post" action="/logout""#));
    let out = client.submit("/", "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_ne!(client.get("/").await.status, StatusCode::OK);
    app.teardown().await;
}

#[tokio::test]
async fn generating_an_api_key_is_audited_without_the_key() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, _) = app.create_user("alice", OLD).await;
    let jwt = app.login("alice", OLD).await;
    let (status, body) = app
        .request(Method::POST, "/api/generate-api-key", Some(&jwt), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = body["api_key"].as_str().unwrap().to_owned();
    let (actor, details): (Option<i64>, Value) = sqlx::query_as(
        "SELECT actor_id, details FROM audit_log WHERE action = 'token.mint' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(actor, Some(id));
    assert_eq!(details["via"], "POST /api/generate-api-key");
    assert!(details["token_id"].as_i64().is_some(), "{details}");
    assert_eq!(details["address"], "127.0.0.1");
    assert_eq!(details["revoked_count"], 1, "the key create_user issued");
    assert!(!details.to_string().contains(&key), "the key leaked");
    app.teardown().await;
}
