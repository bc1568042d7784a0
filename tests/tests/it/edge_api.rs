//! The edge gateway's API: SIM cards, routing errors, and its own clients' calls.

use reqwest::{Method, StatusCode};
use serde_json::json;
use smsgate_tests::app::TestApp;
use smsgate_tests::modem_sim::{EdgeApp, ModemSim};

#[tokio::test]
async fn sim_cards_are_registered_listed_updated_and_deleted() {
    let app = TestApp::spawn_with(smsgate_tests::app::TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let id = app.create_sim("6111 0002").await;
    let sim = app.sim(id).await;
    assert_eq!(sim["number"], "+85261110002");
    assert_eq!(sim["status"], "active");
    assert_eq!(sim["online"], false);
    assert!(sim["last_heartbeat"].is_null());

    let (status, body) = app
        .post("/api/sim-cards", json!({"number": "61110002"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "SIM_NUMBER_TAKEN");
    let (status, body) = app
        .post("/api/sim-cards", json!({"number": "6111-0002"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/sim-cards/{id}"),
            Some(&app.token),
            Some(json!({"status": "inactive", "label": "Pi in the basement"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "inactive");
    assert_eq!(body["label"], "Pi in the basement");

    // Routing: unknown SIM 400, inactive SIM 409.
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "message": "x", "sim_card_id": 999999}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "UNKNOWN_SIM_CARD");
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "message": "x", "sim_card_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "SIM_CARD_INACTIVE");

    // Queued jobs block a plain delete; forcing fails them so none stays pending for ever.
    app.request(
        Method::PUT,
        &format!("/api/sim-cards/{id}"),
        Some(&app.token),
        Some(json!({"status": "active"})),
    )
    .await;
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["91234567", "91234568"], "content": "queued", "sim_card_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sender_sim"], "+85261110002");
    let message_id = body["message_id"].as_i64().unwrap();
    let path = format!("/api/sim-cards/{id}");
    let (status, body) = app
        .request(Method::DELETE, &path, Some(&app.token), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "SIM_HAS_QUEUED_JOBS");
    let (status, body) = app
        .request(
            Method::DELETE,
            &format!("{path}?force=true"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed_recipients"], 2);
    assert!(app.sim(id).await.is_null());
    let message = app.message(message_id).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(message["failed_count"], 2);
    let (status, _) = app
        .request(Method::DELETE, &path, Some(&app.token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.teardown().await;
}

/// The calls the replaced edge gateway's clients make, in their order: log in, send with
/// the API key through a SIM, read the statuses; then rotate the key.
#[tokio::test]
async fn the_edge_gateways_own_client_calls_work() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim("+85261110003").await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, "+85261110003", &modem).await;

    let (status, login) = app
        .request(
            Method::POST,
            "/api/auth",
            None,
            Some(json!({"username": "SMSadmin", "password": smsgate_tests::app::ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["username"], "SMSadmin");
    assert_eq!(login["role"], "admin");
    let jwt = login["token"].as_str().unwrap().to_owned();
    let key = login["api_key"].as_str().unwrap().to_owned();

    let send = |key: String| {
        let http = app.http.clone();
        let url = app.url("/api/sms");
        async move {
            http.post(url)
                .header("X-API-Key", key)
                .json(&json!({"recipient": "91234567", "message": "hello from the edge", "sim_card_id": sim_id}))
                .send()
                .await
                .unwrap()
        }
    };
    let response = send(key.clone()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value = response.json().await.unwrap();
    let message_id = body["message_id"].as_i64().unwrap();
    assert_eq!(body["sender_sim"], "+85261110003");
    app.wait_recipient(message_id, "sent").await;

    let statuses: serde_json::Value = app
        .http
        .get(app.url("/api/sms-status"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &statuses["statuses"][0];
    assert_eq!(entry["message_id"], message_id);
    assert_eq!(entry["sender_number"], "+85261110003");
    assert_eq!(entry["receiver_number"], "+85291234567");
    assert_eq!(entry["status"], "sent");
    assert!(entry["timestamp"].is_string());

    let (status, outbox) = app
        .get(&format!("/api/sms/outbox?sim_card_id={sim_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outbox["messages"][0]["sender_sim"], "+85261110003");
    assert_eq!(outbox["total"], 1);

    // Generating a key needs the JWT; the new key works and every earlier one is revoked.
    let (status, _) = app
        .request(Method::POST, "/api/generate-api-key", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .request(Method::POST, "/api/generate-api-key", Some(&jwt), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_key = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(send(key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(new_key.clone()).await.status(), StatusCode::ACCEPTED);

    // Keys are listed (never shown again) and each can be revoked.
    let (_, keys) = app.get("/api/api-keys").await;
    let active: Vec<_> = keys["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert!(!keys.to_string().contains(&new_key));
    let key_id = active[0]["id"].as_i64().unwrap();
    let (status, _) = app
        .request(
            Method::DELETE,
            &format!("/api/api-keys/{key_id}"),
            Some(&jwt),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(send(new_key).await.status(), StatusCode::UNAUTHORIZED);

    agent.stop().await;
    app.teardown().await;
}
