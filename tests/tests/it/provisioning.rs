//! First start: migrations and the default admin.

use smsgate_core::auth::service::{
    ensure_default_admin, login, DefaultAdmin, LoginLimits, DEFAULT_ADMIN,
};
use smsgate_core::auth::LoginSettings;
use smsgate_core::auth::{JwtKeys, PasswordGate};
use smsgate_tests::app::{create_database, drop_database};

/// What a login needs beside the database: default throttle and an ample hashing bound.
fn limits<'a>(settings: &'a LoginSettings, gate: &'a PasswordGate) -> LoginLimits<'a> {
    LoginLimits { settings, gate }
}

async fn fresh_migrated_database() -> (String, sqlx::PgPool) {
    let (name, url) = create_database(rand::random()).await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    smsgate_api::migrate(&db).await.unwrap();
    (name, db)
}

#[tokio::test]
async fn first_start_without_admin_password_generates_one_that_must_be_changed() {
    let (name, db) = fresh_migrated_database().await;
    let DefaultAdmin::CreatedWithGeneratedPassword(password) =
        ensure_default_admin(&db, None).await.unwrap()
    else {
        panic!("expected a generated password");
    };
    assert!(password.len() >= 16);
    let must_change: bool =
        sqlx::query_scalar("SELECT must_change_password FROM users WHERE username = $1")
            .bind(DEFAULT_ADMIN)
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        must_change,
        "the panel must force a new password at first login"
    );
    let keys = JwtKeys::new(b"k", chrono::Duration::hours(24));
    let (settings, gate) = (
        LoginSettings::default(),
        PasswordGate::new(1, std::time::Duration::from_secs(60)),
    );
    let session = login(
        &db,
        &keys,
        limits(&settings, &gate),
        DEFAULT_ADMIN,
        &password,
        "127.0.0.1",
    )
    .await
    .unwrap();
    assert!(session.user.is_admin);

    // Later starts leave the admin alone.
    assert_eq!(
        ensure_default_admin(&db, Some("other")).await.unwrap(),
        DefaultAdmin::AlreadyProvisioned
    );
    db.close().await;
    drop_database(&name).await;
}

#[tokio::test]
async fn first_start_with_admin_password_uses_it_and_audits_the_creation() {
    let (name, db) = fresh_migrated_database().await;
    let created = ensure_default_admin(&db, Some("SMSpass#12")).await.unwrap();
    assert_eq!(created, DefaultAdmin::CreatedWithConfiguredPassword);
    let keys = JwtKeys::new(b"k", chrono::Duration::hours(24));
    let (settings, gate) = (
        LoginSettings::default(),
        PasswordGate::new(1, std::time::Duration::from_secs(60)),
    );
    assert!(
        login(
            &db,
            &keys,
            limits(&settings, &gate),
            "smsadmin",
            "SMSpass#12",
            "127.0.0.1"
        )
        .await
        .is_ok(),
        "usernames match regardless of case"
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'user.create'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(audited, 1);
    db.close().await;
    drop_database(&name).await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let (name, db) = fresh_migrated_database().await;
    smsgate_api::migrate(&db).await.unwrap();
    db.close().await;
    drop_database(&name).await;
}
