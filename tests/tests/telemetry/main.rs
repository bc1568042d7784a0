//! Traces leave the processes: one trace follows a message from `POST /api/sms` through
//! RabbitMQ to the dispatcher's gateway call, exported over OTLP/HTTP to a collector this
//! test runs itself, and decoded from protobuf here.
//!
//! A binary of its own because the tracing subscriber and its exporter are process-wide.
//! The dispatcher runs in a second process (this same binary, asked to play the dispatcher)
//! so that each service exports under its own `service.name` with its own exporter, as in
//! production, and the trace really crosses a process boundary through `traceparent`.

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use smsgate_dispatcher::settings::Settings as DispatcherSettings;
use smsgate_shared::telemetry::{self, TelemetrySettings};
use smsgate_tests::app::{test_amqp_url, TestApp, TestOptions};

const TEST_NAME: &str = "one_trace_follows_a_message_from_the_api_to_the_gateway";
/// Set (to the collector's URL) in the child process that plays the dispatcher.
const CHILD_ENDPOINT: &str = "SMSGATE_TELEMETRY_TEST_ENDPOINT";
const CHILD_DATABASE: &str = "SMSGATE_TELEMETRY_TEST_DATABASE";
const CHILD_PREFIX: &str = "SMSGATE_TELEMETRY_TEST_PREFIX";
const CHILD_GATEWAY: &str = "SMSGATE_TELEMETRY_TEST_GATEWAY";
const DEADLINE: Duration = Duration::from_secs(30);

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

/// The smallest OTLP/HTTP trace receiver: decodes every export and keeps its spans.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    /// Listens on a free loopback port; returns the traces endpoint URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1/traces")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    ""
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_message_from_the_api_to_the_gateway() {
    if let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) {
        return play_the_dispatcher(endpoint).await;
    }
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let telemetry = telemetry::init_with(
        "smsgate-api",
        TelemetrySettings {
            traces_endpoint: Some(endpoint.clone()),
            ..Default::default()
        },
    )
    .expect("telemetry with an exporter");
    let app = TestApp::spawn_without_dispatcher().await;
    let mut dispatcher = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENDPOINT, &endpoint)
        .env(CHILD_DATABASE, &app.database_url)
        .env(CHILD_PREFIX, &app.prefix)
        .env(CHILD_GATEWAY, app.mock.gateway_url())
        .stdin(Stdio::piped())
        // Its logs and test report, shown only if it fails.
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the dispatcher process");

    let id = app.send_sms("12345678", "traced end to end").await;
    let sent = is_sent_in_time(&app, id).await;

    // Closing its stdin stops the dispatcher; it flushes its spans before it exits.
    drop(dispatcher.stdin.take());
    let output = tokio::time::timeout(DEADLINE, dispatcher.wait_with_output())
        .await
        .expect("the dispatcher process stops")
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        sent,
        "message {id} not sent in {DEADLINE:?}; the dispatcher said:\n{report}"
    );
    assert!(
        output.status.success(),
        "the dispatcher process failed:\n{report}"
    );
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap()
        .expect("the API's spans reach the collector");

    let spans = collector.spans();
    let accept = spans
        .iter()
        .find(|s| s.name == "sms.accept" && s.attributes.get("message.id") == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no sms.accept span for message {id} in {spans:#?}"));
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == accept.trace_id)
        .collect();
    let one = |name: &str| -> &ReceivedSpan {
        let found: Vec<&&ReceivedSpan> = trace.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} in the trace: {trace:#?}");
        found[0]
    };
    let request = one("http.request");
    let job = one("dispatch.job");
    let submit = one("hkt.submit");

    // Request → accept → (traceparent through RabbitMQ) → job → gateway call.
    assert_eq!(accept.parent_span_id, request.span_id);
    assert_eq!(
        job.parent_span_id, accept.span_id,
        "the job's traceparent names sms.accept"
    );
    assert_eq!(submit.parent_span_id, job.span_id);
    assert_eq!(
        request.attributes.get("http.route").map(String::as_str),
        Some("/api/sms")
    );
    assert_eq!(job.attributes.get("message.id"), Some(&id.to_string()));
    assert_eq!(
        submit.attributes.get("http.status").map(String::as_str),
        Some("200")
    );

    // Each side under its own name, from its own process and exporter.
    assert_eq!(request.service, "smsgate-api");
    assert_eq!(accept.service, "smsgate-api");
    assert_eq!(job.service, "smsgate-dispatcher");
    assert_eq!(submit.service, "smsgate-dispatcher");

    // Neither the number nor the text travels in a span.
    for span in &trace {
        for value in span.attributes.values() {
            assert!(
                !value.contains("12345678") && !value.contains("traced end to end"),
                "{span:?}"
            );
        }
    }
    app.teardown().await;
}

/// Polls the message until it is `sent`; false at the deadline.
async fn is_sent_in_time(app: &TestApp, id: i64) -> bool {
    let until = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < until {
        if app.message(id).await["status"] == "sent" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The child process: a dispatcher on the parent's database, queues and mock gateway,
/// exporting as `smsgate-dispatcher` until its stdin closes.
async fn play_the_dispatcher(endpoint: String) {
    let telemetry = telemetry::init_with(
        "smsgate-dispatcher",
        TelemetrySettings {
            traces_endpoint: Some(endpoint),
            ..Default::default()
        },
    )
    .expect("telemetry with an exporter");
    let var = |key: &str| std::env::var(key).unwrap_or_else(|_| panic!("{key} is set"));
    let mut settings = DispatcherSettings::for_tests(
        &var(CHILD_DATABASE),
        &test_amqp_url(),
        &var(CHILD_PREFIX),
        &var(CHILD_GATEWAY),
    );
    // The parent's stack declared the retry queues with TestApp's schedule.
    settings.queue.retry_schedule = TestOptions::default().retry_schedule;
    let dispatcher = smsgate_dispatcher::start(settings)
        .await
        .expect("start the dispatcher");
    tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await
    .unwrap();
    dispatcher.stop().await;
    // Dropping the guard sends the last batch; it blocks, so off the runtime's workers.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();
}
