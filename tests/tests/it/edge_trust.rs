//! The edge trust model (docs/edge-gateway.md): each SIM's agent is its own broker user,
//! the broker enforces what it may read and write, and the ingest refuses events a
//! publisher has no right to make. Real RabbitMQ, real database; a "stolen Pi" is a lapin
//! connection with one SIM's login.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_shared::queue::edge::{EdgeEvent, Registration, SimSendOutcome};
use smsgate_shared::queue::Names;
use smsgate_tests::app::{amqp_url_as, test_amqp_url, TestApp};
use smsgate_tests::modem_sim::{eventually, sim_login, EdgeApp};

/// A connection as SIM `sim_id`'s agent would open it, with the login the API gave it.
async fn connect_as_sim(app: &TestApp, sim_id: i64) -> Result<Connection, lapin::Error> {
    let (user, password) = sim_login(&app.prefix, sim_id).expect("the SIM's login");
    connect(&amqp_url_as(&test_amqp_url(), &user, &password)).await
}

async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

/// Publishes `payload` on a fresh confirm channel and says whether the broker took it
/// (a refused publish closes the channel, which fails the confirm).
async fn publish(
    conn: &Connection,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    user_id: Option<&str>,
) -> bool {
    let Ok(channel) = conn.create_channel().await else {
        return false;
    };
    if channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return false;
    }
    let mut properties = BasicProperties::default();
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    let Ok(confirm) = channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await
    else {
        return false;
    };
    let taken = matches!(confirm.await, Ok(c) if c.is_ack());
    // A refusal arrives as a channel close; give it the moment a round trip takes.
    tokio::time::sleep(Duration::from_millis(150)).await;
    taken && channel.status().connected()
}

fn send_result(sim_id: i64, recipient_id: i64, message_id: i64) -> EdgeEvent {
    EdgeEvent::SimSendResultV1 {
        sim_id,
        recipient_id,
        message_id,
        outcome: SimSendOutcome::Sent,
        references: vec![1],
        error: None,
        attempts: 1,
        at: chrono::Utc::now(),
    }
}

fn heartbeat(sim_id: i64) -> EdgeEvent {
    EdgeEvent::HeartbeatV1 {
        sim_id,
        number: None,
        signal: Some(20),
        registration: Registration::Home,
        operator: Some("Forged".into()),
        at: chrono::Utc::now(),
    }
}

/// A message through SIM `sim_id` (no agent runs, so it stays pending): (message, recipient).
async fn pending_sim_send(app: &TestApp, sim_id: i64) -> (i64, i64) {
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "content": "for B only", "sim_card_id": sim_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message_id = body["message_id"].as_i64().unwrap();
    let recipient_id: i64 = sqlx::query_scalar("SELECT id FROM recipients WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    (message_id, recipient_id)
}

async fn rejected(app: &TestApp, reason: &str) -> f64 {
    app.dispatcher_metrics()
        .await
        .sum("smsgate_edge_events_rejected_total", &[("reason", reason)])
        .unwrap_or(0.0)
}

#[tokio::test]
async fn registering_a_sim_gives_its_agent_a_login_that_reaches_only_its_own_queue_and_keys() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (status, body) = app
        .post("/api/sim-cards", json!({"number": "+85261119001"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let a = body["id"].as_i64().unwrap();
    let names = Names::new(&app.prefix);
    assert_eq!(
        body["broker"]["username"],
        format!("{}.sim.{a}", app.prefix)
    );
    assert_eq!(body["broker"]["queue"], names.sim_queue(a));
    assert_eq!(body["broker"]["exchange"], names.edge_exchange());
    assert!(
        body["broker"]["password"].as_str().unwrap().len() >= 32,
        "{body}"
    );
    smsgate_tests::modem_sim::remember_sim_login(&app.prefix, a, &body["broker"]);
    let b = app.create_sim("+85261119002").await;
    // Never shown again.
    let (_, listed) = app.get(&format!("/api/sim-cards/{a}")).await;
    assert!(listed.get("broker").is_none(), "{listed}");

    let conn = connect_as_sim(&app, a).await.expect("SIM A's login works");
    let me = format!("{}.sim.{a}", app.prefix);
    // Its own queue: readable, not declarable (no configure permission at all).
    let channel = conn.create_channel().await.unwrap();
    assert!(channel
        .basic_get(&names.sim_queue(a), BasicGetOptions::default())
        .await
        .is_ok());
    let declared = channel
        .queue_declare(
            &names.sim_queue(a),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(declared.is_err(), "a SIM user may not (re)declare queues");
    // Another SIM's queue: refused.
    let channel = conn.create_channel().await.unwrap();
    let err = channel
        .basic_get(&names.sim_queue(b), BasicGetOptions::default())
        .await
        .expect_err("SIM A may not read SIM B's jobs");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");

    let edge = names.edge_exchange();
    let hb = heartbeat(a).to_json();
    assert!(publish(&conn, &edge, &format!("heartbeat.{a}"), &hb, Some(&me)).await);
    // Another SIM's routing key, another user's id, or anywhere but the edge exchange.
    assert!(!publish(&conn, &edge, &format!("heartbeat.{b}"), &hb, Some(&me)).await);
    let other = format!("{}.sim.{b}", app.prefix);
    assert!(!publish(&conn, &edge, &format!("heartbeat.{a}"), &hb, Some(&other)).await);
    assert!(
        !publish(
            &conn,
            &names.events_exchange(),
            "status.1",
            b"{}",
            Some(&me)
        )
        .await
    );
    assert!(!publish(&conn, &names.outbound_exchange(), "hkt", b"{}", Some(&me)).await);
    assert!(
        !publish(
            &conn,
            &names.retry_queue(app.options.retry_schedule[0]),
            "hkt",
            b"{}",
            Some(&me)
        )
        .await
    );
    assert!(!publish(&conn, "", &names.hkt_queue(), b"{}", Some(&me)).await);
    let _ = conn.close(200, "done").await;
    app.teardown().await;
}

#[tokio::test]
async fn the_ingest_refuses_events_for_a_sim_or_recipient_the_publisher_does_not_own() {
    let app = TestApp::spawn().await;
    let a = app.create_sim("+85261119011").await;
    let b = app.create_sim("+85261119012").await;
    let (message_id, recipient_id) = pending_sim_send(&app, b).await;
    let names = Names::new(&app.prefix);
    let edge = names.edge_exchange();
    let me = format!("{}.sim.{a}", app.prefix);
    let stolen = connect_as_sim(&app, a).await.unwrap();

    // SIM A's own key and user_id, but a result for SIM B's recipient: claimed as SIM A's
    // (not routed here) and as SIM B's (wrong publisher).
    let own_claim = send_result(a, recipient_id, message_id).to_json();
    assert!(
        publish(
            &stolen,
            &edge,
            &format!("sim-report.{a}"),
            &own_claim,
            Some(&me)
        )
        .await
    );
    let forged = send_result(b, recipient_id, message_id).to_json();
    assert!(
        publish(
            &stolen,
            &edge,
            &format!("sim-report.{a}"),
            &forged,
            Some(&me)
        )
        .await
    );
    assert!(
        publish(
            &stolen,
            &edge,
            &format!("heartbeat.{a}"),
            &heartbeat(b).to_json(),
            Some(&me)
        )
        .await
    );
    // Without a user_id (RabbitMQ lets a publisher leave it out).
    assert!(
        publish(
            &stolen,
            &edge,
            &format!("heartbeat.{a}"),
            &heartbeat(a).to_json(),
            None
        )
        .await
    );
    // The servers' own user may write to the edge exchange, but is no SIM.
    let servers = connect(&test_amqp_url()).await.unwrap();
    assert!(
        publish(
            &servers,
            &edge,
            &format!("sim-report.{b}"),
            &forged,
            Some("guest")
        )
        .await
    );

    eventually(
        Duration::from_secs(15),
        "every forged event refused",
        || async {
            let not_routed = rejected(&app, "not_routed_here").await;
            let wrong = rejected(&app, "wrong_publisher").await;
            let anonymous = rejected(&app, "no_publisher").await;
            (not_routed >= 1.0 && wrong >= 3.0 && anonymous >= 1.0).then_some(())
        },
    )
    .await;
    // Nothing changed: B's recipient is pending, B never heard from, A not online either
    // (its only heartbeat had no user_id).
    assert_eq!(app.recipient_status_of(message_id).await.0, "pending");
    assert_eq!(app.sim(b).await["online"], false);
    assert_eq!(app.sim(a).await["online"], false);
    let audited: Vec<Value> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE action = 'edge.event_rejected' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let reasons: Vec<&str> = audited
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    for reason in ["not_routed_here", "wrong_publisher", "no_publisher"] {
        assert!(reasons.contains(&reason), "{reason} audited: {audited:?}");
    }
    assert!(
        audited.iter().any(|d| d["publisher"] == "guest"),
        "{audited:?}"
    );

    // A's own heartbeat, properly signed, is taken.
    assert!(
        publish(
            &stolen,
            &edge,
            &format!("heartbeat.{a}"),
            &heartbeat(a).to_json(),
            Some(&me)
        )
        .await
    );
    app.wait_online(a).await;
    let _ = stolen.close(200, "done").await;
    let _ = servers.close(200, "done").await;
    app.teardown().await;
}

#[tokio::test]
async fn deactivating_rotating_and_deleting_a_sim_change_what_its_login_can_do() {
    let app = TestApp::spawn_without_dispatcher().await;
    let sim = app.create_sim("+85261119021").await;
    let (user, old_password) = sim_login(&app.prefix, sim).unwrap();
    let old_url = amqp_url_as(&test_amqp_url(), &user, &old_password);
    let names = Names::new(&app.prefix);

    let conn = connect(&old_url).await.unwrap();
    let status = |s: &'static str| json!({ "status": s });
    let (code, body) = app
        .request(
            Method::PUT,
            &format!("/api/sim-cards/{sim}"),
            Some(&app.token),
            Some(status("inactive")),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Its connection is closed and it may not come back while inactive.
    eventually(
        Duration::from_secs(10),
        "the inactive SIM's connection is closed",
        || async { (!conn.status().connected()).then_some(()) },
    )
    .await;
    let refused = match connect(&old_url).await {
        Err(_) => true,
        Ok(c) => {
            let channel = c.create_channel().await.unwrap();
            channel
                .basic_get(&names.sim_queue(sim), BasicGetOptions::default())
                .await
                .is_err()
        }
    };
    assert!(refused, "an inactive SIM's login reads nothing");

    let (code, body) = app
        .request(
            Method::PUT,
            &format!("/api/sim-cards/{sim}"),
            Some(&app.token),
            Some(status("active")),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let conn = connect(&old_url)
        .await
        .expect("reactivated: the same login works again");
    let channel = conn.create_channel().await.unwrap();
    assert!(channel
        .basic_get(&names.sim_queue(sim), BasicGetOptions::default())
        .await
        .is_ok());

    // A new password: the old one stops working, the agent is disconnected.
    let path = format!("/api/sim-cards/{sim}/broker-credentials");
    let (code, body) = app
        .request(Method::POST, &path, Some(&app.token), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["username"], user.as_str());
    let new_password = body["password"].as_str().unwrap().to_owned();
    assert_ne!(new_password, old_password);
    eventually(
        Duration::from_secs(10),
        "the old login's connection is closed",
        || async { (!conn.status().connected()).then_some(()) },
    )
    .await;
    assert!(
        connect(&old_url).await.is_err(),
        "the old password is refused"
    );
    let new_url = amqp_url_as(&test_amqp_url(), &user, &new_password);
    connect(&new_url)
        .await
        .expect("the new password works")
        .close(200, "ok")
        .await
        .ok();
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'sim.credentials' AND target = $1",
    )
    .bind(format!("sim:{sim}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // Only admins may do it.
    let (_, user_token) = app.create_user("edgeuser", "edge-user-password-1").await;
    let (code, body) = app
        .request(Method::POST, &path, Some(&user_token), None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");

    // Deleting the SIM deletes its user.
    let (code, body) = app
        .request(
            Method::DELETE,
            &format!("/api/sim-cards/{sim}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(
        connect(&new_url).await.is_err(),
        "a deleted SIM's login is gone"
    );
    app.teardown().await;
}

#[tokio::test]
async fn an_agent_started_with_another_sims_id_is_refused_and_changes_nothing() {
    use smsgate_tests::modem_sim::ModemSim;
    let app = TestApp::spawn().await;
    let a = app.create_sim("+85261119031").await;
    let b = app.create_sim("+85261119032").await;
    let (message_id, _) = pending_sim_send(&app, b).await;
    // SIM A's Pi, reconfigured (or tampered with) to claim SIM B: B's queue is not its to
    // read, and B's routing keys are not its to publish under.
    let mut settings = app.agent_settings(a, "+85261119031", None);
    settings.sim_id = b;
    let modem = ModemSim::start().unwrap();
    let agent = smsgate_modem_agent::start(settings, modem.clone())
        .await
        .expect("the agent starts; the broker refuses it afterwards");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(modem.sent().is_empty(), "B's job never reached A's modem");
    assert_eq!(app.recipient_status_of(message_id).await.0, "pending");
    assert_eq!(app.sim(b).await["online"], false);
    assert_eq!(app.sim(a).await["online"], false);
    agent.stop().await;
    app.teardown().await;
}
