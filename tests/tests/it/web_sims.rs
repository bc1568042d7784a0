//! Web panel: the SIM cards page, the inbox and the dashboard's SIM summary (issues #3, #4).

use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_tests::app::{hidden_input, TestApp, TestOptions, ADMIN_PASSWORD};
use smsgate_tests::modem_sim::EdgeApp;

async fn spawn() -> TestApp {
    TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await
}

async fn sim_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sim_cards")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn sim_status(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM sim_cards WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// What the agent's heartbeats would have recorded, `seconds_ago` seconds ago.
async fn heartbeat(app: &TestApp, id: i64, seconds_ago: f64, signal: i16, operator: &str) {
    sqlx::query(
        "UPDATE sim_cards SET last_heartbeat_at = now() - make_interval(secs => $2),
             signal = $3, operator = $4, registration = 'home'
         WHERE id = $1",
    )
    .bind(id)
    .bind(seconds_ago)
    .bind(signal)
    .bind(operator)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn receive(app: &TestApp, sim_id: i64, sender: &str, text: &str, seconds_ago: f64) {
    sqlx::query(
        "INSERT INTO inbound_messages (sim_card_id, sim_number, sender, content, received_at, created_at, dedupe_key)
         SELECT id, number, $2, $3, now() - make_interval(secs => $4),
                now() - make_interval(secs => $4), gen_random_uuid()::text
         FROM sim_cards WHERE id = $1",
    )
    .bind(sim_id)
    .bind(sender)
    .bind(text)
    .bind(seconds_ago)
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn sim_and_inbox_pages_require_a_session() {
    let app = spawn().await;
    let anonymous = app.panel_client();
    for path in ["/sims", "/sims/state", "/sims/new", "/inbox"] {
        let response = anonymous.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        let location = response.location().unwrap_or_default();
        assert!(location.starts_with("/login"), "{path} → {location}");
    }
    let forged = anonymous
        .post_form("/sims/new", &[("number", "61110001"), ("status", "active")])
        .await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    assert_eq!(sim_count(&app).await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn staff_see_sims_and_the_inbox_but_cannot_change_sims() {
    let app = spawn().await;
    let id = app.create_sim("6111 0001").await;
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;

    let page = bob.get("/sims").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("+85261110001"), "{}", page.body);
    assert!(!page.body.contains("Add SIM card"));
    assert!(!page.body.contains(&format!("/sims/{id}/toggle")));
    let nav = bob.get("/").await.body;
    assert!(nav.contains("href=\"/sims\"") && nav.contains("href=\"/inbox\""));
    assert_eq!(bob.get("/inbox").await.status, StatusCode::OK);

    assert_eq!(bob.get("/sims/new").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        bob.get(&format!("/sims/{id}/edit")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.get(&format!("/sims/{id}/delete")).await.status,
        StatusCode::FORBIDDEN
    );
    // Valid CSRF tokens (from a page bob may open) do not make him an admin.
    let posts: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "/sims/new",
            vec![("number", "61110009"), ("status", "active")],
        ),
        (
            &format!("/sims/{id}/edit"),
            vec![("label", "mine"), ("status", "inactive")],
        ),
        (&format!("/sims/{id}/toggle"), vec![]),
        (&format!("/sims/{id}/delete"), vec![("force", "true")]),
    ];
    for (path, fields) in &posts {
        let refused = bob.submit("/sims", path, fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(sim_count(&app).await, 1);
    assert_eq!(sim_status(&app, id).await, "active");
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_adds_edits_disables_and_deletes_a_sim() {
    let app = spawn().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    assert!(admin.get("/sims").await.body.contains("No SIM cards"));

    let invalid = admin
        .submit(
            "/sims/new",
            "/sims/new",
            &[
                ("number", "6111-00"),
                ("label", "Pi one"),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        invalid.body.contains("id=\"number-error\""),
        "{}",
        invalid.body
    );
    assert_eq!(
        hidden_input(&invalid.body, "number").as_deref(),
        Some("6111-00")
    );
    assert_eq!(
        hidden_input(&invalid.body, "label").as_deref(),
        Some("Pi one")
    );
    assert_eq!(sim_count(&app).await, 0);

    let no_csrf = admin
        .post_form("/sims/new", &[("number", "61110003"), ("status", "active")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(sim_count(&app).await, 0);

    let added = admin
        .submit(
            "/sims/new",
            "/sims/new",
            &[
                ("number", "6111 0003"),
                ("label", "Pi <b>one</b>"),
                ("status", "active"),
            ],
        )
        .await;
    // The agent's broker login, shown once on the page the form answers with.
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(
        added.body.contains("SIM card added: +85261110003"),
        "{}",
        added.body
    );
    assert!(
        added.body.contains(&format!("{}.sim.", app.prefix)),
        "{}",
        added.body
    );
    assert!(
        added.body.contains("Copy the password now"),
        "{}",
        added.body
    );
    let list = admin.get("/sims").await;
    assert!(list.body.contains("Pi &lt;b&gt;one&lt;&#x2F;b&gt;"));
    assert!(!list.body.contains("<b>one</b>"));
    let id: i64 = sqlx::query_scalar("SELECT id FROM sim_cards")
        .fetch_one(&app.db)
        .await
        .unwrap();
    // The JSON API sees what the panel made, and the other way round.
    let sim = app.sim(id).await;
    assert_eq!(sim["label"], "Pi <b>one</b>");
    // A new broker password from the SIM's page, shown once, audited.
    let rotated = admin
        .submit(
            &format!("/sims/{id}/edit"),
            &format!("/sims/{id}/broker-credentials"),
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(
        rotated.body.contains("New broker login"),
        "{}",
        rotated.body
    );
    assert!(rotated.body.contains("previous password no longer works"));
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'sim.credentials'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, 1);

    let taken = admin
        .submit(
            "/sims/new",
            "/sims/new",
            &[("number", "+85261110003"), ("status", "active")],
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.body.contains("already registered"));
    assert_eq!(sim_count(&app).await, 1);

    let edit = format!("/sims/{id}/edit");
    let form = admin.get(&edit).await;
    assert_eq!(
        hidden_input(&form.body, "label").as_deref(),
        Some("Pi <b>one</b>")
    );
    let saved = admin
        .submit(
            &edit,
            &edit,
            &[("label", "Basement"), ("status", "inactive")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert!(admin
        .get("/sims")
        .await
        .body
        .contains("+85261110003 saved."));
    let sim = app.sim(id).await;
    assert_eq!(
        (sim["label"].as_str(), sim["status"].as_str()),
        (Some("Basement"), Some("inactive"))
    );
    let bad_status = admin
        .submit(&edit, &edit, &[("label", "x"), ("status", "online")])
        .await;
    assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_status.body.contains("Choose active or inactive."));

    let toggle = format!("/sims/{id}/toggle");
    let enabled = admin.submit("/sims", &toggle, &[]).await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    assert_eq!(sim_status(&app, id).await, "active");
    assert!(admin
        .get("/sims")
        .await
        .body
        .contains("+85261110003 enabled."));
    admin.submit("/sims", &toggle, &[]).await;
    assert_eq!(sim_status(&app, id).await, "inactive");
    assert!(admin
        .get("/sims")
        .await
        .body
        .contains("+85261110003 disabled"));
    let forged = admin
        .post_form(&toggle, &[("csrf_token", "not-the-token")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(sim_status(&app, id).await, "inactive");

    let delete = format!("/sims/{id}/delete");
    let confirm = admin.get(&delete).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Delete SIM card +85261110003?"));
    assert!(!confirm.body.contains("queued SMS"));
    let deleted = admin.submit(&delete, &delete, &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(admin
        .get("/sims")
        .await
        .body
        .contains("SIM card +85261110003 deleted."));
    assert_eq!(sim_count(&app).await, 0);
    assert_eq!(admin.get(&delete).await.status, StatusCode::NOT_FOUND);

    // Every change above is in the audit log under the admin's name (GET /api/logs).
    let (_, logs) = app.get("/api/logs?action=sim&per_page=10").await;
    let actions: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "sim.delete",
            "sim.update",
            "sim.update",
            "sim.update",
            "sim.credentials",
            "sim.create"
        ],
        "{logs}"
    );
    assert!(logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["actor"] == "SMSadmin" && l["sender_sim"] == "+85261110003"));
    app.teardown().await;
}

#[tokio::test]
async fn deleting_a_sim_with_queued_sms_offers_a_forced_delete() {
    let app = spawn().await;
    let id = app.create_sim("6111 0004").await;
    // No agent runs, so both stay pending in the SIM's queue.
    let (status, body) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["91234567", "91234568"], "content": "queued", "sim_card_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message_id = body["message_id"].as_i64().unwrap();
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;

    let delete = format!("/sims/{id}/delete");
    let confirm = admin.get(&delete).await;
    assert!(
        confirm.body.contains("data-testid=\"queued-jobs\""),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains("<strong>2</strong> queued SMS"));
    assert_eq!(
        hidden_input(&confirm.body, "force").as_deref(),
        Some("true")
    );

    // A plain delete (an old tab, or jobs queued since the page was shown) is refused with
    // the same choice.
    let refused = admin.submit(&delete, &delete, &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("Fail 2 queued SMS and delete"));
    assert_eq!(sim_count(&app).await, 1);

    let forced = admin.submit(&delete, &delete, &[("force", "true")]).await;
    assert_eq!(forced.status, StatusCode::SEE_OTHER, "{}", forced.body);
    let flash = admin.get("/sims").await.body;
    assert!(flash.contains("2 queued SMS failed with it."), "{flash}");
    assert_eq!(sim_count(&app).await, 0);
    let rows = app.recipient_rows(message_id).await;
    assert!(
        rows.iter().all(|(_, status, _)| status == "failed"),
        "{rows:?}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_sims_page_shows_online_state_signal_and_heartbeat_in_display_time() {
    let app = spawn().await;
    let online = app.create_sim("6111 0005").await;
    let offline = app.create_sim("6111 0006").await;
    let never = app.create_sim("6111 0007").await;
    heartbeat(&app, online, 5.0, 18, "CSL").await;
    // Three missed 30 s heartbeats: offline, though its last report is still shown.
    heartbeat(&app, offline, 95.0, 9, "3HK").await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;

    let page = admin.get("/sims").await.body;
    let row = |id: i64| {
        let start = page
            .find(&format!("data-sim-id=\"{id}\""))
            .unwrap_or_else(|| panic!("no row for SIM {id}"));
        let end = page[start..].find("</tr>").unwrap() + start;
        page[start..end].to_owned()
    };
    let (a, b, c) = (row(online), row(offline), row(never));
    assert!(
        a.contains(">online<") && a.contains("58%") && a.contains("CSL"),
        "{a}"
    );
    assert!(a.contains(" HKT</time>"), "{a}");
    assert!(
        b.contains(">offline<") && b.contains("29%") && b.contains("3HK"),
        "{b}"
    );
    assert!(
        c.contains(">offline<") && c.contains("never") && c.contains("unknown"),
        "{c}"
    );
    assert!(page.contains("/static/sims.js?v="));

    // The refresh endpoint the page's script polls.
    let state = admin.get("/sims/state").await;
    assert_eq!(state.status, StatusCode::OK);
    assert_eq!(
        state
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let state: Value = serde_json::from_str(&state.body).unwrap();
    let sims = state["sims"].as_array().unwrap();
    let find = |id: i64| sims.iter().find(|s| s["id"] == id).unwrap().clone();
    assert_eq!(find(online)["online"], true);
    assert_eq!(find(online)["signal"], 18);
    assert_eq!(find(offline)["online"], false);
    assert!(find(online)["last_heartbeat"]
        .as_str()
        .unwrap()
        .ends_with(" HKT"));
    assert!(find(never)["last_heartbeat"].is_null());
    assert!(state["updated"].as_str().unwrap().ends_with(" HKT"));
    app.teardown().await;
}

#[tokio::test]
async fn the_inbox_lists_received_sms_newest_first_escaped_and_by_sim() {
    let app = spawn().await;
    let first = app.create_sim("6111 0008").await;
    let second = app.create_sim("6111 0009").await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    assert!(admin.get("/inbox").await.body.contains("No received SMS"));

    receive(&app, first, "+85291230001", "older hello", 120.0).await;
    receive(
        &app,
        first,
        "+85291230002",
        "<script>alert(1)</script>",
        60.0,
    )
    .await;
    receive(&app, second, "+85291230003", "to the second SIM", 30.0).await;
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;

    let inbox = bob.get("/inbox").await;
    assert_eq!(inbox.status, StatusCode::OK);
    let body = inbox.body;
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"));
    let at = |text: &str| body.find(text).unwrap_or_else(|| panic!("{text} missing"));
    assert!(
        at("to the second SIM") < at("&lt;script&gt;") && at("&lt;script&gt;") < at("older hello")
    );
    assert!(body.contains("+85291230001") && body.contains("+85261110008"));
    assert!(body.contains(" HKT</time>"));

    let filtered = bob.get(&format!("/inbox?sim={second}")).await.body;
    assert!(filtered.contains("to the second SIM") && !filtered.contains("older hello"));
    assert!(filtered.contains(&format!("<option value=\"{second}\" selected>")));
    // A stale or hand-edited filter shows everything rather than an error.
    assert_eq!(
        bob.get("/inbox?sim=abc&page=x").await.status,
        StatusCode::OK
    );

    // 25 a page; the older page carries the filter on.
    for n in 0..26 {
        receive(
            &app,
            second,
            "+85291239999",
            &format!("bulk {n:02}"),
            10.0 - f64::from(n) * 0.1,
        )
        .await;
    }
    let page1 = bob.get(&format!("/inbox?sim={second}")).await.body;
    assert!(page1.contains("page 1 of 2"), "{page1}");
    // Autoescaped in the attribute; the browser reads `/inbox?sim=…&page=2`.
    let older = format!("inbox?sim={second}&amp;page=2");
    assert!(page1.contains(&older), "{page1}");
    let page2 = bob.get(&format!("/inbox?sim={second}&page=2")).await.body;
    assert!(page2.contains("to the second SIM") && page2.contains("bulk 00"));
    assert!(!page2.contains("bulk 01"));
    app.teardown().await;
}

#[tokio::test]
async fn the_dashboard_summarises_sims_once_there_are_some() {
    let app = spawn().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    assert!(!admin
        .get("/")
        .await
        .body
        .contains("data-testid=\"sim-summary\""));

    let online = app.create_sim("6111 0010").await;
    app.create_sim("6111 0011").await;
    let inactive = app.create_sim("6111 0012").await;
    heartbeat(&app, online, 1.0, 20, "CSL").await;
    // Inactive counts as inactive whatever its agent does.
    heartbeat(&app, inactive, 1.0, 20, "CSL").await;
    sqlx::query("UPDATE sim_cards SET status = 'inactive' WHERE id = $1")
        .bind(inactive)
        .execute(&app.db)
        .await
        .unwrap();

    let body = admin.get("/").await.body;
    let value = |testid: &str| {
        let marker = format!("data-testid=\"{testid}\">");
        let start = body
            .find(&marker)
            .unwrap_or_else(|| panic!("{testid}: {body}"))
            + marker.len();
        body[start..].split('<').next().unwrap().to_owned()
    };
    assert_eq!(value("sims-online"), "1");
    assert_eq!(value("sims-offline"), "1");
    assert_eq!(value("sims-inactive"), "1");
    assert!(body.contains("href=\"/sims\">All SIM cards</a>"));
    app.teardown().await;
}
