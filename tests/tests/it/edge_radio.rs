//! Hostile radio input: the real modem agent against the modem simulator, the real broker
//! and database, receiving fragments of concatenated SMS whose other parts never come.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use smsgate_modem_agent::inbound::Limits;
use smsgate_modem_agent::pdu::encode_deliver;
use smsgate_tests::app::TestApp;
use smsgate_tests::modem_sim::{eventually, EdgeApp, ModemSim};

const SIM_NUMBER: &str = "+85261110002";
const FLOOD: usize = 30;
const CAP: usize = 4;

/// Part 1 of a 2-part SMS from sender `n`: the first half of a message that never ends.
fn lone_fragment(n: usize) -> String {
    let text = format!("fragment {n:02} ").repeat(20); // 240 GSM-7 septets: 2 parts
    let parts = encode_deliver(&format!("+8529{n:07}"), &text, Utc::now(), n as u8);
    assert_eq!(parts.len(), 2);
    parts[0].clone()
}

async fn inbox_of(app: &TestApp) -> (i64, Vec<Value>) {
    let (_, body) = app.get("/api/sms/inbox?per_page=100").await;
    (
        body["total"].as_i64().unwrap_or(0),
        body["messages"].as_array().cloned().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_flood_of_lone_fragments_stays_within_the_cap_and_leaves_the_sim_marked_incomplete() {
    let app = TestApp::spawn().await;
    let sim_id = app.create_sim(SIM_NUMBER).await;
    let modem = ModemSim::start().unwrap();
    let mut settings = app.agent_settings(sim_id, SIM_NUMBER, None);
    settings.incomplete_sms = Limits {
        max_age: Duration::from_secs(3600),
        max_parts: CAP,
    };
    let agent = smsgate_modem_agent::start(settings.clone(), modem.clone())
        .await
        .unwrap();
    app.wait_online(sim_id).await;

    // A flood of first halves, and one whole SMS in the middle of it.
    let fragments: Vec<String> = (0..FLOOD).map(lone_fragment).collect();
    modem.receive_pdus(&fragments[..FLOOD / 2]);
    let whole = "A whole SMS amid the flood. ".repeat(8); // 224 septets: 2 parts
    modem.receive_sms("+85298760000", &whole);
    modem.receive_pdus(&fragments[FLOOD / 2..]);

    // Past the cap the oldest are given up: published with a marker, deleted from the SIM.
    // Only the newest CAP fragments stay, waiting for their siblings.
    let (_, inbox) = eventually(
        Duration::from_secs(30),
        "all but CAP fragments published and the whole SMS",
        || async {
            let inbox = inbox_of(&app).await;
            (inbox.0 == (FLOOD - CAP + 1) as i64 && modem.stored() == CAP).then_some(inbox)
        },
    )
    .await;
    let complete = inbox.iter().find(|m| m["message"] == whole.as_str());
    assert_eq!(complete.expect("the whole SMS")["parts"], 2);
    let partial: Vec<&Value> = inbox
        .iter()
        .filter(|m| m["message"] != whole.as_str())
        .collect();
    assert_eq!(partial.len(), FLOOD - CAP);
    for m in &partial {
        let text = m["message"].as_str().unwrap();
        assert!(text.ends_with("[part 2 of 2 missing]"), "{text}");
        assert!(text.starts_with("fragment "), "{text}");
        assert_eq!(m["parts"], 1);
    }
    // The oldest went first: the newest CAP senders are not among them.
    for n in FLOOD - CAP..FLOOD {
        let sender = format!("+8529{n:07}");
        assert!(partial.iter().all(|m| m["sender"] != sender.as_str()));
    }
    agent.stop().await;

    // A restart finds the waiting fragments on the SIM again; with a short age limit they
    // are given up too, and the SIM ends empty.
    settings.incomplete_sms.max_age = Duration::from_secs(2);
    let agent = smsgate_modem_agent::start(settings, modem.clone())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the aged fragments published and the SIM empty",
        || async {
            let (total, _) = inbox_of(&app).await;
            (total == (FLOOD + 1) as i64 && modem.stored() == 0).then_some(())
        },
    )
    .await;
    let (_, inbox) = inbox_of(&app).await;
    for n in FLOOD - CAP..FLOOD {
        let sender = format!("+8529{n:07}");
        let m = inbox
            .iter()
            .find(|m| m["sender"] == sender.as_str())
            .expect("the aged fragment");
        assert!(m["message"]
            .as_str()
            .unwrap()
            .ends_with("[part 2 of 2 missing]"));
    }

    agent.stop().await;
    app.teardown().await;
}
