//! The edge gateway's system calls: `GET /api/statistics` and `GET /api/logs`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, TestApp};
use smsgate_tests::modem_sim::EdgeApp;

/// Stores one received SMS on `sim_id` as the dispatcher's edge ingest would.
async fn receive(app: &TestApp, sim_id: i64, sim_number: &str, key: &str) {
    sqlx::query(
        "INSERT INTO inbound_messages (sim_card_id, sim_number, sender, content, received_at, dedupe_key)
         VALUES ($1, $2, '+85290000001', 'hello', now(), $3)",
    )
    .bind(sim_id)
    .bind(sim_number)
    .bind(key)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn statistics(app: &TestApp, token: &str) -> Value {
    let (status, body) = app
        .request(Method::GET, "/api/statistics", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn statistics_count_messages_sims_and_days_and_scope_them_to_the_caller() {
    let app = TestApp::spawn().await;
    let sim = app.create_sim("6111 0101").await;
    let first = app.send_sms("9123 4567", "to HKT").await;
    let second = app.send_sms("9123 4568", "to HKT again").await;
    for id in [first, second] {
        app.wait_until_final(id, Duration::from_secs(20)).await;
    }
    // Through the SIM, whose agent is not running: its three recipients stay pending.
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["91230001", "91230002", "91230003"], "content": "via SIM", "sim_card_id": sim}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    receive(&app, sim, "+85261110101", "k1").await;

    let stats = statistics(&app, &app.token).await;
    let messages = &stats["messages"];
    assert_eq!(messages["outgoing"], 3, "{stats}");
    assert_eq!(messages["incoming"], 1, "{stats}");
    assert_eq!(messages["total"], 4, "{stats}");
    assert_eq!(
        messages["today"],
        json!({"sent": 2, "failed": 0, "pending": 3})
    );

    let daily = stats["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 7, "{stats}");
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(daily[6]["date"], today.as_str());
    assert_eq!(daily[6]["outgoing"], 3);
    assert_eq!(daily[6]["recipients"], 5);
    assert_eq!(daily[6]["incoming"], 1);
    assert!(daily[..6].iter().all(|d| d["outgoing"] == 0));

    let sims = &stats["sim_cards"];
    assert_eq!(sims["total"], 1);
    assert_eq!(sims["active"], 1);
    assert_eq!(sims["online"], 0);
    let card = &sims["cards"][0];
    assert_eq!(card["number"], "+85261110101");
    assert_eq!(card["received"], 1);
    assert_eq!(card["sent"], 0);

    assert!(stats["database"]["size_bytes"].as_i64().unwrap() > 1_000_000);
    let memory = &stats["memory"];
    assert!(memory["total_bytes"].as_u64().unwrap() >= memory["available_bytes"].as_u64().unwrap());
    assert!(memory["api_rss_bytes"].as_u64().unwrap() > 0);
    assert!(stats["queue"]["hkt_depth"].is_u64(), "{stats}");

    // Pollers are served the same figures for 10 s: a send right after doesn't show yet.
    app.send_sms("9123 4570", "after the figures").await;
    assert_eq!(
        statistics(&app, &app.token).await,
        stats,
        "served again as computed"
    );

    // Another user sees only their own messages; the SIM and host figures are shared.
    let (_, other) = app
        .create_user("fieldstaff", "a long enough password")
        .await;
    app.send_sms_as(&other, "91234569", "mine").await;
    let theirs = statistics(&app, &other).await;
    assert_eq!(theirs["messages"]["outgoing"], 1, "{theirs}");
    assert_eq!(theirs["daily"][6]["outgoing"], 1);
    assert_eq!(theirs["sim_cards"]["cards"][0]["received"], 1);

    let (status, body) = app
        .request(Method::GET, "/api/statistics", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    app.teardown().await;
}

#[tokio::test]
async fn logs_record_sim_changes_newest_first_and_each_user_reads_their_own() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let sim = app.create_sim("6111 0202").await;
    let path = format!("/api/sim-cards/{sim}");
    let (status, _) = app
        .request(
            Method::PUT,
            &path,
            Some(&app.token),
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .request(Method::DELETE, &path, Some(&app.token), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.get("/api/logs?action=sim").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 3, "{body}");
    let logs = body["logs"].as_array().unwrap();
    let actions: Vec<&str> = logs.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["sim.delete", "sim.update", "sim.create"]);
    for entry in logs {
        assert_eq!(entry["sender_sim"], "+85261110202", "{entry}");
        assert_eq!(entry["actor"], "SMSadmin");
        assert_eq!(entry["status"], "success");
        assert_eq!(entry["target"], format!("sim:{sim}"));
        assert!(entry["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(logs[1]["details"]["changed"]["status"], "inactive");
    assert_eq!(logs[1]["details"]["status"], "inactive");
    assert_eq!(logs[0]["details"]["forced"], false);

    let (_, body) = app.get("/api/logs?action=sim&per_page=2&page=2").await;
    assert_eq!(body["pages"], 2);
    assert_eq!(body["current_page"], 2);
    assert_eq!(body["logs"].as_array().unwrap().len(), 1);
    assert_eq!(body["logs"][0]["action"], "sim.create");
    let (_, body) = app.get("/api/logs?action=sim.update").await;
    assert_eq!(body["total"], 1, "{body}");

    // A user who is not an admin reads only their own actions: none of the admin's. SIM
    // changes are for admins since issue #13, so their refused attempt records nothing.
    let (_, other) = app
        .create_user("fieldstaff", "a long enough password")
        .await;
    let (status, _) = app
        .request(
            Method::POST,
            "/api/sim-cards",
            Some(&other),
            Some(json!({"number": "61110303"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = app
        .request(Method::GET, "/api/logs", Some(&other), None)
        .await;
    assert_eq!(body["total"], 0, "{body}");
    assert_eq!(body["logs"], json!([]), "{body}");

    let (status, body) = app.get("/api/logs?action=sim%25").await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_ACTION");
    let (status, body) = app.get("/api/logs?page=x").await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_QUERY");
    let (status, _) = app.request(Method::GET, "/api/logs", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.teardown().await;
}
