//! Received SMS beyond the inbox: `message.received` webhooks for the users who may see the
//! SIM, and opt-out by reply (STOP, 退订, …) that later sends honour with `opted_out`.
//! The real modem agent against the modem simulator, the real broker and database.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{assert_error, numbers, TestApp, ADMIN_PASSWORD};
use smsgate_tests::modem_sim::{eventually, EdgeApp, ModemSim};
use smsgate_tests::webhook_receiver::{Received, WebhookReceiver};

const SIM_NUMBER: &str = "+85261110001";

/// Registers a webhook for `receiver` with `token`'s credentials; returns its secret.
async fn register(
    app: &TestApp,
    token: &str,
    receiver: &WebhookReceiver,
    events: Option<&[&str]>,
) -> String {
    let mut body = json!({"url": receiver.url()});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let (status, hook) = app
        .request(Method::POST, "/api/webhooks", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    hook["secret"].as_str().unwrap().to_owned()
}

fn received_sms(r: &Received) -> bool {
    r.event == "message.received"
}

/// The global opt-out rows: (phone, source, SIM id, whether it names its inbound SMS).
async fn global_opt_outs(app: &TestApp) -> Vec<(String, String, Option<i64>, bool)> {
    sqlx::query_as(
        "SELECT phone, source, sim_card_id, inbound_message_id IS NOT NULL
         FROM opt_outs WHERE user_id IS NULL ORDER BY phone",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn opt_out(app: &TestApp, phone: &str, user_id: Option<i64>) {
    sqlx::query("INSERT INTO opt_outs (phone, user_id, source) VALUES ($1, $2, 'admin')")
        .bind(phone)
        .bind(user_id)
        .execute(&app.db)
        .await
        .unwrap();
}

/// Sends through `body`'s route as `token`; asserts 202 and returns the message id.
async fn send_as(app: &TestApp, token: &str, body: Value) -> i64 {
    let (status, answer) = app
        .request(Method::POST, "/api/sms", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["message_id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_received_sms_reaches_the_subscribed_webhooks_of_users_who_may_see_the_sim() {
    let app = TestApp::spawn().await;
    let (bob_id, bob) = app.create_user("bob", "bob-password-1").await;
    let (_, carol) = app.create_user("carol", "carol-password-1").await;
    let (status, sim) = app
        .post(
            "/api/sim-cards",
            json!({"number": SIM_NUMBER, "label": "bob's", "assignees": [bob_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sim}");
    let sim_id = sim["id"].as_i64().unwrap();
    // The agent below logs in as the SIM's own broker user.
    smsgate_tests::modem_sim::remember_sim_login(&app.prefix, sim_id, &sim["broker"]);

    // Subscriptions are validated, listed and changed through the API.
    let (status, body) = app
        .post(
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "events": ["message.status", "message.sent"]}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_WEBHOOK_EVENTS",
    );
    let (status, body) = app
        .post(
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "events": []}),
        )
        .await;
    assert_error(
        (status, &body),
        StatusCode::BAD_REQUEST,
        "INVALID_WEBHOOK_EVENTS",
    );

    let bob_received = WebhookReceiver::spawn().await;
    let bob_secret = register(&app, &bob, &bob_received, Some(&["message.received"])).await;
    let bob_status_only = WebhookReceiver::spawn().await;
    register(&app, &bob, &bob_status_only, None).await;
    let carol_received = WebhookReceiver::spawn().await;
    register(&app, &carol, &carol_received, Some(&["message.received"])).await;
    let admin_received = WebhookReceiver::spawn().await;
    register(&app, &app.token, &admin_received, None).await;
    let (_, list) = app.get("/api/webhooks").await;
    let admin_hook = &list["webhooks"][0];
    assert_eq!(admin_hook["events"], json!(["message.status"]), "{list}");
    let (status, changed) = app
        .request(
            Method::PUT,
            &format!("/api/webhooks/{}", admin_hook["id"]),
            Some(&app.token),
            Some(json!({"events": ["message.received", "message.status"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["events"],
        json!(["message.status", "message.received"])
    );

    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    app.wait_online(sim_id).await;
    let text = "你好，請問明天的預約時間可以改嗎？".repeat(5); // 2 UCS-2 parts
    modem.receive_sms("+85298765432", &text);

    let got = bob_received
        .wait_until("bob's message.received", Duration::from_secs(15), |r| {
            r.iter().any(received_sms)
        })
        .await;
    let event = got.iter().find(|r| received_sms(r)).unwrap();
    assert!(event.signed_with(&bob_secret), "signed with bob's secret");
    assert_eq!(event.json["type"], "message.received");
    let data = &event.json["data"];
    assert_eq!(data["sim"], json!({"id": sim_id, "number": SIM_NUMBER}));
    assert_eq!(data["sender"], "+85298765432");
    assert_eq!(data["text"], text.as_str());
    assert_eq!(data["parts"], 2);
    assert!(data["received_at"].is_string(), "{data}");
    let inbox = app.inbox().await;
    assert_eq!(data["inbound_id"], inbox[0]["id"], "{inbox:?}");

    // An admin sees every SIM's SMS.
    admin_received
        .wait_until(
            "the admin's message.received",
            Duration::from_secs(10),
            |r| r.iter().any(received_sms),
        )
        .await;
    // Give wrong deliveries time to show up before asserting there are none.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        carol_received.received().is_empty(),
        "carol is not assigned to the SIM"
    );
    assert!(
        bob_status_only.received().is_empty(),
        "a webhook that did not subscribe gets no message.received"
    );
    assert_eq!(bob_received.received().len(), 1, "one SMS, one event");

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_stop_reply_opts_the_sender_out_and_later_sends_to_it_end_opted_out() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    app.wait_online(sim_id).await;
    let receiver = WebhookReceiver::spawn().await;
    register(
        &app,
        &app.token,
        &receiver,
        Some(&["message.status", "message.received"]),
    )
    .await;

    modem.receive_sms("+85298760001", " Stop\n");
    modem.receive_sms("+85298760002", "退订");
    modem.receive_sms("+85298760003", "please stop sending me these");
    modem.receive_sms("HKT", "STOP"); // a sender name: nothing to put on the list
    eventually(Duration::from_secs(15), "all four in the inbox", || async {
        (app.inbox().await.len() == 4).then_some(())
    })
    .await;
    let listed = global_opt_outs(&app).await;
    assert_eq!(
        listed,
        [
            ("+85298760001".into(), "reply".into(), Some(sim_id), true),
            ("+85298760002".into(), "reply".into(), Some(sim_id), true),
        ]
    );

    // HKT, the small-send path: accepted, and ended without a gateway request.
    let to_hkt = app.send_sms("98760001", "your code is 1234").await;
    let message = app.message(to_hkt).await;
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(message["opted_out_count"], 1);
    assert_eq!(message["pending_count"], 0);
    assert_eq!(
        app.recipient_rows(to_hkt).await,
        [("+85298760001".into(), "opted_out".into(), 0)]
    );
    // Through the SIM the sender replied to.
    let via_sim = send_as(
        &app,
        &app.token,
        json!({"recipient": "98760002", "content": "hello again", "sim_card_id": sim_id}),
    )
    .await;
    assert_eq!(app.message(via_sim).await["status"], "failed");
    assert_eq!(app.recipient_rows(via_sim).await[0].1, "opted_out");

    // A sentence with "stop" in it is not an opt-out.
    let ordinary = app.send_sms("98760003", "sorry to bother you").await;
    app.wait_until_final(ordinary, Duration::from_secs(10))
        .await;
    assert_eq!(app.mock.received_for("85298760003").len(), 1);

    // The webhook told the sender which number was dropped.
    let status_of = |r: &Received| {
        (r.event == "message.status" && r.json["data"]["message_id"] == to_hkt)
            .then(|| r.json["data"].clone())
    };
    let got = receiver
        .wait_until("the opted-out status", Duration::from_secs(10), |r| {
            r.iter().any(|r| status_of(r).is_some())
        })
        .await;
    let data = got.iter().find_map(status_of).unwrap();
    assert_eq!(data["status"], "failed");
    assert_eq!(data["opted_out"], 1);
    assert_eq!(data["recipients"][0]["phone"], "+85298760001");
    assert_eq!(data["recipients"][0]["status"], "opted_out");

    // START undoes an opt-out made by reply.
    modem.receive_sms("+85298760001", "start");
    eventually(Duration::from_secs(15), "the opt-in", || async {
        (global_opt_outs(&app).await.len() == 1).then_some(())
    })
    .await;
    let again = app.send_sms("98760001", "welcome back").await;
    app.wait_until_final(again, Duration::from_secs(10)).await;

    // Nothing opted out ever reached a gateway.
    assert_eq!(
        app.mock.received_for("85298760001").len(),
        1,
        "only after START"
    );
    assert!(modem.sent().is_empty(), "the SIM sent nothing");
    assert!(app.mock.received_for("85298760002").is_empty());

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_users_own_opt_out_stops_only_that_users_sends() {
    let app = TestApp::spawn().await;
    let (bob_id, bob) = app.create_user("bob", "bob-password-1").await;
    opt_out(&app, "+85291110001", Some(bob_id)).await;

    let bobs = app.send_sms_as(&bob, "91110001", "from bob").await;
    // Final in the answer to the send already: nothing of it is left to dispatch.
    let (status, body) = app
        .request(Method::GET, &format!("/api/sms/{bobs}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "failed", "{body}");
    assert_eq!(body["data"]["opted_out_count"], 1);
    let admins = app.send_sms("91110001", "from the admin").await;
    let message = app.wait_until_final(admins, Duration::from_secs(10)).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(message["opted_out_count"], 0);
    let received = app.mock.received_for("85291110001");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].msg_utf8, "from the admin");
    app.teardown().await;
}

#[tokio::test]
async fn a_bulk_sends_to_every_number_but_the_opted_out_ones() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::spawn().await;
    register(&app, &app.token, &receiver, None).await;
    // Above the size where the list is walked instead of each recipient looked up.
    let recipients = numbers(1_500, 9200);
    let listed = [&recipients[0], &recipients[700], &recipients[1_499]];
    for local in listed {
        opt_out(&app, &format!("+852{local}"), None).await;
    }
    // Listed by someone else: no effect on the admin's bulk.
    let (carol_id, _) = app.create_user("carol", "carol-password-1").await;
    opt_out(&app, &format!("+852{}", recipients[1]), Some(carol_id)).await;

    let id = app.send_bulk(&recipients, "campaign").await;
    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["status"], "partial", "{message}");
    assert_eq!(message["opted_out_count"], 3);
    assert_eq!(message["success_count"], 1_497);
    assert_eq!(message["pending_count"], 0);
    for local in listed {
        assert!(app.mock.received_for(&format!("852{local}")).is_empty());
    }
    assert_eq!(
        app.mock
            .received_for(&format!("852{}", recipients[1]))
            .len(),
        1
    );
    assert_eq!(app.mock.stats().total, 1_497);
    // The release queue did not keep the message waiting for its opted-out recipients.
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM message_outbox WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(queued, 0);
    let got = receiver
        .wait_until("the bulk's opted-out event", Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json["data"]["opted_out"] == 3)
        })
        .await;
    let opted: Vec<&Value> = got
        .iter()
        .find(|r| r.json["data"]["recipients"][0]["status"] == "opted_out")
        .map(|r| {
            r.json["data"]["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .collect()
        })
        .unwrap();
    assert_eq!(opted.len(), 3);
    app.teardown().await;
}

#[tokio::test]
async fn the_panel_offers_the_events_as_checkboxes_and_requires_one() {
    let app = TestApp::spawn_without_dispatcher().await;
    let client = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let page = client.get("/webhooks").await;
    assert!(
        page.body
            .contains(r#"name="event_status" id="event_status" checked"#),
        "message.status is ticked on a fresh form: {}",
        page.body
    );
    assert!(page
        .body
        .contains(r#"name="event_received" id="event_received">"#));

    let page = client
        .submit(
            "/webhooks",
            "/webhooks",
            &[("url", "http://127.0.0.1:9/none"), ("submitted", "1")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(page.body.contains("at least one event"), "{}", page.body);

    let page = client
        .submit(
            "/webhooks",
            "/webhooks",
            &[
                ("url", "http://127.0.0.1:9/inbound"),
                ("submitted", "1"),
                ("event_received", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let events: Vec<String> = sqlx::query_scalar("SELECT events FROM webhooks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, ["message.received"]);
    let list = client.get("/webhooks").await;
    assert!(
        list.body.contains("<code>message.received</code>"),
        "{}",
        list.body
    );
    app.teardown().await;
}
