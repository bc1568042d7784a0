//! `/api/opt-outs` (issue #16 item 4): each user's own list and the global one, listed,
//! added to, removed from and imported into from CSV; and sends honouring what the API
//! listed: a listed recipient ends `opted_out`, counted, and never reaches the gateway.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, TestApp};

/// `POST /api/opt-outs/import?{query}` with `csv` as the body, as `token`.
async fn import(app: &TestApp, token: &str, query: &str, csv: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .post(app.url(&format!("/api/opt-outs/import?{query}")))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("import sent");
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn add(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.request(Method::POST, "/api/opt-outs", Some(token), Some(body))
        .await
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let (status, body) = app
        .request(
            Method::GET,
            &format!("/api/opt-outs?{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    body["data"].clone()
}

fn phones(data: &Value) -> Vec<String> {
    data["opt_outs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phone_number"].as_str().unwrap().to_owned())
        .collect()
}

async fn remove(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    app.request(Method::DELETE, path, Some(token), None).await
}

/// The audit entries of the opt-out lists: (action, target).
async fn audit(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, target FROM audit_log WHERE action LIKE 'opt_out.%' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_lists_adds_and_removes_numbers_of_their_own_list() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, bob) = app.create_user("bob", "bob-password-1").await;
    let (_, carol) = app.create_user("carol", "carol-password-1").await;

    // A local-form number is stored and answered as E.164.
    let (status, body) = add(&app, &bob, json!({"phone_number": "9123 4567"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["phone_number"], "+85291234567");
    assert_eq!(body["data"]["scope"], "user");
    assert_eq!(body["data"]["source"], "api");
    let created_at = body["data"]["created_at"].as_str().unwrap().to_owned();
    assert!(chrono::DateTime::parse_from_rfc3339(&created_at).is_ok());
    let stored: Vec<String> = sqlx::query_scalar("SELECT phone FROM opt_outs")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, ["+85291234567"]);

    // Again, in E.164: already listed, 200 with the first entry.
    let (status, again) = add(
        &app,
        &bob,
        json!({"phone_number": "+85291234567", "scope": "user"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["created_at"], created_at);

    let (status, body) = add(&app, &bob, json!({"phone_number": "61234567"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = add(&app, &bob, json!({"phone_number": "+8529043628"})).await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_PHONE_NUMBER",
    );

    let mine = list(&app, &bob, "").await;
    assert_eq!(
        phones(&mine),
        ["+85261234567", "+85291234567"],
        "newest first"
    );
    assert_eq!(mine["total"], 2);
    assert_eq!(mine["pages"], 1);
    assert_eq!(mine["current_page"], 1);
    // Paged and searched by digits.
    let page2 = list(&app, &bob, "per_page=1&page=2").await;
    assert_eq!(phones(&page2), ["+85291234567"]);
    assert_eq!(page2["pages"], 2);
    let found = list(&app, &bob, "q=9123").await;
    assert_eq!(phones(&found), ["+85291234567"]);
    assert_eq!(found["total"], 1);
    let (status, body) = app
        .request(Method::GET, "/api/opt-outs?q=9%25", Some(&bob), None)
        .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_QUERY");
    // Lists are personal.
    assert!(phones(&list(&app, &carol, "").await).is_empty());

    // Removed by its URL-encoded E.164 form or its local form.
    let (status, _) = remove(&app, &bob, "/api/opt-outs/%2B85291234567").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = remove(&app, &bob, "/api/opt-outs/91234567").await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    // Carol cannot remove Bob's entry: it is not on her list.
    let (status, body) = remove(&app, &carol, "/api/opt-outs/61234567").await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(phones(&list(&app, &bob, "").await), ["+85261234567"]);
    assert!(audit(&app).await.is_empty(), "own lists are not audited");
    app.teardown().await;
}

#[tokio::test]
async fn only_admins_change_the_global_list_which_everyone_reads() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (_, bob) = app.create_user("bob", "bob-password-1").await;

    let (status, body) = add(
        &app,
        &bob,
        json!({"phone_number": "91234567", "scope": "global"}),
    )
    .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    let (status, body) = import(&app, &bob, "scope=global", "91234567\n").await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");

    let (status, body) = add(
        &app,
        &app.token,
        json!({"phone_number": "91234567", "scope": "global"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["scope"], "global");
    assert_eq!(body["data"]["source"], "admin");
    // A reply's opt-out, as the edge ingest makes it.
    sqlx::query(
        "INSERT INTO opt_outs (phone, user_id, source) VALUES ('+85261234567', NULL, 'reply')",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let global = list(&app, &bob, "scope=global").await;
    assert_eq!(phones(&global), ["+85261234567", "+85291234567"]);
    assert_eq!(global["opt_outs"][0]["source"], "reply");
    assert!(phones(&list(&app, &bob, "").await).is_empty());
    assert!(
        phones(&list(&app, &app.token, "").await).is_empty(),
        "not the admin's own list"
    );

    let (status, body) = remove(&app, &bob, "/api/opt-outs/91234567?scope=global").await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    // An admin lifts a reply's opt-out too.
    let (status, _) = remove(&app, &app.token, "/api/opt-outs/61234567?scope=global").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = remove(&app, &app.token, "/api/opt-outs/61234567?scope=global").await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = import(
        &app,
        &app.token,
        "scope=global",
        "phone\n91234567\n51234567\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({"added": 1, "already_listed": 1}));
    assert_eq!(
        audit(&app).await,
        [
            ("opt_out.add".into(), "opt_out:+85291234567".into()),
            ("opt_out.remove".into(), "opt_out:+85261234567".into()),
            ("opt_out.import".into(), "opt_outs:global".into()),
        ]
    );
    let (status, body) = app
        .request(Method::GET, "/api/opt-outs?scope=all", Some(&bob), None)
        .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_QUERY");
    app.teardown().await;
}

#[tokio::test]
async fn an_import_is_all_or_nothing_and_names_every_bad_line() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (bob_id, bob) = app.create_user("bob", "bob-password-1").await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM opt_outs WHERE user_id = $1")
            .bind(bob_id)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };

    let bad = "name,phone\nAlice,91234567\nBob,not a number\nCarol,61234567\nDan,+8529043628\n";
    let (status, body) = import(&app, &bob, "", bad).await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_CSV");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("line 5"), "{message}");
    assert!(!message.contains("line 2 "), "{message}");
    assert_eq!(count().await, 0, "nothing imported");

    // The named column, a header row, a number twice and one listed already.
    let (status, _) = add(&app, &bob, json!({"phone_number": "51234567"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let good = "name,mobile\nAlice,91234567\n\"Bob, Jr\",\"6123 4567\"\nCarol,+85291234567\nDan,51234567\n";
    let (status, body) = import(&app, &bob, "column=mobile", good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({"added": 2, "already_listed": 1}));
    assert_eq!(count().await, 3);

    // A column that is not there; two columns and none named.
    let (status, body) = import(&app, &bob, "column=fax", good).await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_CSV");
    let (status, body) = import(&app, &bob, "", "a,b\n91234567,x\n").await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "INVALID_CSV");
    // Not UTF-8: named by its line.
    let response = app
        .http
        .post(app.url("/api/opt-outs/import"))
        .bearer_auth(&bob)
        .body(b"91234567\n6123\xff4567\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
    // Larger than the import's bound: 413 before anything is read.
    let huge = "91234567\n".repeat(smsgate_core::optout::MAX_IMPORT_BYTES / 9 + 1);
    let (status, body) = import(&app, &bob, "", &huge).await;
    assert_error(
        (status, &body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(count().await, 3);
    app.teardown().await;
}

#[tokio::test]
async fn a_number_listed_through_the_api_ends_opted_out_until_it_is_removed() {
    let app = TestApp::spawn().await;
    let (_, bob) = app.create_user("bob", "bob-password-1").await;
    let (status, body) = add(&app, &bob, json!({"phone_number": "91110001"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = add(
        &app,
        &app.token,
        json!({"phone_number": "91110002", "scope": "global"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = app
        .request(
            Method::POST,
            "/api/sms/send-bulk",
            Some(&bob),
            Some(json!({"recipients": ["91110001", "91110002", "91110003"], "content": "listed"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let first = body["data"]["id"].as_i64().unwrap();
    let message = wait_final_as(&app, &bob, first).await;
    assert_eq!(message["status"], "partial", "{message}");
    assert_eq!(message["opted_out_count"], 2, "{message}");
    assert_eq!(message["success_count"], 1, "{message}");
    let rows = app.recipient_rows(first).await;
    assert_eq!(
        rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["opted_out", "opted_out", "sent"]
    );
    assert!(app.mock.received_for("85291110001").is_empty());
    assert!(app.mock.received_for("85291110002").is_empty());
    assert_eq!(app.mock.received_for("85291110003").len(), 1);

    // Off both lists: the next send goes through.
    let (status, _) = remove(&app, &bob, "/api/opt-outs/91110001").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = remove(&app, &app.token, "/api/opt-outs/91110002?scope=global").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let second = app.send_sms_as(&bob, "91110001", "removed").await;
    let third = app.send_sms_as(&bob, "91110002", "removed").await;
    for id in [second, third] {
        let message = wait_final_as(&app, &bob, id).await;
        assert_eq!(message["status"], "sent", "{message}");
        assert_eq!(message["opted_out_count"], 0, "{message}");
    }
    let received = app.mock.received_for("85291110001");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].msg_utf8, "removed");
    assert_eq!(app.mock.received_for("85291110002").len(), 1);
    app.teardown().await;
}

/// Polls `GET /api/sms/{id}` as `token` until the message is final.
async fn wait_final_as(app: &TestApp, token: &str, id: i64) -> Value {
    for _ in 0..300 {
        let (status, body) = app
            .request(Method::GET, &format!("/api/sms/{id}"), Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let done = ["sent", "failed", "partial", "cancelled", "expired"];
        if done.contains(&body["data"]["status"].as_str().unwrap_or_default()) {
            return body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("message {id} not final in 30 s");
}
