//! One bulk over many SIMs (issue #17): the pool shares a bulk between online SIMs within
//! their carrier caps, spaces sends where asked, and moves the jobs of a SIM that goes
//! offline to the other SIMs, or to HKT where the sender allowed it. Real agents against
//! simulated modems, the real broker and database.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smsgate_tests::app::{
    assert_error, hidden_input, numbers, TestApp, TestOptions, ADMIN_PASSWORD,
};
use smsgate_tests::modem_sim::{eventually, EdgeApp, ModemSim};

/// Agents in tests heartbeat every second: three seconds of silence is offline.
fn fast_failover() -> TestOptions {
    TestOptions {
        sim_offline_after: Duration::from_secs(3),
        ..TestOptions::default()
    }
}

/// `PUT /api/sim-cards/{id}` as the admin; asserts 200 and returns the SIM.
async fn set_caps(app: &TestApp, sim_id: i64, caps: Value) -> Value {
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/sim-cards/{sim_id}"),
            Some(&app.token),
            Some(caps),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A SIM with its simulated modem and running agent, online.
async fn online_sim(
    app: &TestApp,
    number: &str,
) -> (i64, ModemSim, smsgate_modem_agent::RunningAgent) {
    let id = app.create_sim(number).await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(id, number, &modem).await;
    app.wait_online(id).await;
    (id, modem, agent)
}

/// Sends a bulk and returns its message id (asserting 202).
async fn send_bulk(app: &TestApp, recipients: &[String], extra: Value) -> (i64, Value) {
    let mut body = json!({"recipients": recipients, "content": "pool test"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, body) = app.post("/api/sms/send-bulk", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    (body["message_id"].as_i64().unwrap(), body)
}

/// (status, SIM) of every recipient of a message.
async fn recipients_of(app: &TestApp, message_id: i64) -> Vec<(String, Option<i64>)> {
    sqlx::query_as("SELECT status, sim_card_id FROM recipients WHERE message_id = $1 ORDER BY id")
        .bind(message_id)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn wait_all_sent(app: &TestApp, message_id: i64, deadline: Duration) {
    eventually(deadline, "every recipient is sent", || async {
        let rows = recipients_of(app, message_id).await;
        rows.iter().all(|(s, _)| s == "sent").then_some(())
    })
    .await;
}

/// The numbers the simulated modem sent to, as E.164.
fn sent_to(modem: &ModemSim) -> Vec<String> {
    modem.sent().into_iter().map(|p| p.submit.to).collect()
}

fn e164(local: &[String]) -> HashSet<String> {
    local.iter().map(|n| format!("+852{n}")).collect()
}

#[tokio::test]
async fn a_bulk_is_shared_by_two_sims_each_within_its_daily_cap() {
    let app = TestApp::spawn().await;
    let (a, modem_a, agent_a) = online_sim(&app, "+85261110001").await;
    let (b, modem_b, agent_b) = online_sim(&app, "+85261110002").await;
    for sim in [a, b] {
        let sim = set_caps(&app, sim, json!({"max_per_day": 600})).await;
        assert_eq!(sim["max_per_day"], 600);
    }

    let to = numbers(1000, 9100);
    let (id, body) = send_bulk(&app, &to, json!({"route": "sim"})).await;
    // The pool chooses a SIM per recipient: no single sender SIM to name.
    assert!(body["sender_sim"].is_null(), "{body}");
    assert_eq!(body["route"], "sim");
    wait_all_sent(&app, id, Duration::from_secs(50)).await;

    let (by_a, by_b) = (sent_to(&modem_a), sent_to(&modem_b));
    assert_eq!(
        by_a.len() + by_b.len(),
        1000,
        "every recipient sent exactly once"
    );
    assert!(
        by_a.len() <= 600 && by_b.len() <= 600,
        "{} {}",
        by_a.len(),
        by_b.len()
    );
    let all: HashSet<String> = by_a.iter().chain(&by_b).cloned().collect();
    assert_eq!(all, e164(&to));

    // Every recipient records the SIM that sent it, and the SIMs' usage counts them.
    let rows = recipients_of(&app, id).await;
    let mut per_sim: HashMap<i64, usize> = HashMap::new();
    for (_, sim) in &rows {
        *per_sim
            .entry(sim.expect("every SIM job has its SIM"))
            .or_default() += 1;
    }
    assert_eq!(per_sim[&a], by_a.len());
    assert_eq!(per_sim[&b], by_b.len());
    for (sim, sent) in [(a, by_a.len()), (b, by_b.len())] {
        let (_, view) = app.get(&format!("/api/sim-cards/{sim}")).await;
        assert_eq!(view["sent_last_24h"], sent as i64, "{view}");
        assert_eq!(view["max_per_day"], 600);
    }

    // A second bulk finds 200 slots left for the day: 200 go, the rest wait for tomorrow.
    let more = numbers(250, 9200);
    let (second, _) = send_bulk(&app, &more, json!({"route": "sim"})).await;
    eventually(
        Duration::from_secs(30),
        "both SIMs reach their cap",
        || async { (modem_a.sent().len() + modem_b.sent().len() == 1200).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(modem_a.sent().len(), 600);
    assert_eq!(modem_b.sent().len(), 600);
    let waiting = recipients_of(&app, second).await;
    let pending = waiting.iter().filter(|(s, _)| s == "pending").count();
    assert_eq!(pending, 50);
    assert!(waiting
        .iter()
        .filter(|(s, _)| s == "pending")
        .all(|(_, sim)| sim.is_none()));

    agent_a.stop().await;
    agent_b.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn the_jobs_of_a_sim_that_goes_offline_move_to_the_other_sim() {
    let app = TestApp::spawn_with(fast_failover()).await;
    let (_a, modem_a, agent_a) = online_sim(&app, "+85261110011").await;
    let (_b, modem_b, agent_b) = online_sim(&app, "+85261110012").await;

    // A's agent stops; A still counts as online for up to three seconds, so the bulk's
    // first jobs are shared between A's queue (no one reads it now) and B's.
    agent_a.stop().await;
    let to = numbers(40, 9300);
    let (id, _) = send_bulk(&app, &to, json!({"route": "sim"})).await;
    wait_all_sent(&app, id, Duration::from_secs(30)).await;

    assert!(modem_a.sent().is_empty());
    let by_b: HashSet<String> = sent_to(&modem_b).into_iter().collect();
    assert_eq!(modem_b.sent().len(), 40, "each sent once");
    assert_eq!(by_b, e164(&to));
    let metrics = app.api_metrics().await;
    let moved = metrics.sum("smsgate_sim_jobs_moved_total", &[("to", "release_queue")]);
    assert!(
        moved.unwrap_or(0.0) >= 1.0,
        "A's queued jobs were taken back"
    );

    agent_b.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn with_no_sim_left_work_goes_to_hkt_where_allowed_and_waits_otherwise() {
    let app = TestApp::spawn_with(fast_failover()).await;
    let number = "+85261110021";
    let (sim, _modem, agent) = online_sim(&app, number).await;

    agent.stop().await;
    let to_hkt = numbers(12, 9400);
    let waits = numbers(6, 9500);
    let (falls_back, _) =
        send_bulk(&app, &to_hkt, json!({"route": "sim", "fallback": "hkt"})).await;
    let (stays, _) = send_bulk(&app, &waits, json!({"route": "sim", "fallback": "none"})).await;

    // Once the SIM is offline, the first bulk's rest goes through HKT: all of it here.
    wait_all_sent(&app, falls_back, Duration::from_secs(20)).await;
    let via_hkt: HashSet<String> = app.mock.received().into_iter().map(|r| r.mrt).collect();
    for n in e164(&to_hkt) {
        assert!(
            via_hkt.iter().any(|got| got.ends_with(&n[4..])),
            "{n} via HKT"
        );
    }
    assert!(recipients_of(&app, falls_back)
        .await
        .iter()
        .all(|(_, sim)| sim.is_none()));

    // The second waits for a SIM, with no SIM held against it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = recipients_of(&app, stays).await;
    assert!(
        rows.iter().all(|(s, sim)| s == "pending" && sim.is_none()),
        "{rows:?}"
    );
    assert!(!via_hkt
        .iter()
        .any(|got| e164(&waits).iter().any(|n| got.ends_with(&n[4..]))));

    // The SIM comes back: the waiting bulk goes out through it.
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim, number, &modem).await;
    wait_all_sent(&app, stays, Duration::from_secs(20)).await;
    let sent: HashSet<String> = sent_to(&modem).into_iter().collect();
    assert_eq!(sent, e164(&waits));

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn sends_on_a_spaced_sim_are_spaced_at_random() {
    let app = TestApp::spawn().await;
    let (sim, modem, agent) = online_sim(&app, "+85261110031").await;
    set_caps(&app, sim, json!({"send_interval_secs": 1})).await;

    let to = numbers(6, 9600);
    let (id, _) = send_bulk(&app, &to, json!({"route": "sim"})).await;
    wait_all_sent(&app, id, Duration::from_secs(30)).await;

    let at: Vec<_> = modem.sent().into_iter().map(|p| p.at).collect();
    assert_eq!(at.len(), 6);
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    // Each gap is drawn from [0.5, 1.5] s; sending and release rounds add a little.
    for gap in &gaps {
        assert!((0.4..2.5).contains(gap), "{gaps:?}");
    }
    let spread = gaps.iter().cloned().fold(f64::MIN, f64::max)
        - gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.05, "the gaps vary: {gaps:?}");

    // The outbox names the SIM each pool recipient went through.
    let (_, outbox) = app.get("/api/sms/outbox").await;
    let listed: Vec<&Value> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["message_id"] == id)
        .collect();
    assert_eq!(listed.len(), 6, "{outbox}");
    assert!(
        listed.iter().all(|m| m["sender_sim"] == "+85261110031"),
        "{outbox}"
    );

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_sim_job_names_its_sim_before_its_result_arrives() {
    let mut app = TestApp::spawn().await;
    let (sim, modem, agent) = online_sim(&app, "+85261110041").await;
    // No ingest: the modem sends, but no result reaches the database.
    app.kill_dispatcher().await;

    let (pooled, _) = send_bulk(&app, &numbers(3, 9700), json!({"route": "sim"})).await;
    let (single, body) = send_bulk(&app, &numbers(2, 9800), json!({"sim_card_id": sim})).await;
    assert_eq!(body["sender_sim"], "+85261110041");
    assert_eq!(body["route"], "sim");
    eventually(
        Duration::from_secs(20),
        "the modem sent all five",
        || async { (modem.sent().len() == 5).then_some(()) },
    )
    .await;
    for message in [pooled, single] {
        let rows = recipients_of(&app, message).await;
        assert!(
            rows.iter()
                .all(|(s, got)| s == "pending" && *got == Some(sim)),
            "{rows:?}"
        );
    }

    app.start_dispatcher().await;
    wait_all_sent(&app, pooled, Duration::from_secs(20)).await;
    wait_all_sent(&app, single, Duration::from_secs(20)).await;
    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn fallback_and_caps_are_validated_and_only_admins_change_caps() {
    let app = TestApp::spawn().await;
    let sim = app.create_sim("+85261110051").await;

    for (body, code) in [
        (
            json!({"recipient": "91234567", "content": "x", "route": "sim", "fallback": "sms"}),
            "INVALID_FALLBACK",
        ),
        (
            json!({"recipient": "91234567", "content": "x", "route": "hkt", "fallback": "hkt"}),
            "INVALID_FALLBACK",
        ),
        (
            json!({"recipient": "91234567", "content": "x", "fallback": "none"}),
            "INVALID_FALLBACK",
        ),
    ] {
        let (status, got) = app.post("/api/sms", body).await;
        let message = assert_error((status, &got), StatusCode::BAD_REQUEST, code);
        assert!(message.contains("fallback"), "{message}");
    }
    let (status, got) = app
        .post(
            "/api/sms/send-bulk",
            json!({"recipients": ["91234567"], "content": "x", "route": "sim", "fallback": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");

    // No SIM online: a pool send goes to HKT, unless it asks to wait.
    let (status, got) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "content": "x", "route": "sim"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{got}");
    assert!(got["sender_sim"].is_null());
    assert_eq!(got["route"], "hkt");
    let (status, got) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "content": "x", "route": "sim", "fallback": "none"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{got}");
    assert_eq!(got["route"], "sim");

    let path = format!("/api/sim-cards/{sim}");
    for (caps, field) in [
        (json!({"max_per_minute": 0}), "max_per_minute"),
        (json!({"max_per_hour": -3}), "max_per_hour"),
        (json!({"max_per_day": "many"}), "max_per_day"),
        (json!({"send_interval_secs": 1.5}), "send_interval_secs"),
        (json!({"max_per_day": 3_000_000_000_i64}), "max_per_day"),
    ] {
        let (status, got) = app
            .request(Method::PUT, &path, Some(&app.token), Some(caps))
            .await;
        let message = assert_error((status, &got), StatusCode::BAD_REQUEST, "INVALID_SIM_CAP");
        assert!(message.contains(field), "{message}");
    }
    let set = set_caps(
        &app,
        sim,
        json!({"max_per_minute": 2, "max_per_hour": 30, "max_per_day": 100, "send_interval_secs": 20}),
    )
    .await;
    assert_eq!(
        (
            &set["max_per_minute"],
            &set["max_per_hour"],
            &set["max_per_day"],
            &set["send_interval_secs"]
        ),
        (&json!(2), &json!(30), &json!(100), &json!(20))
    );
    assert_eq!(set["sent_last_minute"], 0);
    // null clears one cap; absent ones stay.
    let cleared = set_caps(&app, sim, json!({"max_per_hour": null})).await;
    assert!(cleared["max_per_hour"].is_null(), "{cleared}");
    assert_eq!(cleared["max_per_day"], 100);

    let (_, user_token) = app.create_user("capless", "capless-password-1").await;
    let (status, got) = app
        .request(
            Method::PUT,
            &path,
            Some(&user_token),
            Some(json!({"max_per_day": 5000})),
        )
        .await;
    assert_error((status, &got), StatusCode::FORBIDDEN, "ADMIN_REQUIRED");
    let (_, view) = app.get(&path).await;
    assert_eq!(view["max_per_day"], 100);

    // Cap changes are in the audit log as SIM updates.
    let (_, logs) = app.get("/api/logs?action=sim.update").await;
    let entries = logs["logs"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["details"].to_string().contains("max_per_day")),
        "{logs}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_panel_shows_sends_against_caps_and_admins_edit_the_caps() {
    let app = TestApp::spawn().await;
    let (sim, modem, agent) = online_sim(&app, "+85261110061").await;
    set_caps(&app, sim, json!({"max_per_day": 600})).await;
    let (id, _) = send_bulk(&app, &numbers(3, 9900), json!({"route": "sim"})).await;
    wait_all_sent(&app, id, Duration::from_secs(20)).await;
    assert_eq!(modem.sent().len(), 3);

    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let list = admin.get("/sims").await.body;
    assert!(list.contains("3 / 600 per 24 h"), "{list}");

    let edit = format!("/sims/{sim}/edit");
    let form = admin.get(&edit).await.body;
    assert_eq!(hidden_input(&form, "max_per_day").as_deref(), Some("600"));
    let refused = admin
        .submit(
            &edit,
            &edit,
            &[
                ("label", "x"),
                ("status", "active"),
                ("max_per_minute", "0"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("max_per_minute must be"),
        "{}",
        refused.body
    );
    let saved = admin
        .submit(
            &edit,
            &edit,
            &[
                ("label", "x"),
                ("status", "active"),
                ("max_per_minute", "4"),
                ("max_per_hour", ""),
                ("max_per_day", " 500 "),
                ("send_interval_secs", "9"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, view) = app.get(&format!("/api/sim-cards/{sim}")).await;
    assert_eq!(
        (
            &view["max_per_minute"],
            &view["max_per_hour"],
            &view["max_per_day"],
            &view["send_interval_secs"]
        ),
        (&json!(4), &Value::Null, &json!(500), &json!(9)),
        "{view}"
    );
    let list = admin.get("/sims").await.body;
    assert!(
        list.contains("3 / 500 per 24 h") && list.contains("~9 s apart"),
        "{list}"
    );

    agent.stop().await;
    app.teardown().await;
}

#[tokio::test]
async fn a_sim_job_a_dead_releaser_placed_but_never_published_is_published_by_the_next() {
    let mut app = TestApp::spawn().await;
    let number = "+85261118801";
    let sim_id = app.create_sim(number).await;
    // The SIM has never been online: its send waits in the release queue, unplaced.
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91238801", "content": "placed, never published", "sim_card_id": sim_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message_id = body["message_id"].as_i64().unwrap();
    let recipient_id: i64 = sqlx::query_scalar("SELECT id FROM recipients WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    // What a releaser killed between committing the placement and the broker's confirm
    // leaves behind: placed on the SIM, recorded as unconfirmed, in no queue.
    sqlx::query("UPDATE recipients SET sim_card_id = $2 WHERE id = $1")
        .bind(recipient_id)
        .bind(sim_id)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sim_jobs_unconfirmed (recipient_id, sim_card_id) VALUES ($1, $2)")
        .bind(recipient_id)
        .bind(sim_id)
        .execute(&app.db)
        .await
        .unwrap();

    // The next releaser (a restarted API) publishes it again; the agent sends it once.
    app.restart_api().await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, number, &modem).await;
    app.wait_recipient(message_id, "sent").await;
    assert_eq!(modem.sent().len(), 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sim_jobs_unconfirmed")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "confirmed placements are forgotten");
    agent.stop().await;
    app.teardown().await;
}
