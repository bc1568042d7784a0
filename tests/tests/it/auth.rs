//! Login, tokens and account state.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, TestApp, ADMIN_PASSWORD};

async fn log_in(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.request(Method::POST, "/api/auth/login", None, Some(body))
        .await
}

/// `POST /api/sms` with the credential in the header `name`, as a client would send it.
async fn send_with_header(app: &TestApp, name: &str, value: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .post(app.url("/api/sms"))
        .header(name, value)
        .json(&json!({"recipient": "12345678", "content": "hello"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The same token with a different signature: its last base64url character replaced by one
/// that differs in the bits that carry data (a valid last character's two low bits are 0).
fn tampered(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "A" { "E" } else { "A" })
}

async fn admin_id(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = 'SMSadmin'")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_default_admin_logs_in_with_a_bearer_token_valid_for_a_day() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = log_in(
        &app,
        json!({"username": "SMSadmin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86_400);
    let token = body["access_token"].as_str().expect("access_token");
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");

    let (status, listed) = app
        .request(Method::GET, "/api/sms", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"]["total"], 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_401() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = log_in(
        &app,
        json!({"username": "SMSadmin", "password": "SMSpass#13"}),
    )
    .await;
    let wrong_password = assert_error(
        (status, &body),
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    let (status, body) = log_in(
        &app,
        json!({"username": "nobody", "password": ADMIN_PASSWORD}),
    )
    .await;
    let unknown_user = assert_error(
        (status, &body),
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(
        wrong_password, unknown_user,
        "the message must not reveal which usernames exist"
    );
    assert!(body.get("access_token").is_none());
    app.teardown().await;
}

#[tokio::test]
async fn a_login_with_a_missing_field_is_400() {
    let app = TestApp::spawn_without_dispatcher().await;
    for (body, field) in [
        (json!({"username": "SMSadmin"}), "password"),
        (json!({"password": ADMIN_PASSWORD}), "username"),
        (json!({}), "username"),
    ] {
        let (status, response) = log_in(&app, body).await;
        let message = assert_error(
            (status, &response),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert!(message.contains(field), "{message}");
    }
    app.teardown().await;
}

#[tokio::test]
async fn a_request_without_credentials_is_401_unauthorized() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app.request(Method::GET, "/api/sms", None, None).await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (status, body) = app
        .request(
            Method::POST,
            "/api/sms",
            None,
            Some(json!({"recipient": "12345678", "content": "x"})),
        )
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_garbage_bearer_token_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    for garbage in ["garbage", "a.b.c", "sgk_not-a-real-token"] {
        let (status, body) = app
            .request(Method::GET, "/api/sms", Some(garbage), None)
            .await;
        assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }
    app.teardown().await;
}

#[tokio::test]
async fn a_tampered_jwt_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    let forged = tampered(&app.token);
    assert_ne!(forged, app.token);
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&forged), None)
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    app.teardown().await;
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    let foreign_keys = smsgate_core::auth::JwtKeys::new(
        b"not-the-servers-secret-0123456789",
        chrono::Duration::hours(24),
    );
    let foreign = foreign_keys
        .issue(admin_id(&app).await, "SMSadmin")
        .unwrap();
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&foreign), None)
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    app.teardown().await;
}

#[tokio::test]
async fn an_expired_jwt_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    let secret = app.api.as_ref().unwrap().state.settings.jwt_secret.clone();
    let expired_keys = smsgate_core::auth::JwtKeys::new(
        secrecy::ExposeSecret::expose_secret(&secret).as_bytes(),
        chrono::Duration::hours(-2),
    );
    let expired = expired_keys
        .issue(admin_id(&app).await, "SMSadmin")
        .unwrap();
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&expired), None)
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    app.teardown().await;
}

#[tokio::test]
async fn a_jwt_of_a_deleted_user_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, _) = app.create_user("gone", "gone-password").await;
    let token = app.login("gone", "gone-password").await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    // A single send checks the account in the statement that would store it.
    let (status, body) = send_with_header(&app, "Authorization", &format!("Bearer {token}")).await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_users_api_token_works_as_a_bearer_token_and_as_x_api_key() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("client", "client-password").await;

    let (status, body) = send_with_header(&app, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send_with_header(&app, "X-API-Key", &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let owners: Vec<i64> = sqlx::query_scalar("SELECT user_id FROM messages ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        owners,
        vec![id, id],
        "both sends belong to the token's user"
    );
    app.teardown().await;
}

#[tokio::test]
async fn disabling_a_user_refuses_their_jwt_api_token_and_login_at_once() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, api_token) = app.create_user("leaver", "leaver-password").await;
    let jwt = app.login("leaver", "leaver-password").await;
    // Both work before, so the refusals below are caused by the flag. The sends also put
    // the token's owner in the API's cache: the refusal must not depend on a cache miss.
    let (status, body) = send_with_header(&app, "X-API-Key", &api_token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send_with_header(&app, "Authorization", &format!("Bearer {jwt}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        app.request(Method::GET, "/api/sms", Some(&jwt), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.request(Method::GET, "/api/sms", Some(&api_token), None)
            .await
            .0,
        StatusCode::OK
    );

    sqlx::query("UPDATE users SET is_active = false WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();

    let (status, body) = app.request(Method::GET, "/api/sms", Some(&jwt), None).await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    let (status, body) = send_with_header(&app, "X-API-Key", &api_token).await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    let (status, body) = send_with_header(&app, "Authorization", &format!("Bearer {jwt}")).await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    // A send routed to a SIM card is stored by another statement; it checks first.
    let via_sim = json!({"recipient": "12345678", "content": "hello", "route": "sim"});
    let (status, body) = app
        .request(Method::POST, "/api/sms", Some(&api_token), Some(via_sim))
        .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&api_token), None)
        .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    let (status, body) = log_in(
        &app,
        json!({"username": "leaver", "password": "leaver-password"}),
    )
    .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ACCOUNT_DISABLED");
    assert!(body.get("access_token").is_none());

    // A wrong password for a disabled account is still just wrong credentials.
    let (status, body) = log_in(&app, json!({"username": "leaver", "password": "guess"})).await;
    assert_error(
        (status, &body),
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(
        app.message_count().await,
        2,
        "only the two sends from before"
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_revoked_api_token_is_401_invalid_token() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("revoked", "revoked-password").await;
    assert_eq!(
        app.request(Method::GET, "/api/sms", Some(&token), None)
            .await
            .0,
        StatusCode::OK
    );
    // Puts the token's owner in the API's cache, which must not outlive the revocation.
    let (status, body) = send_with_header(&app, "X-API-Key", &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();

    let (status, body) = app
        .request(Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    let (status, body) = send_with_header(&app, "X-API-Key", &token).await;
    assert_error((status, &body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    assert_eq!(app.message_count().await, 1, "only the send from before");
    // Only the token is revoked: the user can still log in.
    app.login("revoked", "revoked-password").await;
    app.teardown().await;
}

#[tokio::test]
async fn api_tokens_are_stored_only_as_their_sha256_hash() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("hashed", "hashed-password").await;

    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE user_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32, "a SHA-256 digest");
    assert_ne!(stored, token.as_bytes());
    assert_eq!(stored, smsgate_core::auth::ApiToken::hash(&token));

    // Neither the row's text form (bytea rendered as hex) nor any column holds the plain token.
    let rows_with_token: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens t
         WHERE strpos(t::text, $1) > 0 OR position(convert_to($1, 'UTF8') IN t.token_hash) > 0",
    )
    .bind(&token)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rows_with_token, 0);
    let users_with_token: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users u WHERE strpos(u::text, $1) > 0")
            .bind(&token)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(users_with_token, 0);
    app.teardown().await;
}

#[tokio::test]
async fn the_default_admin_exists_with_an_argon2id_password_hash() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (is_admin, password_hash): (bool, String) =
        sqlx::query_as("SELECT is_admin, password_hash FROM users WHERE username = 'SMSadmin'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(is_admin);
    assert!(password_hash.starts_with("$argon2id$"), "{password_hash}");
    assert!(!password_hash.contains(ADMIN_PASSWORD));
    app.teardown().await;
}
