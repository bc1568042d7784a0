//! deploy/backup: a dump of a live stack's database restores into a fresh database that
//! holds the same users, messages, recipients and webhooks, and an API and a dispatcher
//! started on it come up and send what was still in flight at dump time.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::json;
use smsgate_tests::app::{
    create_database, drop_database, test_amqp_url, test_broker_admin, TestApp,
};

const DEADLINE: Duration = Duration::from_secs(30);

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/backup/{name}"))
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("run the script");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn count(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

#[tokio::test]
async fn a_dump_restores_into_a_fresh_database_that_an_api_serves_and_finishes_sending() {
    let mut app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("backup_user", "Backup#pass12").await;
    let sent = app
        .send_bulk(&["51230001".into(), "51230002".into()], "before the dump")
        .await;
    assert_eq!(app.wait_until_final(sent, DEADLINE).await["status"], "sent");
    let (status, body) = app
        .request(
            Method::POST,
            "/api/webhooks",
            Some(&user_token),
            Some(json!({"url": "http://127.0.0.1:9/hook", "description": "kept"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A recipient in flight at dump time: released to the broker, never sent (no
    // dispatcher), so the release queue no longer holds it.
    app.kill_dispatcher().await;
    let in_flight = app.send_sms("51230003", "in flight").await;
    let start = Instant::now();
    while count(
        &app.db,
        &format!("SELECT count(*) FROM message_outbox WHERE message_id = {in_flight}"),
    )
    .await
        > 0
    {
        assert!(start.elapsed() < DEADLINE, "the message was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let suffix: u64 = rand::thread_rng().gen();
    let dir = std::env::temp_dir().join(format!("smsgate-backup-{suffix:016x}"));
    let mut backup = Command::new("bash");
    backup
        .arg(script("backup.sh"))
        .env("DATABASE_URL", &app.database_url)
        .env("BACKUP_DIR", &dir);
    let dump = String::from_utf8(run(backup).stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(dump.ends_with(".dump"), "{dump}");
    assert!(PathBuf::from(format!("{dump}.sha256")).exists());

    let (restored_name, restored_url) = create_database(suffix).await;
    let restore = || {
        let mut restore = Command::new("bash");
        restore
            .arg(script("restore.sh"))
            .arg(&dump)
            .env("DATABASE_URL", &restored_url);
        restore
    };
    run(restore());
    let again = restore().output().unwrap();
    assert!(
        !again.status.success(),
        "a second restore over it is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("RESTORE_FORCE=1"));

    let restored = sqlx::PgPool::connect(&restored_url).await.unwrap();
    assert_eq!(
        count(
            &restored,
            "SELECT count(*) FROM users WHERE username = 'backup_user'"
        )
        .await,
        1
    );
    assert_eq!(count(&restored, "SELECT count(*) FROM messages").await, 2);
    let statuses: Vec<(i64, String)> =
        sqlx::query_as("SELECT message_id, status FROM recipients ORDER BY id")
            .fetch_all(&restored)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![
            (sent, "sent".into()),
            (sent, "sent".into()),
            (in_flight, "pending".into())
        ]
    );
    assert_eq!(
        count(
            &restored,
            "SELECT count(*) FROM webhooks WHERE description = 'kept'"
        )
        .await,
        1
    );
    // The in-flight recipient is back in the release queue: its job may be gone with
    // the broker, and a duplicate is skipped once it is sent.
    assert_eq!(
        count(
            &restored,
            &format!("SELECT count(*) FROM message_outbox WHERE message_id = {in_flight}")
        )
        .await,
        1
    );
    // Ids move ahead of everything handed out before the loss, so a job or token that
    // names an id from after the dump finds nothing rather than someone else's row.
    assert!(
        count(&restored, "SELECT nextval('recipients_id_seq')").await > 1_000_000,
        "sequences jump ahead"
    );
    app.stop_processes().await;

    // An API and a dispatcher on the restored database, under a prefix of their own.
    let prefix = format!("t{suffix:016x}r");
    let mut api_settings =
        smsgate_api::settings::Settings::for_tests(&restored_url, &test_amqp_url(), &prefix);
    api_settings.core.broker_admin = Some(test_broker_admin());
    let api = smsgate_api::start(api_settings)
        .await
        .expect("the API starts on the restored database");
    let dispatcher = smsgate_dispatcher::start(smsgate_dispatcher::settings::Settings::for_tests(
        &restored_url,
        &test_amqp_url(),
        &prefix,
        &app.mock.gateway_url(),
    ))
    .await
    .expect("a dispatcher starts on the restored database");
    app.base_url = format!("http://{}", api.addr);
    let token = app.login("backup_user", "Backup#pass12").await;
    assert!(!token.is_empty());
    let message = app.wait_until_final(in_flight, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    assert!(app
        .mock
        .received()
        .iter()
        .any(|r| r.mrt.ends_with("51230003") && r.status == 200));

    dispatcher.stop().await;
    api.stop().await;
    restored.close().await;
    drop_database(&restored_name).await;
    let _ = std::fs::remove_dir_all(&dir);
    app.teardown().await;
}
