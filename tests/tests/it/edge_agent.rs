//! The real modem agent against the modem simulator, the real broker and database.

use std::net::ToSocketAddrs;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use smsgate_tests::app::{test_amqp_url, TestApp};
use smsgate_tests::modem_sim::{eventually, EdgeApp, ModemSim};
use smsgate_tests::proxy::CuttableProxy;
use smsgate_tests::socketio::{Handshake, PollingSocket};
use smsgate_tests::webhook_receiver::{Received, WebhookReceiver};

const SIM_NUMBER: &str = "+85261110001";

#[tokio::test]
async fn a_sim_routed_send_is_sent_then_delivered_and_the_sim_reports_its_state() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;

    // No agent heard from yet: "route": "sim" falls back to HKT.
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "content": "via hkt", "route": "sim"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["sender_sim"].is_null(), "{body}");
    // Its own status event must have gone out before the socket below connects, or that
    // socket may see it among the SIM send's events (seen on a loaded machine).
    let via_hkt = body["message_id"].as_i64().unwrap();
    app.wait_recipient(via_hkt, "sent").await;

    let modem = ModemSim::start().unwrap();
    modem.auto_delivery_reports(true);
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    let sim = app.wait_online(sim_id).await;
    assert_eq!(sim["signal"], 21);
    assert_eq!(sim["operator"], "SimNet");
    assert_eq!(sim["registration"], "home");

    // The edge gateway's clients follow their sends over Socket.IO.
    let socket = PollingSocket::connect(
        &app.base_url,
        Handshake {
            auth: Some(json!({"token": app.token})),
            ..Default::default()
        },
    )
    .await
    .expect("status socket connects");

    // API users follow them through webhooks.
    let receiver = WebhookReceiver::spawn().await;
    let (status, hook) = app
        .post("/api/webhooks", json!({"url": receiver.url()}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");

    // 200 GSM-7 characters: two concatenated parts, delivered once both are reported.
    let text = "Edge gateway test €".repeat(10);
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "9123 4567", "message": text, "sim_card_id": sim_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sender_sim"], SIM_NUMBER);
    let id = body["message_id"].as_i64().unwrap();
    assert_eq!(body["data"]["id"], id);

    let (_, attempts, _) = app.wait_recipient(id, "delivered").await;
    assert_eq!(attempts, 1);
    let message = app.message(id).await;
    assert_eq!(message["status"], "sent");
    let parts = modem.sent();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.submit.to == "+85291234567"));
    let joined: String = parts.iter().map(|p| p.submit.text.as_str()).collect();
    assert_eq!(joined, text);
    assert!(parts[0].submit.concat.is_some() && parts[0].submit.status_report);
    let delivered = |seen: &[serde_json::Value]| seen.iter().any(|e| e["status"] == "delivered");
    let updates = socket
        .events_until("sms_status_update", Duration::from_secs(10), delivered)
        .await;
    let statuses: Vec<&str> = updates
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"], "{updates:?}");
    for update in &updates {
        assert_eq!(update["message_id"], id);
        assert_eq!(update["sender_number"], SIM_NUMBER, "{update}");
        assert_eq!(update["receiver_number"], "+85291234567");
    }
    let status_of = |r: &Received| {
        let recipient = &r.json["data"]["recipients"][0];
        (r.json["data"]["message_id"] == id && recipient["phone"] == "+85291234567")
            .then(|| recipient["status"].as_str().unwrap().to_owned())
    };
    let hooked = receiver
        .wait_until(
            "sent and delivered over the webhook",
            Duration::from_secs(10),
            |r| r.iter().filter_map(status_of).any(|s| s == "delivered"),
        )
        .await;
    let mut statuses: Vec<String> = hooked.iter().filter_map(status_of).collect();
    statuses.sort();
    assert_eq!(statuses, ["delivered", "sent"]);

    // With the agent online, "route": "sim" goes to the pool, which picks a SIM per
    // recipient as it releases them (so the response names none): this one.
    let (_, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234568", "content": "any sim", "route": "sim"}),
        )
        .await;
    assert!(body["sender_sim"].is_null(), "{body}");
    assert_eq!(body["route"], "sim");
    app.wait_recipient(body["message_id"].as_i64().unwrap(), "delivered")
        .await;

    // /api/statistics counts both SIM-routed sends against this SIM, and the HKT one not.
    let (_, stats) = app.get("/api/statistics").await;
    let card = &stats["sim_cards"]["cards"][0];
    assert_eq!(card["id"], sim_id, "{stats}");
    assert_eq!(
        (card["sent"].as_i64(), card["failed"].as_i64()),
        (Some(2), Some(0)),
        "{stats}"
    );
    assert_eq!(card["online"], true);
    assert_eq!(stats["sim_cards"]["online"], 1);
    assert_eq!(stats["messages"]["outgoing"], 3);

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_transient_modem_error_is_retried_and_a_permanent_one_fails_the_recipient() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    app.wait_online(sim_id).await;

    // 331: no network service. Worth another try through the retry queue.
    modem.fail_next_sends(&[331]);
    let (_, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91230001", "content": "retry me", "sim_card_id": sim_id}),
        )
        .await;
    let (_, attempts, _) = app
        .wait_recipient(body["message_id"].as_i64().unwrap(), "sent")
        .await;
    assert_eq!(attempts, 2);

    // 21: short message transfer rejected. No retry can help.
    modem.fail_next_sends(&[21]);
    let (_, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91230002", "content": "reject me", "sim_card_id": sim_id}),
        )
        .await;
    let id = body["message_id"].as_i64().unwrap();
    let (_, _, error) = app.wait_recipient(id, "failed").await;
    assert!(error.unwrap().contains("CMS ERROR"));
    assert_eq!(app.message(id).await["status"], "failed");
    assert_eq!(modem.sent().len(), 1);

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_concatenated_ucs2_sms_received_appears_in_the_inbox_once_and_leaves_the_sim() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    app.wait_online(sim_id).await;

    let text = "你好，這是一條很長的測試短訊。".repeat(6); // 90 UTF-16 units: 2 parts
    modem.receive_sms("+85298765432", &text);
    modem.receive_sms("HKT", "Your balance is $10");

    let inbox = eventually(Duration::from_secs(15), "both SMS in the inbox", || async {
        let inbox = app.inbox().await;
        (inbox.len() == 2).then_some(inbox)
    })
    .await;
    let long = inbox
        .iter()
        .find(|m| m["parts"] == 2)
        .expect("the long SMS");
    assert_eq!(long["message"], text.as_str());
    assert_eq!(long["sender"], "+85298765432");
    assert_eq!(long["sim_number"], SIM_NUMBER);
    assert_eq!(long["sim_card_id"], sim_id);
    let short = inbox.iter().find(|m| m["parts"] == 1).unwrap();
    assert_eq!(short["sender"], "HKT");

    eventually(
        Duration::from_secs(10),
        "deleted from the SIM after the confirm",
        || async { (modem.stored() == 0).then_some(()) },
    )
    .await;

    // Filtered by SIM, and paginated.
    let (_, body) = app
        .get(&format!("/api/sms/inbox?sim_card_id={sim_id}&per_page=1"))
        .await;
    assert_eq!(body["total"], 2);
    assert_eq!(body["pages"], 2);
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    let (_, body) = app.get("/api/sms/inbox?sim_card_id=999999").await;
    assert_eq!(body["total"], 0);

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn sms_received_while_the_broker_is_cut_are_published_once_it_is_back() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let broker_addr = test_amqp_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = CuttableProxy::start(broker_addr).await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let modem = ModemSim::start().unwrap();
    let agent = smsgate_modem_agent::start(
        app.agent_settings(sim_id, SIM_NUMBER, Some(&url)),
        modem.clone(),
    )
    .await
    .unwrap();
    app.wait_online(sim_id).await;

    proxy.cut();
    modem.receive_sms("+85298760001", "first while away");
    modem.receive_sms("+85298760002", &"長".repeat(100)); // 2 UCS-2 parts
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(app.inbox().await.is_empty());
    assert_eq!(modem.stored(), 3, "nothing leaves the SIM unconfirmed");

    proxy.restore();
    let inbox = eventually(
        Duration::from_secs(30),
        "both SMS after the outage",
        || async {
            let inbox = app.inbox().await;
            (inbox.len() == 2).then_some(inbox)
        },
    )
    .await;
    assert!(inbox.iter().any(|m| m["message"] == "first while away"));
    eventually(Duration::from_secs(10), "the SIM emptied", || async {
        (modem.stored() == 0).then_some(())
    })
    .await;

    // And the SIM queue is consumed again after the reconnect.
    let (_, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91230003", "content": "after", "sim_card_id": sim_id}),
        )
        .await;
    app.wait_recipient(body["message_id"].as_i64().unwrap(), "sent")
        .await;
    assert_eq!(app.inbox().await.len(), 2, "published once, stored once");

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_silent_modem_is_reset_and_sends_again() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, SIM_NUMBER, &modem).await;
    app.wait_online(sim_id).await;
    assert_eq!(modem.opens(), 1);

    modem.go_silent();
    let (_, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91230004", "content": "after the hang", "sim_card_id": sim_id}),
        )
        .await;
    let id = body["message_id"].as_i64().unwrap();
    app.wait_recipient(id, "sent").await;
    assert!(modem.opens() >= 2, "the agent reopened the port");
    assert!(!modem.is_silent());
    assert_eq!(modem.sent().last().unwrap().submit.text, "after the hang");
    // Re-initialised after the reset: echo off and PDU mode again.
    let commands = modem.commands();
    assert!(commands.iter().filter(|c| *c == "AT+CMGF").count() >= 2);

    agent.stop().await;
    app.teardown().await;
}
