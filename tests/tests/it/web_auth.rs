//! Web panel: sessions, CSRF, security headers, throttling and forced password change.

use reqwest::StatusCode;
use smsgate_tests::app::{TestApp, ADMIN_PASSWORD};

#[tokio::test]
async fn pages_need_a_session_and_carry_the_security_headers() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    let response = client.get("/history?status=sent").await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(
        response.location(),
        Some("/login?next=/history%3Fstatus%3Dsent")
    );

    let login = client.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["referrer-policy"], "same-origin");
    assert_eq!(login.headers["cache-control"], "no-store");

    // Assets are embedded and served by the app itself.
    let css = client.get("/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let js = client.get("/static/app.js").await;
    assert!(js.body.contains("EventSource"));
    app.teardown().await;
}

#[tokio::test]
async fn login_sets_an_http_only_lax_session_cookie_and_logout_revokes_it() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    let response = client.login("SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(response.location(), Some("/"));
    let cookie = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sg_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");
    let raw = cookie["sg_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // Only a hash of the id is stored.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM web_sessions WHERE id_hash = sha256($1::bytea)")
            .bind(raw.as_bytes())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);

    let dashboard = client.get("/").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Signed in as SMSadmin"));
    assert!(dashboard.body.contains("Queue depth"));

    let out = client.submit("/", "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/login"));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    // The old cookie value no longer opens anything, even if a browser kept it.
    let replay = app
        .http
        .get(app.url("/"))
        .header("cookie", format!("sg_session={raw}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.url().path(), "/login");
    app.teardown().await;
}

#[tokio::test]
async fn secure_cookies_when_served_over_tls_behind_the_proxy() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    let form = client.get("/login").await;
    let token = smsgate_tests::app::hidden_input(&form.body, "csrf_token").unwrap();
    let response = client
        .http
        .post(app.url("/login"))
        .header("x-forwarded-proto", "https")
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "SMSadmin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sg_session="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    app.teardown().await;
}

#[tokio::test]
async fn form_posts_without_the_csrf_token_or_from_another_site_are_refused() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let missing = client.post_form("/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = client
        .post_form("/logout", &[("csrf_token", "guess")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    let page = client.get("/").await;
    let token = smsgate_tests::app::hidden_input(&page.body, "csrf_token").unwrap();
    let cross = client
        .http
        .post(app.url("/logout"))
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Still signed in: none of the forged posts did anything.
    assert_eq!(client.get("/").await.status, StatusCode::OK);

    // The login form has its own (double-submit) token.
    let anonymous = app.panel_client();
    let forged = anonymous
        .post_form(
            "/login",
            &[("username", "SMSadmin"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    app.teardown().await;
}

#[tokio::test]
async fn login_is_throttled_per_username_after_repeated_failures() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    for _ in 0..5 {
        let response = client.login("SMSadmin", "wrong-password").await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert!(response.body.contains("Wrong username or password"));
    }
    // Even the right password is refused now, without being checked.
    let response = client.login("smsadmin", ADMIN_PASSWORD).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response.body.contains("Too many failed sign-in attempts"),
        "{}",
        response.body
    );
    // One throttle for every way in: the JSON API's login from this address is refused too
    // (other addresses are not; see login_throttle.rs).
    let (status, body) = app
        .request(
            reqwest::Method::POST,
            "/api/auth/login",
            None,
            Some(serde_json::json!({"username": "SMSadmin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    sqlx::query("DELETE FROM login_attempts")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        client.login("SMSadmin", ADMIN_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    app.teardown().await;
}

#[tokio::test]
async fn login_is_throttled_per_address_against_password_spraying() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    for i in 0..20 {
        let response = client.login(&format!("user{i}"), "wrong-password").await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let response = client.login("SMSadmin", ADMIN_PASSWORD).await;
    assert!(response.body.contains("Too many failed sign-in attempts"));
    app.teardown().await;
}

#[tokio::test]
async fn the_default_admin_must_change_its_initial_password_before_anything_else() {
    let app = TestApp::spawn_without_dispatcher().await;
    sqlx::query("UPDATE users SET must_change_password = TRUE WHERE username = 'SMSadmin'")
        .execute(&app.db)
        .await
        .unwrap();
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    for path in ["/", "/compose", "/history", "/admin/users"] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.location(), Some("/account/password"), "{path}");
    }
    let page = client.get("/account/password").await;
    assert!(page.body.contains("initial password"));

    let same = client
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new_password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(same.status, StatusCode::UNPROCESSABLE_ENTITY);
    let weak = client
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new_password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("at least 10 characters"));

    let changed = client
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new_password", "Harbour-Lights-42"),
                ("confirm", "Harbour-Lights-42"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert_eq!(client.get("/").await.status, StatusCode::OK);
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'account.password'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, 1);
    app.teardown().await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_session_and_api_tokens_at_once() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, token) = app.create_user("alice", "Alice-pass-2026").await;
    let alice = app.panel_login("alice", "Alice-pass-2026").await;
    assert_eq!(alice.get("/").await.status, StatusCode::OK);

    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let toggled = admin
        .submit("/admin/users", &format!("/admin/users/{id}/toggle"), &[])
        .await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER);

    let next = alice.get("/").await;
    assert_eq!(next.status, StatusCode::SEE_OTHER);
    assert!(next.location().unwrap().starts_with("/login"));
    let (status, _) = app
        .request(reqwest::Method::GET, "/api/sms", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // And they cannot sign in again.
    let again = alice.login("alice", "Alice-pass-2026").await;
    assert!(again.body.contains("disabled"));
    app.teardown().await;
}
