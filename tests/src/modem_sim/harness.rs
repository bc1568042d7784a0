//! Edge gateway helpers on [`TestApp`]: register SIMs, run the real modem agent in-process
//! against a [`ModemSim`], and poll for what the central side wrote.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_modem_agent::{RunningAgent, Settings as AgentSettings};
use smsgate_shared::config::QueueSettings;
use smsgate_shared::domain::PhoneNumber;

use super::ModemSim;
use crate::app::{amqp_url_as, test_amqp_url, TestApp};

/// A SIM agent's broker login: (user, password).
type Login = (String, String);

/// The broker logins the API gave each test SIM when it was registered, by (queue prefix,
/// SIM id): the password is shown once, and agents started later need it.
static SIM_LOGINS: std::sync::Mutex<Option<std::collections::HashMap<(String, i64), Login>>> =
    std::sync::Mutex::new(None);

/// Remembers SIM `sim_id`'s broker login from a `POST /api/sim-cards` (or rotation) answer.
pub fn remember_sim_login(prefix: &str, sim_id: i64, broker: &Value) {
    let (Some(user), Some(password)) = (broker["username"].as_str(), broker["password"].as_str())
    else {
        panic!("the API answered no broker login for SIM {sim_id}: {broker}");
    };
    SIM_LOGINS
        .lock()
        .unwrap()
        .get_or_insert_with(Default::default)
        .insert(
            (prefix.to_owned(), sim_id),
            (user.to_owned(), password.to_owned()),
        );
}

/// SIM `sim_id`'s broker login, as remembered.
pub fn sim_login(prefix: &str, sim_id: i64) -> Option<Login> {
    SIM_LOGINS
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|logins| logins.get(&(prefix.to_owned(), sim_id)).cloned())
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` at `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not within {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Edge gateway helpers, as an extension so they live beside the simulator.
#[allow(async_fn_in_trait)]
pub trait EdgeApp {
    /// `POST /api/sim-cards`; asserts 201 and returns the SIM's id.
    async fn create_sim(&self, number: &str) -> i64;
    /// The agent's settings for SIM `sim_id`, matching this stack's queue settings, logged
    /// in as the SIM's own broker user (through `amqp_url`'s host when given: a proxy).
    fn agent_settings(&self, sim_id: i64, number: &str, amqp_url: Option<&str>) -> AgentSettings;
    /// Starts the real modem agent in-process against `modem`.
    async fn start_agent(&self, sim_id: i64, number: &str, modem: &ModemSim) -> RunningAgent;
    /// The SIM as `GET /api/sim-cards` lists it.
    async fn sim(&self, sim_id: i64) -> Value;
    /// Waits for the SIM to show online (its first heartbeat was ingested).
    async fn wait_online(&self, sim_id: i64) -> Value;
    /// A recipient's status straight from the database.
    async fn recipient_status_of(&self, message_id: i64) -> (String, i32, Option<String>);
    /// Waits until the message's only recipient has `status`.
    async fn wait_recipient(&self, message_id: i64, status: &str) -> (String, i32, Option<String>);
    /// `GET /api/sms/inbox`'s messages.
    async fn inbox(&self) -> Vec<Value>;
}

impl EdgeApp for TestApp {
    async fn create_sim(&self, number: &str) -> i64 {
        let (status, body) = self
            .post("/api/sim-cards", json!({"number": number, "label": "test"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_i64().unwrap();
        remember_sim_login(&self.prefix, id, &body["broker"]);
        id
    }

    fn agent_settings(&self, sim_id: i64, number: &str, amqp_url: Option<&str>) -> AgentSettings {
        // The same arguments as the API's and the dispatcher's, or the broker refuses the
        // agent's declarations.
        let (user, password) = sim_login(&self.prefix, sim_id).unwrap_or_else(|| {
            panic!("SIM {sim_id} was not registered through create_sim: no broker login")
        });
        let url = amqp_url_as(
            &amqp_url.map_or_else(test_amqp_url, str::to_owned),
            &user,
            &password,
        );
        let queue = QueueSettings {
            retry_schedule: self.options.retry_schedule.clone(),
            ..QueueSettings::for_tests(&url, &self.prefix)
        };
        let spool: PathBuf =
            std::env::temp_dir().join(format!("smsgate-spool-{}-{sim_id}", self.prefix));
        AgentSettings::for_tests(queue, sim_id, PhoneNumber::parse(number).unwrap(), spool)
    }

    async fn start_agent(&self, sim_id: i64, number: &str, modem: &ModemSim) -> RunningAgent {
        smsgate_modem_agent::start(self.agent_settings(sim_id, number, None), modem.clone())
            .await
            .expect("start the modem agent")
    }

    async fn sim(&self, sim_id: i64) -> Value {
        let (status, body) = self.get("/api/sim-cards").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array()
            .expect("a bare list, as the edge gateway's clients expect")
            .iter()
            .find(|s| s["id"] == sim_id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn wait_online(&self, sim_id: i64) -> Value {
        eventually(Duration::from_secs(15), "the SIM shows online", || async {
            let sim = self.sim(sim_id).await;
            (sim["online"] == true).then_some(sim)
        })
        .await
    }

    async fn recipient_status_of(&self, message_id: i64) -> (String, i32, Option<String>) {
        sqlx::query_as(
            "SELECT status, attempts, last_error FROM recipients WHERE message_id = $1 ORDER BY id LIMIT 1",
        )
        .bind(message_id)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    async fn wait_recipient(&self, message_id: i64, status: &str) -> (String, i32, Option<String>) {
        eventually(
            Duration::from_secs(20),
            &format!("message {message_id}'s recipient becomes {status}"),
            || async {
                let row = self.recipient_status_of(message_id).await;
                (row.0 == status).then_some(row)
            },
        )
        .await
    }

    async fn inbox(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/sms/inbox").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}
