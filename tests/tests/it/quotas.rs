//! Quotas and allowances (issue #14): `core::quota::charge` against the real PostgreSQL,
//! and the limits as admins set them through the JSON API and the panel. Nothing here sends
//! a message: the charge is exercised in transactions of its own, as the send path will
//! call it inside the message's.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use smsgate_core::quota::{self, QuotaError, QuotaRequest};
use smsgate_shared::domain::Priority;
use smsgate_tests::app::{
    assert_error, create_database, drop_database, hidden_input, TestApp, ADMIN_PASSWORD,
};
use sqlx::PgPool;

/// A migrated database of its own and a user in it; dropped by `finish`.
struct QuotaDb {
    name: String,
    db: PgPool,
    user: i64,
}

impl QuotaDb {
    async fn new() -> QuotaDb {
        let (name, url) = create_database(rand::random()).await;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(12)
            .connect(&url)
            .await
            .unwrap();
        smsgate_core::db::migrate(&db).await.unwrap();
        let user = sqlx::query_scalar(
            "INSERT INTO users (username, password_hash) VALUES ('quota', 'x') RETURNING id",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        QuotaDb { name, db, user }
    }

    /// Sets one of the user's limit columns (test set-up, not the admin path).
    async fn set(&self, column: &str, value: Option<i32>) {
        sqlx::query(&format!("UPDATE users SET {column} = $2 WHERE id = $1"))
            .bind(self.user)
            .bind(value)
            .execute(&self.db)
            .await
            .unwrap();
    }

    /// One charge in a transaction of its own, committed when it succeeds and rolled back
    /// when refused, as the send path does.
    async fn charge(&self, recipients: u32, priority: Priority) -> Result<(), QuotaError> {
        charge_in(&self.db, self.user, recipients, priority, Duration::ZERO).await
    }

    async fn used_today(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(sum(recipients), 0)::bigint FROM user_daily_usage WHERE user_id = $1",
        )
        .bind(self.user)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    async fn counter_rows(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM user_daily_usage WHERE user_id = $1)
                  + (SELECT count(*) FROM user_rate_state WHERE user_id = $1)",
        )
        .bind(self.user)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    async fn finish(self) {
        self.db.close().await;
        drop_database(&self.name).await;
    }
}

/// Charges in a transaction that stays open `hold` after the charge (the message insert
/// that follows it in the send path), then commits; rolls back when refused.
async fn charge_in(
    db: &PgPool,
    user: i64,
    recipients: u32,
    priority: Priority,
    hold: Duration,
) -> Result<(), QuotaError> {
    let mut tx = db.begin().await?;
    let request = QuotaRequest {
        recipients,
        priority,
    };
    match quota::charge(&mut tx, user, &request).await {
        Ok(()) => {
            tokio::time::sleep(hold).await;
            tx.commit().await?;
            Ok(())
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

#[tokio::test]
async fn a_user_without_limits_sending_normal_priority_writes_no_counters() {
    let q = QuotaDb::new().await;
    for _ in 0..3 {
        q.charge(10_000, Priority::Normal).await.unwrap();
    }
    q.charge(1, Priority::Low).await.unwrap();
    assert_eq!(q.counter_rows().await, 0, "no limit, nothing to count");
    q.finish().await;
}

#[tokio::test]
async fn the_daily_limit_refuses_the_request_that_would_pass_it_and_says_until_midnight() {
    let q = QuotaDb::new().await;
    q.set("daily_recipient_limit", Some(10)).await;
    q.charge(6, Priority::Normal).await.unwrap();
    match q.charge(5, Priority::Normal).await {
        Err(QuotaError::DailyLimit {
            limit,
            used,
            retry_after,
        }) => {
            assert_eq!((limit, used), (10, 6));
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(86_400));
        }
        other => panic!("expected the daily limit, got {other:?}"),
    }
    // A refused request is refused whole: what still fits is admitted, up to the limit.
    q.charge(4, Priority::Normal).await.unwrap();
    assert_eq!(q.used_today().await, 10);
    assert!(matches!(
        q.charge(1, Priority::Normal).await,
        Err(QuotaError::DailyLimit { used: 10, .. })
    ));
    q.finish().await;
}

#[tokio::test]
async fn a_request_larger_than_the_daily_limit_is_refused_on_a_fresh_day() {
    let q = QuotaDb::new().await;
    q.set("daily_recipient_limit", Some(10)).await;
    assert!(matches!(
        q.charge(11, Priority::Normal).await,
        Err(QuotaError::DailyLimit {
            limit: 10,
            used: 0,
            ..
        })
    ));
    q.set("daily_recipient_limit", Some(0)).await;
    assert!(matches!(
        q.charge(1, Priority::Normal).await,
        Err(QuotaError::DailyLimit { limit: 0, .. })
    ));
    assert_eq!(q.used_today().await, 0);
    q.finish().await;
}

#[tokio::test]
async fn a_rolled_back_send_counted_nothing() {
    let q = QuotaDb::new().await;
    q.set("daily_recipient_limit", Some(10)).await;
    q.set("requests_per_second", Some(1)).await;
    let mut tx = q.db.begin().await.unwrap();
    let request = QuotaRequest {
        recipients: 10,
        priority: Priority::Normal,
    };
    quota::charge(&mut tx, q.user, &request).await.unwrap();
    tx.rollback().await.unwrap(); // e.g. the message insert failed
    assert_eq!(q.counter_rows().await, 0);

    // The per-second check passes, then the daily limit refuses: the request's second is
    // given back with the rollback, so the next request is not rate limited.
    assert!(matches!(
        q.charge(11, Priority::Normal).await,
        Err(QuotaError::DailyLimit { .. })
    ));
    q.charge(10, Priority::Normal).await.unwrap();
    assert_eq!(q.used_today().await, 10);
    q.finish().await;
}

#[tokio::test]
async fn concurrent_sends_never_pass_the_daily_limit() {
    let q = QuotaDb::new().await;
    q.set("daily_recipient_limit", Some(100)).await;
    // 40 requests of 5 from 12 connections at once, each holding its transaction open a
    // moment after the charge as a message insert would: exactly 100 / 5 get through.
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let db = q.db.clone();
            let user = q.user;
            tokio::spawn(async move {
                charge_in(&db, user, 5, Priority::Normal, Duration::from_millis(5)).await
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(QuotaError::DailyLimit { limit: 100, .. }) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    assert_eq!(admitted, 20);
    assert_eq!(q.used_today().await, 100);
    q.finish().await;
}

#[tokio::test]
async fn requests_beyond_the_per_second_burst_are_rate_limited_with_the_time_to_wait() {
    let q = QuotaDb::new().await;
    q.set("requests_per_second", Some(3)).await;
    let started = std::time::Instant::now();
    let mut admitted = 0;
    let retry_after = loop {
        match q.charge(1, Priority::Normal).await {
            Ok(()) => admitted += 1,
            Err(QuotaError::RateLimited { retry_after }) => break retry_after,
            Err(other) => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(admitted <= 10, "never rate limited");
    };
    // A burst of three, and one more for every 1/3 s the loop took (a loaded machine).
    let refilled = i32::try_from(started.elapsed().as_millis() / 333).unwrap();
    assert!(
        (3..=3 + refilled).contains(&admitted),
        "{admitted} admitted"
    );
    // The next request fits 1/3 s after the last admitted one at most.
    assert!(retry_after > Duration::ZERO, "{retry_after:?}");
    assert!(retry_after <= Duration::from_millis(334), "{retry_after:?}");
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    q.charge(1, Priority::Normal).await.unwrap();
    q.finish().await;
}

#[tokio::test]
async fn concurrent_requests_get_exactly_the_per_second_burst() {
    let q = QuotaDb::new().await;
    q.set("requests_per_second", Some(5)).await;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let db = q.db.clone();
            let user = q.user;
            tokio::spawn(
                async move { charge_in(&db, user, 1, Priority::Normal, Duration::ZERO).await },
            )
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(QuotaError::RateLimited { .. }) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    // Five at once, plus one for every 200 ms the twelve took.
    let refilled = i32::try_from(started.elapsed().as_millis() / 200).unwrap();
    assert!(
        (5..=5 + refilled).contains(&admitted),
        "{admitted} admitted"
    );
    q.finish().await;
}

#[tokio::test]
async fn the_high_priority_allowance_admits_a_minutes_worth_then_refills() {
    let q = QuotaDb::new().await;
    q.set("high_priority_per_minute", Some(10)).await;
    assert!(matches!(
        q.charge(11, Priority::High).await,
        Err(QuotaError::HighPriorityTooLarge { allowance: 10 })
    ));
    q.charge(6, Priority::High).await.unwrap();
    match q.charge(5, Priority::High).await {
        Err(QuotaError::HighPriorityAllowance { retry_after }) => {
            // One recipient refills every 6 s: the fifth fits 6 s after the first six.
            assert!(retry_after > Duration::from_secs(4), "{retry_after:?}");
            assert!(retry_after <= Duration::from_secs(6), "{retry_after:?}");
        }
        other => panic!("expected the allowance to be used up, got {other:?}"),
    }
    q.charge(4, Priority::High).await.unwrap();
    // Other priorities do not touch the allowance.
    q.charge(1_000, Priority::Normal).await.unwrap();
    q.charge(1_000, Priority::Low).await.unwrap();
    assert!(matches!(
        q.charge(1, Priority::High).await,
        Err(QuotaError::HighPriorityAllowance { .. })
    ));
    q.finish().await;
}

#[tokio::test]
async fn an_allowance_of_zero_forbids_high_priority() {
    let q = QuotaDb::new().await;
    q.set("high_priority_per_minute", Some(0)).await;
    assert!(matches!(
        q.charge(1, Priority::High).await,
        Err(QuotaError::HighPriorityTooLarge { allowance: 0 })
    ));
    q.charge(1, Priority::Normal).await.unwrap();
    q.finish().await;
}

#[tokio::test]
async fn the_per_second_limit_is_checked_before_the_high_allowance_and_the_daily_limit() {
    let q = QuotaDb::new().await;
    q.set("requests_per_second", Some(1)).await;
    q.set("high_priority_per_minute", Some(1)).await;
    q.set("daily_recipient_limit", Some(1)).await;
    q.charge(1, Priority::High).await.unwrap();
    // Every limit is used up now; the first one checked answers.
    assert!(matches!(
        q.charge(1, Priority::High).await,
        Err(QuotaError::RateLimited { .. })
    ));
    q.finish().await;
}

// ---- Admins setting the limits -----------------------------------------------------------

#[tokio::test]
async fn the_admin_api_sets_shows_and_clears_sending_limits() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, _) = app.create_user("quinn", "Harbour-42-Lights").await;
    let path = format!("/api/admin/users/{id}");
    let put = |body| app.request(Method::PUT, &path, Some(&app.token), Some(body));

    let (status, user) = app.get("/api/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    let quinn = user["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(quinn["daily_recipient_limit"], json!(null));
    assert_eq!(quinn["requests_per_second"], json!(null));
    assert_eq!(quinn["high_priority_per_minute"], 60);
    assert_eq!(quinn["share_weight"], 1);
    assert_eq!(quinn["default_valid_for"], json!(null));

    let (status, user) = put(json!({
        "daily_recipient_limit": 5000,
        "requests_per_second": 10,
        "high_priority_per_minute": 0,
        "share_weight": 7,
        "default_valid_for": 3600,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["daily_recipient_limit"], 5000);
    assert_eq!(user["requests_per_second"], 10);
    assert_eq!(user["high_priority_per_minute"], 0);
    assert_eq!(user["share_weight"], 7);
    assert_eq!(user["default_valid_for"], 3600);

    // null clears; a field left out stays.
    let (status, user) = put(json!({"daily_recipient_limit": null})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["daily_recipient_limit"], json!(null));
    assert_eq!(user["requests_per_second"], 10);
    assert_eq!(user["default_valid_for"], 3600);

    for (body, field) in [
        (
            json!({"daily_recipient_limit": -1}),
            "daily_recipient_limit",
        ),
        (json!({"requests_per_second": 0}), "requests_per_second"),
        (json!({"share_weight": 101}), "share_weight"),
        (json!({"share_weight": null}), "share_weight"),
        (
            json!({"high_priority_per_minute": null}),
            "high_priority_per_minute",
        ),
        (
            json!({"default_valid_for": 35 * 86_400 + 1}),
            "default_valid_for",
        ),
    ] {
        let (status, answer) = put(body.clone()).await;
        let message = assert_error(
            (status, &answer),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let (status, answer) = put(json!({"daily_limit": 5})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {answer}"
    );

    let stored: (Option<i32>, Option<i32>, i32, i32, Option<i32>) = sqlx::query_as(
        "SELECT daily_recipient_limit, requests_per_second, high_priority_per_minute,
                share_weight, default_valid_for_secs FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (None, Some(10), 0, 7, Some(3600)),
        "refused changes changed nothing"
    );

    let audit: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE target = $1 AND action = 'user.limits' ORDER BY id",
    )
    .bind(format!("user:{id}"))
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(
        audit[1],
        json!({"daily_recipient_limit": {"from": 5000, "to": null}})
    );
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_sets_and_clears_a_limit_in_the_panel() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (id, _) = app.create_user("rita", "Harbour-42-Lights").await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = format!("/admin/users/{id}/limits");
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains(&format!("href=\"{page}\"")));
    let form = admin.get(&page).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Sending limits of rita"));
    assert_eq!(
        hidden_input(&form.body, "daily_recipient_limit").as_deref(),
        Some("")
    );
    assert_eq!(
        hidden_input(&form.body, "high_priority_per_minute").as_deref(),
        Some("60")
    );

    let fields = |daily: &'static str, share: &'static str| {
        [
            ("daily_recipient_limit", daily),
            ("requests_per_second", ""),
            ("high_priority_per_minute", "60"),
            ("share_weight", share),
            ("default_valid_for", "86400"),
        ]
    };
    let saved = admin.submit(&page, &page, &fields("250", "3")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert!(admin
        .get("/admin/users")
        .await
        .body
        .contains("Sending limits of rita saved."));
    let form = admin.get(&page).await;
    assert_eq!(
        hidden_input(&form.body, "daily_recipient_limit").as_deref(),
        Some("250")
    );
    assert_eq!(
        hidden_input(&form.body, "default_valid_for").as_deref(),
        Some("86400")
    );

    // Errors are shown beside their field, with the values as typed.
    let refused = admin.submit(&page, &page, &fields("lots", "3")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("Give a whole number"));
    assert_eq!(
        hidden_input(&refused.body, "daily_recipient_limit").as_deref(),
        Some("lots")
    );
    let refused = admin.submit(&page, &page, &fields("250", "500")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("from 1 to 100"), "{}", refused.body);

    // An empty field clears the limit.
    let cleared = admin.submit(&page, &page, &fields("", "3")).await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.body);
    let stored: (Option<i32>, i32, Option<i32>) = sqlx::query_as(
        "SELECT daily_recipient_limit, share_weight, default_valid_for_secs FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, (None, 3, Some(86_400)));

    // Without the form's CSRF token nothing changes.
    let forged = admin.post_form(&page, &fields("1", "3")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE target = $1 AND action = 'user.limits'",
    )
    .bind(format!("user:{id}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audit, 2);
    app.teardown().await;
}
