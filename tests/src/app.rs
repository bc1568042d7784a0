//! `TestApp`: one isolated stack per test — a fresh database, a random queue prefix, the
//! mock HKT gateway, the API and a dispatcher, all in-process on port 0 — and typed helpers.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_api::settings::Settings as ApiSettings;
use smsgate_api::RunningApi;
use smsgate_dispatcher::settings::Settings as DispatcherSettings;
use smsgate_dispatcher::RunningDispatcher;
use smsgate_mock_hkt::MockHkt;
use sqlx::{Connection, PgConnection, PgPool};

use crate::scrape::Scrape;

/// The default admin's password in every test stack.
pub const ADMIN_PASSWORD: &str = "SMSpass#12";

/// How a test wants its stack.
#[derive(Clone)]
pub struct TestOptions {
    /// Short by default, so exhausting the schedule takes about a second.
    pub retry_schedule: Vec<Duration>,
    pub start_dispatcher: bool,
    /// Broker URL the API uses (a `CuttableProxy` in outage tests); the real one if `None`.
    pub api_amqp_url: Option<String>,
    /// Database URL the API serves requests with (a proxy in outage tests).
    pub api_database_url: Option<String>,
    /// Whether webhooks may point at loopback (where test receivers listen); off to test
    /// the refusal of internal addresses.
    pub allow_internal_webhooks: bool,
    /// The API's METRICS_TOKEN.
    pub metrics_token: Option<String>,
    /// HKT_RATE_LIMIT for the API's releaser and the dispatchers; unlimited if `None`.
    pub hkt_rate_limit: Option<f64>,
    /// SIM_OFFLINE_AFTER_SECS: the agents in tests heartbeat every second, so failover
    /// tests use a few seconds instead of 90.
    pub sim_offline_after: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            retry_schedule: vec![
                Duration::from_millis(300),
                Duration::from_millis(600),
                Duration::from_millis(900),
            ],
            start_dispatcher: true,
            api_amqp_url: None,
            api_database_url: None,
            allow_internal_webhooks: true,
            metrics_token: None,
            hkt_rate_limit: None,
            sim_offline_after: smsgate_core::outbox::DEFAULT_SIM_OFFLINE_AFTER,
        }
    }
}

pub fn test_database_server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn test_amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// RabbitMQ's management API, where the API creates each SIM's broker user
/// (TEST_BROKER_ADMIN_URL; the plugin is enabled by scripts/ensure-services.sh).
pub fn test_broker_admin() -> smsgate_core::sims::broker_users::BrokerAdminSettings {
    let url = std::env::var("TEST_BROKER_ADMIN_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into());
    smsgate_core::sims::broker_users::BrokerAdminSettings::parse(&url, &test_amqp_url())
        .expect("TEST_BROKER_ADMIN_URL is a management API URL with credentials")
}

/// `amqp_url` with the given user and password instead of its own.
pub fn amqp_url_as(amqp_url: &str, user: &str, password: &str) -> String {
    let mut url = reqwest::Url::parse(amqp_url).expect("an AMQP URL");
    url.set_username(user).expect("AMQP URLs have a user");
    url.set_password(Some(password))
        .expect("AMQP URLs have a password");
    url.to_string()
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub struct TestApp {
    pub api: Option<RunningApi>,
    pub dispatcher: Option<RunningDispatcher>,
    pub mock: MockHkt,
    pub db: PgPool,
    pub db_name: String,
    pub database_url: String,
    pub prefix: String,
    pub options: TestOptions,
    pub base_url: String,
    pub http: reqwest::Client,
    /// A JWT of the default admin.
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(TestOptions::default()).await
    }

    /// A stack without a dispatcher, for tests that send nothing (faster; jobs just queue).
    pub async fn spawn_without_dispatcher() -> TestApp {
        TestApp::spawn_with(TestOptions {
            start_dispatcher: false,
            ..Default::default()
        })
        .await
    }

    pub async fn spawn_with(options: TestOptions) -> TestApp {
        // Never exported, whatever OTEL_* the environment holds: the telemetry test target
        // installs its own exporter before any TestApp.
        let _ = smsgate_shared::telemetry::init_with(
            "smsgate-tests",
            smsgate_shared::telemetry::TelemetrySettings::default(),
        );
        let suffix: u64 = rand::thread_rng().gen();
        let (db_name, database_url) = create_database(suffix).await;
        let prefix = format!("t{suffix:016x}");
        let mock = MockHkt::spawn("127.0.0.1:0")
            .await
            .expect("start the mock gateway");

        let mut api_settings = ApiSettings::for_tests(
            options
                .api_database_url
                .as_ref()
                .map_or(&database_url, |u| u),
            options.api_amqp_url.as_deref().unwrap_or(&test_amqp_url()),
            &prefix,
        );
        api_settings.core.queue.retry_schedule = options.retry_schedule.clone();
        api_settings.core.webhook_allow_internal_targets = options.allow_internal_webhooks;
        api_settings.core.broker_admin = Some(test_broker_admin());
        api_settings.core.release = smsgate_core::outbox::ReleaseSettings {
            sim_offline_after: options.sim_offline_after,
            ..smsgate_core::outbox::ReleaseSettings::for_rate(options.hkt_rate_limit)
        };
        api_settings.metrics_token = options
            .metrics_token
            .as_deref()
            .map(|t| smsgate_shared::metrics::MetricsToken::parse(t).expect("a strong test token"));
        let api = smsgate_api::start(api_settings)
            .await
            .expect("start the API");
        let db = PgPool::connect(&database_url)
            .await
            .expect("connect to the test database");
        let base_url = format!("http://{}", api.addr);
        let mut app = TestApp {
            api: Some(api),
            dispatcher: None,
            mock,
            db,
            db_name,
            database_url,
            prefix,
            options: options.clone(),
            base_url,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        app.token = app.login("SMSadmin", ADMIN_PASSWORD).await;
        if options.start_dispatcher {
            app.start_dispatcher().await;
        }
        app
    }

    pub fn dispatcher_settings(&self) -> DispatcherSettings {
        let mut settings = DispatcherSettings::for_tests(
            &self.database_url,
            &test_amqp_url(),
            &self.prefix,
            &self.mock.gateway_url(),
        );
        settings.queue.retry_schedule = self.options.retry_schedule.clone();
        settings.webhooks.allow_internal_targets = self.options.allow_internal_webhooks;
        settings.hkt_rate_limit = self.options.hkt_rate_limit;
        settings
    }

    /// The API's settings for another instance (or a restart) on this stack.
    pub fn api_settings(&self) -> smsgate_api::settings::Settings {
        let mut settings =
            ApiSettings::for_tests(&self.database_url, &test_amqp_url(), &self.prefix);
        settings.core.queue.retry_schedule = self.options.retry_schedule.clone();
        settings.core.webhook_allow_internal_targets = self.options.allow_internal_webhooks;
        settings.core.broker_admin = Some(test_broker_admin());
        settings.core.release = smsgate_core::outbox::ReleaseSettings {
            sim_offline_after: self.options.sim_offline_after,
            ..smsgate_core::outbox::ReleaseSettings::for_rate(self.options.hkt_rate_limit)
        };
        settings
    }

    /// Stops the API (gracefully) and starts a new one on the same stack, as a restart.
    pub async fn restart_api(&mut self) {
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        let api = smsgate_api::start(self.api_settings())
            .await
            .expect("restart the API");
        self.base_url = format!("http://{}", api.addr);
        self.api = Some(api);
    }

    pub async fn start_dispatcher(&mut self) {
        self.start_dispatcher_with(self.dispatcher_settings()).await;
    }

    /// Starts a dispatcher with settings a test changed (from [`Self::dispatcher_settings`]).
    pub async fn start_dispatcher_with(&mut self, settings: DispatcherSettings) {
        let dispatcher = smsgate_dispatcher::start(settings)
            .await
            .expect("start the dispatcher");
        self.dispatcher = Some(dispatcher);
    }

    /// Simulates the dispatcher process dying: nothing is flushed or acked.
    pub async fn kill_dispatcher(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            d.kill().await;
        }
    }

    /// Stops the dispatcher and the API gracefully, as an operator's restart begins; the
    /// database, the broker's queues and the mock gateway stay.
    pub async fn stop_processes(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            d.stop().await;
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
    }

    /// Messages ready in `queue` (passive declare: fails if the queue does not exist).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, lapin::Error> {
        let conn =
            lapin::Connection::connect(&test_amqp_url(), lapin::ConnectionProperties::default())
                .await?;
        let channel = conn.create_channel().await?;
        let depth = channel
            .queue_declare(
                queue,
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .map(|q| q.message_count());
        let _ = conn.close(200, "depth read").await;
        depth
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Logs in through the API and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Creates a user directly (the admin API is a later issue) and returns (id, API token).
    pub async fn create_user(&self, username: &str, password: &str) -> (i64, String) {
        let hash = smsgate_core::auth::hash_password(password).unwrap();
        let id = smsgate_core::auth::repo::insert_user(&self.db, username, &hash, false, false)
            .await
            .unwrap();
        let token = smsgate_core::auth::service::issue_api_token(&self.db, id, "test")
            .await
            .unwrap();
        (id, token)
    }

    /// Any request; returns the status and the JSON body (`Null` when the body is not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, Some(&self.token), None)
            .await
    }

    /// `POST path` as `token` with an `Idempotency-Key`; returns the status, the JSON body
    /// and whether the answer says it is a replay (`Idempotent-Replayed: true`).
    pub async fn post_with_key(
        &self,
        token: &str,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value, bool) {
        let response = self
            .http
            .post(self.url(path))
            .timeout(Duration::from_secs(30))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            replayed,
        )
    }

    /// `POST /api/sms` as the admin; asserts 202 and returns the message id.
    pub async fn send_sms(&self, recipient: &str, content: &str) -> i64 {
        self.send_sms_as(&self.token, recipient, content).await
    }

    /// `POST /api/sms` with `token`'s credentials; asserts 202 and returns the message id.
    pub async fn send_sms_as(&self, token: &str, recipient: &str, content: &str) -> i64 {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/api/sms",
                Some(token),
                Some(json!({"recipient": recipient, "content": content})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "send failed: {body}");
        body["data"]["id"].as_i64().unwrap()
    }

    /// `POST /api/sms/send-bulk`; asserts 202 and returns the message id.
    pub async fn send_bulk(&self, recipients: &[String], content: &str) -> i64 {
        let (status, body) = self
            .post(
                "/api/sms/send-bulk",
                json!({"recipients": recipients, "content": content}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "bulk failed: {body}");
        body["data"]["id"].as_i64().unwrap()
    }

    /// `GET /api/sms/{id}`'s `data`.
    pub async fn message(&self, id: i64) -> Value {
        let (status, body) = self.get(&format!("/api/sms/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].clone()
    }

    /// Polls the message until its status is final (sent, failed, partial, cancelled,
    /// expired) or panics at the deadline.
    pub async fn wait_until_final(&self, id: i64, deadline: Duration) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let message = self.message(id).await;
            let done = ["sent", "failed", "partial", "cancelled", "expired"];
            if done.contains(&message["status"].as_str().unwrap_or("")) {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "message {id} not final in {deadline:?}: {message}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many messages are stored, straight from the database.
    pub async fn message_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// The API's `GET /metrics` (without credentials); asserts 200.
    pub async fn api_metrics(&self) -> Scrape {
        scrape(&self.http, &self.url("/metrics")).await
    }

    /// The dispatcher's `GET /metrics` on its own port; asserts 200.
    pub async fn dispatcher_metrics(&self) -> Scrape {
        let addr = self
            .dispatcher
            .as_ref()
            .and_then(|d| d.metrics_addr)
            .expect("a running dispatcher with a metrics listener");
        scrape(&self.http, &format!("http://{addr}/metrics")).await
    }

    /// Every recipient row of a message, straight from the database: (status, attempts).
    pub async fn recipient_rows(&self, message_id: i64) -> Vec<(String, String, i32)> {
        sqlx::query_as(
            "SELECT phone, status, attempts FROM recipients WHERE message_id = $1 ORDER BY id",
        )
        .bind(message_id)
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    pub async fn dead_letter_count(&self, message_id: i64) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Stops everything and drops the database.
    pub async fn teardown(mut self) {
        if let Some(d) = self.dispatcher.take() {
            d.stop().await;
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        self.db.close().await;
        drop_database(&self.db_name).await;
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let response = http.get(url).send().await.expect("metrics request sent");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Prometheus text format, not {content_type}"
    );
    Scrape::parse(&response.text().await.expect("metrics body"))
}

/// Creates an empty database named after `suffix`; returns its name and URL.
/// Test databases all start with `smsgate_test_`, so `make test` can sweep leftovers.
pub async fn create_database(suffix: u64) -> (String, String) {
    let db_name = format!("smsgate_test_{suffix:016x}");
    let server_url = test_database_server_url();
    let mut admin = PgConnection::connect(&server_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = with_database(&server_url, &db_name);
    (db_name, url)
}

/// Drops a test database, closing any connection left on it.
pub async fn drop_database(db_name: &str) {
    if let Ok(mut admin) = PgConnection::connect(&test_database_server_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// `n` distinct valid Hong Kong numbers, `prefix` making them distinct across calls.
pub fn numbers(n: usize, prefix: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:04}{:04}", prefix % 10_000, i % 10_000))
        .collect()
}

// ---- Web panel (issue #3) -------------------------------------------------------------

/// A browser-like client of the web panel: keeps its cookies, follows no redirects (tests
/// check where they point), and reads the CSRF token from the pages it gets.
pub struct PanelClient {
    pub http: reqwest::Client,
    pub base_url: String,
}

/// A panel response: status, headers and the body as text.
pub struct PanelResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl PanelResponse {
    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// A fresh panel client with an empty cookie jar.
    pub fn panel_client(&self) -> PanelClient {
        PanelClient {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("panel client"),
            base_url: self.base_url.clone(),
        }
    }

    /// A panel client signed in as `username`.
    pub async fn panel_login(&self, username: &str, password: &str) -> PanelClient {
        let client = self.panel_client();
        let response = client.login(username, password).await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "panel login failed: {}",
            response.body
        );
        client
    }
}

impl PanelClient {
    async fn read(response: reqwest::Response) -> PanelResponse {
        PanelResponse {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&self, path: &str) -> PanelResponse {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("panel GET sent");
        Self::read(response).await
    }

    /// POSTs a URL-encoded form as given (add `csrf_token` yourself, or use `submit`).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> PanelResponse {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .form(fields)
            .send()
            .await
            .expect("panel POST sent");
        Self::read(response).await
    }

    /// POSTs a form with the CSRF token of the page at `from`.
    pub async fn submit(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> PanelResponse {
        let page = self.get(from).await;
        let token = hidden_input(&page.body, "csrf_token")
            .unwrap_or_else(|| panic!("no csrf_token on {from}: {}", page.body));
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_form(path, &all).await
    }

    /// Signs in through the login form.
    pub async fn login(&self, username: &str, password: &str) -> PanelResponse {
        let form = self.get("/login").await;
        let token = hidden_input(&form.body, "csrf_token").expect("login csrf token");
        self.post_form(
            "/login",
            &[
                ("csrf_token", &token),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Sends the compose form (multipart, as the browser does) with the page's CSRF token
    /// and idempotency key, or `key` if given.
    pub async fn compose(
        &self,
        content: &str,
        recipients: &str,
        csv: Option<&str>,
        key: Option<&str>,
    ) -> PanelResponse {
        let page = self.get("/compose").await;
        let token = hidden_input(&page.body, "csrf_token").expect("compose csrf token");
        let page_key = hidden_input(&page.body, "idempotency_key").expect("idempotency key");
        let mut form = reqwest::multipart::Form::new()
            .text("csrf_token", token)
            .text("idempotency_key", key.map_or(page_key, str::to_owned))
            .text("content", content.to_owned())
            .text("recipients", recipients.to_owned());
        if let Some(csv) = csv {
            form = form.part(
                "csv",
                reqwest::multipart::Part::text(csv.to_owned())
                    .file_name("numbers.csv")
                    .mime_str("text/csv")
                    .unwrap(),
            );
        }
        let response = self
            .http
            .post(format!("{}/compose", self.base_url))
            .multipart(form)
            .send()
            .await
            .expect("compose sent");
        Self::read(response).await
    }
}

/// The value of the first `<input name="{name}" … value="…">` in a page (HTML-unescaped
/// for the characters tera escapes).
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let start = html.find(&marker)?;
    let tag_end = html[start..].find('>')? + start;
    let tag = &html[start..tag_end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value_end = tag[value_at..].find('"')? + value_at;
    Some(
        tag[value_at..value_end]
            .replace("&#x2F;", "/")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Asserts the status and that the body is our error format with `code`; returns the message.
#[track_caller]
pub fn assert_error(actual: (StatusCode, &Value), status: StatusCode, code: &str) -> String {
    let (actual_status, body) = actual;
    assert_eq!(actual_status, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message missing: {body}"));
    assert!(!message.is_empty(), "body: {body}");
    message.to_owned()
}
