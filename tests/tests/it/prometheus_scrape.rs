//! A real Prometheus (Debian's `prometheus` package) scrapes a running stack and must find
//! every `smsgate_` series the committed dashboards (`deploy/grafana/dashboards/*.json`)
//! and alert rules (`deploy/prometheus/alerts.yml`) query, so a renamed or dropped metric
//! fails the build instead of emptying a panel or silencing an alert (issue #17).
//!
//! The names come from the queries themselves: the dashboards' `expr` fields, and the rules
//! as the Prometheus under test loaded them (`/api/v1/rules`), which also proves it accepts
//! the rule file.
//!
//! Series that exist only after an event: counters and gauges with labels from a fixed
//! list (outcomes, reasons, priorities, retry steps) are registered at zero at start, so
//! dead letters, retries and webhook failures need not be provoked. What is labelled by
//! something only traffic creates is produced here: HTTP requests (`route`), a SIM with a
//! running agent that heartbeats with a signal (`smsgate_sim_online`,
//! `smsgate_sim_signal_rssi`) and a send placed on it (`smsgate_sim_jobs_released_total`).

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use smsgate_tests::app::TestApp;
use smsgate_tests::modem_sim::{eventually, EdgeApp, ModemSim};

const DEADLINE: Duration = Duration::from_secs(30);

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The metric names a PromQL expression selects, those starting with `smsgate_`: every
/// identifier outside quoted strings (label values, regexes). Label names and functions
/// are identifiers too, but none starts with `smsgate_`.
fn smsgate_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for q in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if q == '\\' && c != '`' {
                    escaped = true;
                } else if q == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut ident = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' || n == ':' {
                    ident.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if ident.starts_with("smsgate_") {
                names.insert(ident);
            }
        }
    }
    names
}

/// Every `expr` in a Grafana dashboard, wherever the panel nests it.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The committed dashboards' queries, by file.
fn committed_dashboards() -> Vec<(String, Vec<String>)> {
    let dir = repo_path("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let mut exprs = Vec::new();
            dashboard_exprs(&json, &mut exprs);
            (path.display().to_string(), exprs)
        })
        .collect()
}

/// A `prometheus` server in a temporary directory, killed when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    /// Starts Debian's `prometheus` on a free loopback port, scraping `api` and
    /// `dispatcher` every second, with the committed alert rules evaluated every second.
    fn start(dir: PathBuf, api: SocketAddr, dispatcher: SocketAddr) -> Prometheus {
        let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            repo_path("deploy/prometheus/alerts.yml"),
            dir.join("alerts.yml"),
        )
        .unwrap();
        // The same job names as deploy/prometheus/prometheus.yml: the rules select on them.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [alerts.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: api\n    static_configs: [{{targets: ['{api}']}}]\n\
             \x20 - job_name: dispatcher\n    static_configs: [{{targets: ['{dispatcher}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: bound and released; nothing else on this host picks ports at random
        // in the instant between.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{binary}` ({e}): install Debian's prometheus package \
                     (scripts/check-observability.sh does, and `make test` runs it)"
                )
            });
        Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, asserting success.
    async fn api(&self, http: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
        let response = http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// How many series `selector` matches now.
    async fn series(&self, http: &reqwest::Client, selector: &str) -> usize {
        let data = self.api(http, "query", &[("query", selector)]).await;
        data["result"].as_array().map_or(0, Vec::len)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn metric_names_are_read_from_promql_not_from_strings_or_labels() {
    let names = smsgate_metrics(
        r#"sum by (le) (rate(smsgate_hkt_request_duration_seconds_bucket{answer=~"smsgate_x|5xx"}[5m]))
           / on () group_left sum(smsgate_gateway_outcomes_total offset 15m) or vector(0)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "smsgate_gateway_outcomes_total",
            "smsgate_hkt_request_duration_seconds_bucket"
        ]
    );
}

#[test]
fn every_dashboard_panel_queries_something() {
    let dashboards = committed_dashboards();
    assert!(dashboards.len() >= 2, "{dashboards:?}");
    for (file, exprs) in dashboards {
        assert!(exprs.len() >= 10, "{file} has only {} queries", exprs.len());
        let names: BTreeSet<String> = exprs.iter().flat_map(|e| smsgate_metrics(e)).collect();
        assert!(names.len() >= 8, "{file}: {names:?}");
    }
}

#[tokio::test]
async fn prometheus_scrapes_every_smsgate_series_the_dashboards_and_alerts_use() {
    let app = TestApp::spawn().await;

    // Traffic: a send through HKT, and one through a SIM whose agent runs (heartbeats
    // with a signal, the SIM is placed a job).
    let hkt = app.send_sms("12345678", "scraped").await;
    let sim_id = app.create_sim("+85291230000").await;
    let modem = ModemSim::start().unwrap();
    let agent = app.start_agent(sim_id, "+85291230000", &modem).await;
    app.wait_online(sim_id).await;
    let (status, body) = app
        .post(
            "/api/sms",
            json!({"recipient": "91234567", "content": "via the SIM", "sim_card_id": sim_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let via_sim = body["message_id"].as_i64().unwrap();
    app.wait_until_final(hkt, DEADLINE).await;
    eventually(DEADLINE, "the SIM sent its message", || async {
        let (status, _, _) = app.recipient_status_of(via_sim).await;
        matches!(status.as_str(), "sent" | "delivered").then_some(())
    })
    .await;

    let api: SocketAddr = app
        .base_url
        .trim_start_matches("http://")
        .parse()
        .expect("the API listens on an address");
    let dispatcher = app
        .dispatcher
        .as_ref()
        .and_then(|d| d.metrics_addr)
        .expect("the dispatcher serves /metrics");
    let dir = std::env::temp_dir().join(format!("smsgate-prometheus-{}", app.prefix));
    let prometheus = Prometheus::start(dir, api, dispatcher);
    let http = &app.http;

    eventually(DEADLINE, "prometheus is ready", || async {
        let ready = http.get(format!("{}/-/ready", prometheus.url)).send().await;
        ready.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await;

    // The rules as Prometheus loaded them: every alert of the file, with its query.
    let rules = prometheus.api(http, "rules", &[]).await;
    let loaded: Vec<(String, String)> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["query"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let alert_names: BTreeSet<&str> = loaded.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "SmsBacklogGrowing",
        "SmsGatewayErrorRate",
        "SmsDeadLetters",
        "SmsNoDispatcherConsuming",
        "SmsSimOffline",
        "SmsWebhookEndpointFailing",
    ] {
        assert!(
            alert_names.contains(expected),
            "{expected} not loaded: {alert_names:?}\n{}",
            prometheus.log()
        );
    }

    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (_, query) in &loaded {
        wanted.extend(smsgate_metrics(query));
    }
    for (_, exprs) in committed_dashboards() {
        wanted.extend(exprs.iter().flat_map(|e| smsgate_metrics(e)));
    }
    assert!(wanted.len() >= 20, "too few metric names read: {wanted:?}");

    // Both targets up, then every wanted series present (scrapes every second).
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut missing: Vec<String> = wanted.iter().cloned().collect();
    loop {
        let mut still = Vec::new();
        for name in &missing {
            if prometheus.series(http, name).await == 0 {
                still.push(name.clone());
            }
        }
        missing = still;
        let up = prometheus.series(http, "up == 1").await;
        if (missing.is_empty() && up == 2) || tokio::time::Instant::now() >= until {
            assert_eq!(up, 2, "both targets up\n{}", prometheus.log());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "series the dashboards or alert rules query but the stack does not export: {missing:?}\n\
         (found: {:?})",
        wanted
            .difference(&missing.iter().cloned().collect())
            .collect::<Vec<_>>()
    );

    // The SIM's gauges carry its id and what its agent reported.
    let sim = sim_id.to_string();
    let online = prometheus
        .api(http, "query", &[("query", "smsgate_sim_online")])
        .await;
    let online = &online["result"][0];
    assert_eq!(online["metric"]["sim"], sim.as_str(), "{online}");
    assert_eq!(online["value"][1], "1", "{online}");

    drop(prometheus);
    agent.stop().await;
    app.teardown().await;
}

/// The backlog gauges (set by the releaser, every 20 s) count waiting recipients by
/// priority, scheduled ones included, and age only what is due: with no dispatcher running,
/// released recipients stay pending.
#[tokio::test]
async fn the_backlog_gauges_count_waiting_recipients_by_priority() {
    let app = TestApp::spawn_without_dispatcher().await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for body in [
        json!({"recipients": ["12345678", "23456789"], "content": "due", "priority": "high"}),
        json!({"recipients": ["34567890", "45678901", "56789012"], "content": "later",
               "priority": "low", "send_at": in_an_hour}),
    ] {
        let (status, body) = app.post("/api/sms/send-bulk", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let gauge = |page: &smsgate_tests::scrape::Scrape, name: &str, priority: &str| {
        page.sum(name, &[("priority", priority)])
    };
    let until = tokio::time::Instant::now() + DEADLINE;
    let page = loop {
        let page = app.api_metrics().await;
        let sampled = gauge(&page, "smsgate_backlog_recipients", "low") == Some(3.0)
            && gauge(&page, "smsgate_backlog_oldest_seconds", "high") > Some(0.0);
        if sampled || tokio::time::Instant::now() >= until {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let recipients = |p| gauge(&page, "smsgate_backlog_recipients", p);
    let oldest = |p| gauge(&page, "smsgate_backlog_oldest_seconds", p);
    assert_eq!(recipients("high"), Some(2.0), "{}", page.text);
    assert_eq!(recipients("normal"), Some(0.0), "{}", page.text);
    assert_eq!(recipients("low"), Some(3.0), "{}", page.text);
    // Waited since it was accepted (at least one sample period: the first came before it).
    assert!(
        oldest("high").is_some_and(|s| (1.0..60.0).contains(&s)),
        "{}",
        page.text
    );
    // Scheduled for later: not due, so not waiting yet.
    assert_eq!(oldest("low"), Some(0.0), "{}", page.text);
    assert_eq!(oldest("normal"), Some(0.0), "{}", page.text);
    app.teardown().await;
}
