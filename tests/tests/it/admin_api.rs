//! The JSON admin API: same services, rules and audit log as the panel's user pages.

use reqwest::{Method, StatusCode};
use serde_json::json;
use smsgate_tests::app::TestApp;

#[tokio::test]
async fn the_admin_api_creates_lists_updates_and_deletes_users() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, created) = app
        .post(
            "/api/admin/users",
            json!({"username": "grace", "password": "Harbour-42-Lights", "is_admin": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["username"], "grace");
    assert_eq!(created["is_active"], true);
    assert!(created.get("password_hash").is_none());
    let id = created["id"].as_i64().unwrap();

    let (status, list) = app.get("/api/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["grace", "SMSadmin"]);

    let (status, updated) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{id}"),
            Some(&app.token),
            Some(json!({"admin": true, "password": "Kowloon-Bay-77"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["is_admin"], true);
    app.login("grace", "Kowloon-Bay-77").await;

    let (status, _) = app
        .request(
            Method::DELETE,
            &format!("/api/admin/users/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE target = $1 ORDER BY id")
            .bind(format!("user:{id}"))
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        actions,
        vec!["user.create", "user.password", "user.role", "user.delete"]
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_admin_api_is_for_admins_only() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, token) = app.create_user("heidi", "Heidi-pass-2026").await;
    for (method, path) in [
        (Method::GET, "/api/admin/users"),
        (Method::POST, "/api/admin/users"),
        (Method::PUT, "/api/admin/users/1"),
        (Method::DELETE, "/api/admin/users/1"),
        (Method::POST, "/api/admin/users/1/tokens"),
    ] {
        let (status, body) = app
            .request(method.clone(), path, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "ADMIN_REQUIRED");
        let (status, _) = app.request(method, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    app.teardown().await;
}

#[tokio::test]
async fn the_admin_api_applies_the_same_rules_as_the_panel() {
    let app = TestApp::spawn_without_dispatcher().await;
    let me: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'SMSadmin'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (status, body) = app
        .request(
            Method::DELETE,
            &format!("/api/admin/users/{me}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "SELF_ACTION");
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{me}"),
            Some(&app.token),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "SELF_ACTION");

    let (status, body) = app
        .post(
            "/api/admin/users",
            json!({"username": "ivan", "password": "weak"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("password"));
    let (status, body) = app
        .post(
            "/api/admin/users",
            json!({"username": "smsADMIN", "password": "Strong-pass-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "USERNAME_TAKEN");
    let (status, _) = app
        .request(
            Method::PUT,
            "/api/admin/users/999999",
            Some(&app.token),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.teardown().await;
}

#[tokio::test]
async fn an_issued_token_is_shown_once_works_and_stops_when_the_user_is_disabled() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, old) = app.create_user("judy", "Judy-pass-2026").await;
    let (status, body) = app
        .post(&format!("/api/admin/users/{id}/tokens"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sgk_"));
    let (status, _) = app.request(Method::GET, "/api/sms", Some(&old), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token is revoked");
    let (status, _) = app
        .request(Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{id}"),
            Some(&app.token),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .request(Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.teardown().await;
}
