//! The one login throttle (panel `/login`, `POST /api/auth/login`, `POST /api/auth`), the
//! bound on password hashing, and the panel's login redirect and session cookie.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_api::settings::Settings as ApiSettings;
use smsgate_core::auth::throttle::IpRange;
use smsgate_tests::app::{hidden_input, test_amqp_url, TestApp, ADMIN_PASSWORD};

/// A stack whose API runs with `change` applied to its test settings (the first API is
/// replaced; the database, queues and the admin's token stay).
pub(crate) async fn spawn_with_settings(change: impl FnOnce(&mut ApiSettings)) -> TestApp {
    let mut app = TestApp::spawn_without_dispatcher().await;
    app.api.take().expect("running API").stop().await;
    let mut settings = ApiSettings::for_tests(&app.database_url, &test_amqp_url(), &app.prefix);
    // As TestApp configured the first API, so the queues it declared match.
    settings.core.queue.retry_schedule = app.options.retry_schedule.clone();
    settings.core.webhook_allow_internal_targets = app.options.allow_internal_webhooks;
    change(&mut settings);
    let api = smsgate_api::start(settings).await.expect("restart the API");
    app.base_url = format!("http://{}", api.addr);
    app.api = Some(api);
    app
}

/// `POST path` with a JSON body, from `address` if given (as our proxy reports it).
async fn post_from(
    app: &TestApp,
    path: &str,
    address: Option<&str>,
    body: Value,
) -> (StatusCode, Value, Option<String>) {
    let mut request = app.http.post(app.url(path)).json(&body);
    if let Some(address) = address {
        request = request.header("x-real-ip", address);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

async fn api_login(
    app: &TestApp,
    address: Option<&str>,
    username: &str,
    password: &str,
) -> (StatusCode, Value, Option<String>) {
    post_from(
        app,
        "/api/auth/login",
        address,
        json!({"username": username, "password": password}),
    )
    .await
}

fn assert_throttled((status, body, retry_after): &(StatusCode, Value, Option<String>)) {
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_ATTEMPTS", "{body}");
    let seconds: u64 = retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&seconds), "Retry-After {seconds}");
}

#[tokio::test]
async fn api_logins_are_throttled_per_username_and_address_with_429_and_retry_after() {
    let app = TestApp::spawn_without_dispatcher().await;
    for _ in 0..5 {
        let (status, body, _) = api_login(&app, None, "SMSadmin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // Even the right password is refused now, without being checked.
    assert_throttled(&api_login(&app, None, "smsadmin", ADMIN_PASSWORD).await);
    app.teardown().await;
}

#[tokio::test]
async fn every_way_to_log_in_shares_one_budget() {
    let app = TestApp::spawn_without_dispatcher().await;
    for _ in 0..2 {
        let (status, ..) = api_login(&app, None, "SMSadmin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let (status, ..) = post_from(
            &app,
            "/api/auth",
            None,
            json!({"username": "SMSadmin", "password": "wrong-password"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let panel = app.panel_client();
    assert_eq!(
        panel.login("SMSadmin", "wrong-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_throttled(
        &post_from(
            &app,
            "/api/auth",
            None,
            json!({"username": "SMSadmin", "password": ADMIN_PASSWORD}),
        )
        .await,
    );
    let page = panel.login("SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers.contains_key("retry-after"));
    assert!(
        page.body.contains("Too many failed sign-in attempts"),
        "{}",
        page.body
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_lockout_from_one_address_never_locks_the_account_for_other_addresses() {
    let app = spawn_with_settings(|s| s.core.login.trust_proxy_headers = true).await;
    let attacker = Some("203.0.113.66");
    for _ in 0..5 {
        let (status, ..) = api_login(&app, attacker, "SMSadmin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&api_login(&app, attacker, "SMSadmin", ADMIN_PASSWORD).await);
    // The admin, from elsewhere, signs in as usual: through the API and the panel.
    let (status, body, _) = api_login(&app, Some("198.51.100.7"), "SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let panel = app.panel_client();
    let form = panel.get("/login").await;
    let token = hidden_input(&form.body, "csrf_token").unwrap();
    let response = panel
        .http
        .post(app.url("/login"))
        .header("x-real-ip", "198.51.100.7")
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "SMSadmin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.teardown().await;
}

#[tokio::test]
async fn behind_the_proxy_the_right_most_forwarded_for_entry_is_counted_not_a_forged_one() {
    let app = spawn_with_settings(|s| s.core.login.trust_proxy_headers = true).await;
    // A client rotating a forged left-most X-Forwarded-For entry is still one address.
    for i in 0..5 {
        let response = app
            .http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", format!("10.9.9.{i}, 203.0.113.9"))
            .json(&json!({"username": "SMSadmin", "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app
        .http
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", "10.9.9.99, 203.0.113.9")
        .json(&json!({"username": "SMSadmin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    app.teardown().await;
}

#[tokio::test]
async fn proxy_headers_from_a_peer_that_is_not_a_trusted_proxy_are_ignored() {
    // Headers trusted, but our proxy is elsewhere: the test client (loopback) is not it.
    let app = spawn_with_settings(|s| {
        s.core.login.trust_proxy_headers = true;
        s.core.login.trusted_proxies = vec![IpRange::parse("192.0.2.10").unwrap()];
    })
    .await;
    // A client forging a fresh X-Real-IP / X-Forwarded-For per attempt is still one address.
    for i in 0..5 {
        let response = app
            .http
            .post(app.url("/api/auth/login"))
            .header("x-real-ip", format!("203.0.113.{i}"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"username": "SMSadmin", "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&api_login(&app, Some("203.0.113.200"), "SMSadmin", ADMIN_PASSWORD).await);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM login_attempts WHERE scope = 'address'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(keys, ["127.0.0.1"]);
    app.teardown().await;
}

#[tokio::test]
async fn an_ipv6_client_rotating_addresses_in_its_64_stays_one_budget() {
    let app = spawn_with_settings(|s| s.core.login.trust_proxy_headers = true).await;
    for i in 1..=5 {
        let address = format!("2001:db8:1:2::{i:x}");
        let (status, ..) = api_login(&app, Some(&address), "SMSadmin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(
        &api_login(
            &app,
            Some("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "SMSadmin",
            ADMIN_PASSWORD,
        )
        .await,
    );
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM login_attempts WHERE key LIKE '2001:%'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"2001:db8:1:2::/64".to_owned()), "{keys:?}");
    // The next /64 is someone else.
    let (status, body, _) =
        api_login(&app, Some("2001:db8:1:3::1"), "SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.teardown().await;
}

#[tokio::test]
async fn parallel_wrong_logins_cannot_slip_past_the_limit() {
    // Debug-build argon2 is slow: give the checked attempts time to finish.
    let app = spawn_with_settings(|s| s.request_timeout = Duration::from_secs(120)).await;
    let attempts = (0..12).map(|_| api_login(&app, None, "SMSadmin", "wrong-password"));
    let results = futures::future::join_all(attempts).await;
    let checked = results
        .iter()
        .filter(|(status, ..)| *status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = results
        .iter()
        .filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 5,
        "{checked} passwords were checked, the limit is 5"
    );
    assert_eq!(checked + refused, 12);
    let stored: i32 =
        sqlx::query_scalar("SELECT failures FROM login_attempts WHERE scope = 'user_address'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored as usize, checked);
    app.teardown().await;
}

#[tokio::test]
async fn the_per_address_budget_stops_password_spraying_through_the_api() {
    let app = TestApp::spawn_without_dispatcher().await;
    for i in 0..20 {
        let (status, ..) = api_login(&app, None, &format!("user{i}"), "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&api_login(&app, None, "SMSadmin", ADMIN_PASSWORD).await);
    app.teardown().await;
}

#[tokio::test]
async fn a_successful_login_clears_its_failures_and_does_not_use_up_the_address() {
    let app = TestApp::spawn_without_dispatcher().await;
    for _ in 0..4 {
        api_login(&app, None, "SMSadmin", "wrong-password").await;
    }
    let (status, ..) = api_login(&app, None, "SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..4 {
        let (status, ..) = api_login(&app, None, "SMSadmin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, ..) = api_login(&app, None, "SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    // Only the eight failures count against the address, not the two good logins.
    let address: i32 =
        sqlx::query_scalar("SELECT failures FROM login_attempts WHERE scope = 'address'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(address, 8);
    app.teardown().await;
}

#[tokio::test]
async fn windows_long_over_are_swept() {
    let app = TestApp::spawn_without_dispatcher().await;
    sqlx::query(
        "INSERT INTO login_attempts (scope, key, failures, window_start)
         VALUES ('address', '192.0.2.1', 20, now() - interval '2 days')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    api_login(&app, None, "SMSadmin", "wrong-password").await;
    let old: i64 =
        sqlx::query_scalar("SELECT count(*) FROM login_attempts WHERE key = '192.0.2.1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(old, 0);
    app.teardown().await;
}

#[tokio::test]
async fn refused_attempts_leave_no_rows_behind_and_sweep_windows_long_over() {
    let app = TestApp::spawn_without_dispatcher().await;
    // This address has used up its budget; another's window ended two days ago.
    sqlx::query(
        "INSERT INTO login_attempts (scope, key, failures, window_start)
         VALUES ('address', '127.0.0.1', 20, now()),
                ('address', '192.0.2.1', 20, now() - interval '2 days')
         ON CONFLICT (scope, key) DO UPDATE SET failures = 20, window_start = now()",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // A sprayer keeps trying new usernames: each is refused and must not add a row.
    for i in 0..5 {
        assert_throttled(&api_login(&app, None, &format!("spray{i}"), "wrong-password").await);
    }
    let rows: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT scope, key, failures FROM login_attempts ORDER BY scope, key")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [("address".to_owned(), "127.0.0.1".to_owned(), 20)],
        "refused attempts left rows, or the old window was not swept"
    );
    app.teardown().await;
}

#[tokio::test]
async fn guesses_at_the_current_password_on_the_account_page_are_throttled_like_logins() {
    let app = TestApp::spawn_without_dispatcher().await;
    let panel = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let change = |current: &'static str| {
        let panel = &panel;
        async move {
            panel
                .submit(
                    "/account/password",
                    "/account/password",
                    &[
                        ("current", current),
                        ("new_password", "Harbour-Lights-42"),
                        ("confirm", "Harbour-Lights-42"),
                    ],
                )
                .await
        }
    };
    for _ in 0..5 {
        let wrong = change("wrong-password").await;
        assert_eq!(
            wrong.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            wrong.body
        );
    }
    // The sixth guess is not checked, even with the right password.
    let refused = change(ADMIN_PASSWORD).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        refused.body.contains("Too many failed sign-in attempts"),
        "{}",
        refused.body
    );
    // It is the login budget: signing in as the admin from here is refused too.
    assert_throttled(&api_login(&app, None, "SMSadmin", ADMIN_PASSWORD).await);
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'account.password'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(changes, 0, "the password must not have changed");
    app.teardown().await;
}

#[tokio::test]
async fn a_right_current_password_gives_its_charge_back() {
    let app = TestApp::spawn_without_dispatcher().await;
    let panel = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let changed = panel
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
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM login_attempts WHERE failures > 0")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    app.teardown().await;
}

#[tokio::test]
async fn an_overlong_password_is_refused_before_hashing_with_400() {
    let app = TestApp::spawn_without_dispatcher().await;
    let long = "x".repeat(1025);
    for path in ["/api/auth/login", "/api/auth"] {
        let (status, body, _) = post_from(
            &app,
            path,
            None,
            json!({"username": "SMSadmin", "password": long}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "PASSWORD_TOO_LONG", "{path}");
    }
    app.teardown().await;
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_slots_gets_a_quick_503_busy() {
    let app = spawn_with_settings(|s| {
        s.core.login.password_hash_concurrency = 1;
        s.core.login.password_hash_wait = Duration::from_millis(1);
        s.core.login.max_failures_per_user_address = 1000;
        s.core.login.max_failures_per_address = 1000;
    })
    .await;
    let attempts = (0..8).map(|_| api_login(&app, None, "SMSadmin", "wrong-password"));
    let results = futures::future::join_all(attempts).await;
    let busy: Vec<_> = results
        .iter()
        .filter(|(status, ..)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !busy.is_empty(),
        "one slot, eight parallel logins: some must be refused"
    );
    for (_, body, retry_after) in &busy {
        assert_eq!(body["error"]["code"], "BUSY");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    assert!(results
        .iter()
        .any(|(status, ..)| *status == StatusCode::UNAUTHORIZED));
    // A refused attempt checked nothing, so it is not counted as a failure.
    let counted: i32 =
        sqlx::query_scalar("SELECT failures FROM login_attempts WHERE scope = 'user_address'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(counted as usize, results.len() - busy.len());
    app.teardown().await;
}

#[tokio::test]
async fn a_next_parameter_a_browser_would_send_to_another_host_redirects_home() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_client();
    let form = client.get("/login?next=/%09/evil.example").await;
    assert_eq!(hidden_input(&form.body, "next").as_deref(), Some(""));
    for next in [
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let client = app.panel_client();
        let form = client.get("/login").await;
        let token = hidden_input(&form.body, "csrf_token").unwrap();
        let response = client
            .post_form(
                "/login",
                &[
                    ("csrf_token", token.as_str()),
                    ("username", "SMSadmin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(response.location(), Some("/"), "{next:?}");
    }
    let client = app.panel_client();
    let form = client.get("/login?next=/history%3Fstatus%3Dsent").await;
    let token = hidden_input(&form.body, "csrf_token").unwrap();
    let next = hidden_input(&form.body, "next").unwrap();
    let response = client
        .post_form(
            "/login",
            &[
                ("csrf_token", token.as_str()),
                ("username", "SMSadmin"),
                ("password", ADMIN_PASSWORD),
                ("next", next.as_str()),
            ],
        )
        .await;
    assert_eq!(response.location(), Some("/history?status=sent"));
    app.teardown().await;
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_prefixed_secure_and_works() {
    let app = spawn_with_settings(|s| s.panel.cookie_secure = true).await;
    // The login form's CSRF cookie is host-bound too, so no sibling subdomain can plant one.
    let form = app.http.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("sg_login_csrf="))
        .expect("login CSRF cookie");
    assert!(
        csrf_cookie.starts_with("__Host-sg_login_csrf="),
        "{csrf_cookie}"
    );
    assert!(csrf_cookie.contains("Secure"), "{csrf_cookie}");
    let client = app.panel_client();
    let response = client.login("SMSadmin", ADMIN_PASSWORD).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let cookie = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("sg_session="))
        .expect("session cookie");
    assert!(cookie.starts_with("__Host-sg_session="), "{cookie}");
    for attribute in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let raw = cookie["__Host-sg_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // A browser sends it back only over HTTPS; our proxy forwards it as it came.
    let signed_in = app
        .http
        .get(app.url("/"))
        .header("cookie", format!("__Host-sg_session={raw}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.url().path(), "/");
    assert_eq!(signed_in.status(), StatusCode::OK);
    // The plain name means nothing here.
    let plain = app
        .http
        .get(app.url("/"))
        .header("cookie", format!("sg_session={raw}"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.url().path(), "/login");
    app.teardown().await;
}
