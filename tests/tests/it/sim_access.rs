//! Who may manage, see and use SIM cards, and read what they receive (issue #13): SIM
//! changes are for admins; everyone else sees, sends through and reads the inbox of only the
//! SIMs assigned to them or to all.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, hidden_input, TestApp, TestOptions};
use smsgate_tests::modem_sim::EdgeApp;

const ALICE: (&str, &str) = ("alice", "Alice-pass-2026");
const BOB: (&str, &str) = ("bob", "Bob-pass-2026!");

async fn spawn() -> TestApp {
    TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await
}

/// `(number, label, status)` of SIM `id`, straight from the database; `None` once deleted.
async fn sim_row(app: &TestApp, id: i64) -> Option<(String, String, String)> {
    sqlx::query_as("SELECT number, label, status FROM sim_cards WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.db)
        .await
        .unwrap()
}

async fn sim_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sim_cards")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn message_count_of(app: &TestApp, user_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The user ids SIM `id` is assigned to, and whether it is assigned to all.
async fn assignment(app: &TestApp, id: i64) -> (bool, Vec<i64>) {
    let all: bool = sqlx::query_scalar("SELECT assigned_to_all FROM sim_cards WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let users: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM sim_card_assignees WHERE sim_card_id = $1 ORDER BY user_id",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    (all, users)
}

/// Registers a SIM as the admin with `assignees` (`"all"` or user ids).
async fn create_assigned_sim(app: &TestApp, number: &str, assignees: Value) -> i64 {
    let (status, body) = app
        .post(
            "/api/sim-cards",
            json!({"number": number, "label": "test", "assignees": assignees}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

/// An SMS received by SIM `sim_id` (or by a SIM since deleted, for `None`).
async fn receive(app: &TestApp, sim_id: Option<i64>, text: &str) {
    sqlx::query(
        "INSERT INTO inbound_messages (sim_card_id, sim_number, sender, content, received_at, dedupe_key)
         VALUES ($1, COALESCE((SELECT number FROM sim_cards WHERE id = $1), '+85260000000'),
                 '+85291230001', $2, now(), gen_random_uuid()::text)",
    )
    .bind(sim_id)
    .bind(text)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn as_user(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.request(method, path, Some(token), body).await
}

fn ids_of(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

fn inbox_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {body}"))
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn non_admins_cannot_register_change_or_delete_sim_cards_through_the_api() {
    let app = spawn().await;
    let sim = app.create_sim("6111 0401").await;
    let (_, owner) = app.create_user(BOB.0, BOB.1).await;
    let (_, plain) = app.create_user(ALICE.0, ALICE.1).await;
    // Another user's SMS waiting for this SIM: a forced delete would fail it.
    let (status, body) = as_user(
        &app,
        &owner,
        Method::POST,
        "/api/sms",
        Some(json!({"recipient": "91234567", "message": "queued", "sim_card_id": sim})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let queued = body["message_id"].as_i64().unwrap();
    let before = sim_row(&app, sim).await;

    let (status, body) = as_user(
        &app,
        &plain,
        Method::POST,
        "/api/sim-cards",
        Some(json!({"number": "61110402"})),
    )
    .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    // Refused before the body is read: a bad body tells a non-admin nothing either.
    let (status, body) = as_user(
        &app,
        &plain,
        Method::POST,
        "/api/sim-cards",
        Some(json!({"number": "not a number"})),
    )
    .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    assert_eq!(sim_count(&app).await, 1);

    let path = format!("/api/sim-cards/{sim}");
    let (status, body) = as_user(
        &app,
        &plain,
        Method::PUT,
        &path,
        Some(json!({"number": "61110499", "label": "mine now", "status": "inactive"})),
    )
    .await;
    assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    assert_eq!(sim_row(&app, sim).await, before);

    for path in [path.clone(), format!("{path}?force=true")] {
        let (status, body) = as_user(&app, &plain, Method::DELETE, &path, None).await;
        assert_error((status, &body), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    }
    assert_eq!(sim_row(&app, sim).await, before);
    let rows = app.recipient_rows(queued).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "pending", "{rows:?}");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'sim.%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, 1, "only the admin's sim.create");

    // The admin still manages SIMs through the API.
    let (status, body) = app
        .request(
            Method::DELETE,
            &format!("{path}?force=true"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed_recipients"], 1);
    assert_eq!(sim_row(&app, sim).await, None);
    app.teardown().await;
}

#[tokio::test]
async fn admins_assign_sims_to_all_or_to_chosen_users_and_unknown_users_are_refused() {
    let app = spawn().await;
    let (alice, alice_token) = app.create_user(ALICE.0, ALICE.1).await;
    let (bob, _) = app.create_user(BOB.0, BOB.1).await;

    // Without assignees a SIM is for everyone, as every SIM was before.
    let open = app.create_sim("6111 0501").await;
    assert_eq!(assignment(&app, open).await, (true, vec![]));
    assert_eq!(app.sim(open).await["assignees"], "all");

    let (status, body) = app
        .post(
            "/api/sim-cards",
            json!({"number": "61110502", "assignees": [bob, alice, bob]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let narrow = body["id"].as_i64().unwrap();
    let mut expected = vec![alice, bob];
    expected.sort();
    assert_eq!(body["assignees"], json!(expected));
    assert_eq!(body["assignee_users"][0]["username"], "alice", "{body}");
    assert_eq!(assignment(&app, narrow).await, (false, expected.clone()));
    let (_, listed) = app.get("/api/sim-cards").await;
    assert_eq!(listed[1]["assignees"], json!(expected), "{listed}");

    // Unknown users are named, and nothing is registered.
    let (status, body) = app
        .post(
            "/api/sim-cards",
            json!({"number": "61110503", "assignees": [alice, 999999, 888888]}),
        )
        .await;
    let message = assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_USERS");
    assert!(
        message.contains("888888") && message.contains("999999"),
        "{message}"
    );
    assert_eq!(sim_count(&app).await, 2);
    for bad in [
        json!("everyone"),
        json!([alice, "bob"]),
        json!(-1),
        json!([0]),
    ] {
        let (status, body) = app
            .post(
                "/api/sim-cards",
                json!({"number": "61110503", "assignees": bad}),
            )
            .await;
        assert_error(
            (status, &body),
            StatusCode::BAD_REQUEST,
            "INVALID_ASSIGNEES",
        );
    }
    assert_eq!(sim_count(&app).await, 2);

    let path = format!("/api/sim-cards/{narrow}");
    let put = |body: Value| app.request(Method::PUT, &path, Some(&app.token), Some(body));
    let (status, body) = put(json!({"assignees": [alice, 777777]})).await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_USERS");
    assert_eq!(assignment(&app, narrow).await, (false, expected.clone()));
    let (status, body) = put(json!({"label": "relabelled"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignees"], json!(expected), "kept when not given");
    let (status, body) = put(json!({"assignees": [alice]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(assignment(&app, narrow).await, (false, vec![alice]));
    let (status, body) = put(json!({"assignees": "all"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignees"], "all");
    assert_eq!(assignment(&app, narrow).await, (true, vec![]));
    let (status, body) = put(json!({"assignees": []})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(assignment(&app, narrow).await, (false, vec![]));

    // A user is not shown who else a SIM is assigned to.
    let (_, theirs) = as_user(&app, &alice_token, Method::GET, "/api/sim-cards", None).await;
    assert_eq!(ids_of(&theirs), vec![open]);
    assert!(theirs[0].get("assignees").is_none(), "{theirs}");
    assert!(theirs[0].get("assignee_users").is_none(), "{theirs}");

    // Deleting a user takes their assignments with it.
    put(json!({"assignees": [bob]})).await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(bob)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(assignment(&app, narrow).await, (false, vec![]));
    app.teardown().await;
}

#[tokio::test]
async fn users_see_and_send_through_only_the_sims_assigned_to_them() {
    let app = spawn().await;
    let (alice, alice_token) = app.create_user(ALICE.0, ALICE.1).await;
    let (bob, bob_token) = app.create_user(BOB.0, BOB.1).await;
    let hers = create_assigned_sim(&app, "6111 0601", json!([alice])).await;
    let shared = create_assigned_sim(&app, "6111 0602", json!("all")).await;
    let his = create_assigned_sim(&app, "6111 0603", json!([bob])).await;

    let (status, list) = as_user(&app, &alice_token, Method::GET, "/api/sim-cards", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids_of(&list), vec![hers, shared]);
    let (_, list) = as_user(&app, &bob_token, Method::GET, "/api/sim-cards", None).await;
    assert_eq!(ids_of(&list), vec![shared, his]);
    let (_, list) = app.get("/api/sim-cards").await;
    assert_eq!(ids_of(&list), vec![hers, shared, his]);

    // Someone else's SIM answers as a missing one does.
    let (status, body) = as_user(
        &app,
        &alice_token,
        Method::GET,
        &format!("/api/sim-cards/{his}"),
        None,
    )
    .await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = as_user(
        &app,
        &alice_token,
        Method::GET,
        &format!("/api/sim-cards/{hers}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let send = |token: &str, path: &str, body: Value| {
        let (app, token, path) = (&app, token.to_owned(), path.to_owned());
        async move { as_user(app, &token, Method::POST, &path, Some(body)).await }
    };
    let (status, body) = send(
        &alice_token,
        "/api/sms",
        json!({"recipient": "91234567", "message": "x", "sim_card_id": his}),
    )
    .await;
    let refused = assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_SIM_CARD");
    let (status, body) = send(
        &alice_token,
        "/api/sms",
        json!({"recipient": "91234567", "message": "x", "sim_card_id": 999999}),
    )
    .await;
    let missing = assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_SIM_CARD");
    assert_eq!(
        refused.replace(&his.to_string(), "N"),
        missing.replace("999999", "N")
    );
    let (status, body) = send(
        &alice_token,
        "/api/sms/send-bulk",
        json!({"recipients": ["91234567", "91234568"], "content": "x", "sim_card_id": his}),
    )
    .await;
    assert_error((status, &body), StatusCode::BAD_REQUEST, "UNKNOWN_SIM_CARD");
    assert_eq!(message_count_of(&app, alice).await, 0);

    for sim in [hers, shared] {
        let (status, body) = send(
            &alice_token,
            "/api/sms",
            json!({"recipient": "91234567", "message": "mine", "sim_card_id": sim}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Admins use every SIM.
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "message": "admin", "sim_card_id": his}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // "Any online SIM" counts only the caller's: with only Bob's SIM online, Alice's
    // send falls back to HKT and Bob's goes to the SIM pool.
    sqlx::query(
        "UPDATE sim_cards SET last_heartbeat_at = CASE WHEN id = $1 THEN now() ELSE NULL END",
    )
    .bind(his)
    .execute(&app.db)
    .await
    .unwrap();
    let (status, body) = send(
        &alice_token,
        "/api/sms",
        json!({"recipient": "91234567", "message": "any", "route": "sim"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["sender_sim"].is_null(), "{body}");
    assert_eq!(body["route"], "hkt");
    let (status, body) = send(
        &bob_token,
        "/api/sms",
        json!({"recipient": "91234567", "message": "any", "route": "sim"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Bob's goes to the pool (his SIM is the one online he may use), which names no SIM.
    assert!(body["sender_sim"].is_null(), "{body}");
    assert_eq!(body["route"], "sim");

    // The SIM usage in the statistics lists only the caller's SIMs.
    let (status, stats) = as_user(&app, &alice_token, Method::GET, "/api/statistics", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(ids_of(&stats["sim_cards"]["cards"]), vec![hers, shared]);
    assert_eq!(stats["sim_cards"]["total"], 2);
    app.teardown().await;
}

#[tokio::test]
async fn received_sms_are_read_only_by_the_sims_assignees_and_admins() {
    let app = spawn().await;
    let (alice, alice_token) = app.create_user(ALICE.0, ALICE.1).await;
    let (bob, bob_token) = app.create_user(BOB.0, BOB.1).await;
    let hers = create_assigned_sim(&app, "6111 0701", json!([alice])).await;
    let his = create_assigned_sim(&app, "6111 0702", json!([bob])).await;
    let shared = app.create_sim("6111 0703").await;
    receive(&app, Some(hers), "alice code 1111").await;
    receive(&app, Some(his), "bob code 2222").await;
    receive(&app, Some(shared), "shared news").await;
    receive(&app, None, "orphan code 3333").await;

    let inbox = |token: &str, query: &str| {
        let (app, token) = (&app, token.to_owned());
        let path = format!("/api/sms/inbox{query}");
        async move { as_user(app, &token, Method::GET, &path, None).await }
    };
    let (status, body) = inbox(&alice_token, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut texts = inbox_texts(&body);
    texts.sort();
    assert_eq!(texts, ["alice code 1111", "shared news"]);
    assert_eq!(body["total"], 2);
    let (_, body) = inbox(&alice_token, &format!("?sim_card_id={his}")).await;
    assert_eq!(inbox_texts(&body), Vec::<String>::new());
    assert_eq!(body["total"], 0);
    let (_, body) = inbox(&bob_token, "").await;
    let mut texts = inbox_texts(&body);
    texts.sort();
    assert_eq!(texts, ["bob code 2222", "shared news"]);
    let (_, body) = inbox(&app.token, "").await;
    assert_eq!(
        body["total"], 4,
        "admins read every SMS, a deleted SIM's too: {body}"
    );
    // Statistics count what each may read, not every SIM's traffic.
    for (token, expected) in [(&alice_token, 2), (&app.token, 4)] {
        let (status, stats) = as_user(&app, token, Method::GET, "/api/statistics", None).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        assert_eq!(stats["messages"]["incoming"], expected, "{stats}");
        let today: i64 = stats["daily"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["incoming"].as_i64().unwrap())
            .sum();
        assert_eq!(today, expected, "{stats}");
    }

    // The panel's inbox follows the same rule, and offers only the user's SIMs as filters.
    let panel = app.panel_login(ALICE.0, ALICE.1).await;
    let page = panel.get("/inbox").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice code 1111"), "{}", page.body);
    assert!(!page.body.contains("bob code 2222"), "{}", page.body);
    assert!(!page.body.contains("orphan code 3333"));
    assert!(
        !page.body.contains("+85261110702"),
        "Bob's SIM is not offered"
    );
    let filtered = panel.get(&format!("/inbox?sim={his}")).await.body;
    assert!(!filtered.contains("bob code 2222"));
    let admin = app
        .panel_login("SMSadmin", smsgate_tests::app::ADMIN_PASSWORD)
        .await;
    let all = admin.get("/inbox").await.body;
    assert!(all.contains("bob code 2222") && all.contains("orphan code 3333"));
    app.teardown().await;
}

#[tokio::test]
async fn outbox_and_statuses_show_only_the_callers_own_sends() {
    let app = spawn().await;
    let (_, alice_token) = app.create_user(ALICE.0, ALICE.1).await;
    let (_, bob_token) = app.create_user(BOB.0, BOB.1).await;
    let sim = app.create_sim("6111 0801").await;
    for (token, text) in [(&alice_token, "from alice"), (&bob_token, "from bob")] {
        let (status, body) = as_user(
            &app,
            token,
            Method::POST,
            "/api/sms",
            Some(json!({"recipient": "91234567", "message": text, "sim_card_id": sim})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (_, outbox) = as_user(&app, &alice_token, Method::GET, "/api/sms/outbox", None).await;
    assert_eq!(outbox["total"], 1, "{outbox}");
    assert_eq!(outbox["messages"][0]["message"], "from alice");
    let (_, statuses) = as_user(&app, &alice_token, Method::GET, "/api/sms-status", None).await;
    assert_eq!(statuses["total"], 1, "{statuses}");
    let (_, outbox) = app.get("/api/sms/outbox").await;
    assert_eq!(outbox["total"], 2, "admins see every send: {outbox}");
    app.teardown().await;
}

#[tokio::test]
async fn the_panel_shows_users_only_their_sims_and_admins_set_assignees_in_the_form() {
    let app = spawn().await;
    let (alice, _) = app.create_user(ALICE.0, ALICE.1).await;
    app.create_user(BOB.0, BOB.1).await;
    let admin = app
        .panel_login("SMSadmin", smsgate_tests::app::ADMIN_PASSWORD)
        .await;

    let form = admin.get("/sims/new").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains(&format!("name=\"user_{alice}\"")),
        "{}",
        form.body
    );
    let alice_box = format!("user_{alice}");
    let created = admin
        .submit(
            "/sims/new",
            "/sims/new",
            &[
                ("number", "6111 0901"),
                ("label", "alice's"),
                ("status", "active"),
                ("assign", "users"),
                (alice_box.as_str(), "on"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let id: i64 = sqlx::query_scalar("SELECT id FROM sim_cards WHERE number = '+85261110901'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(assignment(&app, id).await, (false, vec![alice]));
    let list = admin.get("/sims").await.body;
    assert!(
        list.contains("Assigned to") && list.contains(">alice<"),
        "{list}"
    );

    let edit = admin.get(&format!("/sims/{id}/edit")).await.body;
    assert!(
        edit.contains(&format!("name=\"user_{alice}\" value=\"on\" checked")),
        "{edit}"
    );
    // An unknown user is refused on the form, and nothing changes.
    let refused = admin
        .submit(
            &format!("/sims/{id}/edit"),
            &format!("/sims/{id}/edit"),
            &[
                ("label", "x"),
                ("status", "active"),
                ("assign", "users"),
                ("user_999999", "on"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("999999"), "{}", refused.body);
    assert_eq!(assignment(&app, id).await, (false, vec![alice]));
    let edit_path = format!("/sims/{id}/edit");
    let bad_choice = admin
        .submit(
            &edit_path,
            &edit_path,
            &[("label", "x"), ("status", "active"), ("assign", "nobody")],
        )
        .await;
    assert_eq!(bad_choice.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A form without the choice (one loaded before assignees existed) keeps them.
    let kept = admin
        .submit(
            &edit_path,
            &edit_path,
            &[("label", "relabelled"), ("status", "active")],
        )
        .await;
    assert_eq!(kept.status, StatusCode::SEE_OTHER, "{}", kept.body);
    assert_eq!(assignment(&app, id).await, (false, vec![alice]));

    let alice_panel = app.panel_login(ALICE.0, ALICE.1).await;
    let bob_panel = app.panel_login(BOB.0, BOB.1).await;
    assert!(alice_panel.get("/sims").await.body.contains("+85261110901"));
    assert!(!bob_panel.get("/sims").await.body.contains("+85261110901"));
    let state = bob_panel.get("/sims/state").await;
    assert_eq!(state.status, StatusCode::OK);
    let state: Value = serde_json::from_str(&state.body).unwrap();
    assert_eq!(state["sims"], json!([]), "{state}");
    // Users are never shown who a SIM is assigned to.
    assert!(!alice_panel.get("/sims").await.body.contains("Assigned to"));

    let saved = admin
        .submit(
            &format!("/sims/{id}/edit"),
            &format!("/sims/{id}/edit"),
            &[
                ("label", "for all"),
                ("status", "active"),
                ("assign", "all"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(assignment(&app, id).await, (true, vec![]));
    assert!(bob_panel.get("/sims").await.body.contains("+85261110901"));
    assert!(hidden_input(&admin.get("/sims").await.body, "csrf_token").is_some());
    app.teardown().await;
}
