//! The OpenAPI contract (issue #16): every route of the JSON API is in the document with
//! its answers and its auth, the docs page is served from the binary, and the schemathesis
//! fuzzer finds no server error and no answer that breaks the document (docs/api.md).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use smsgate_tests::app::TestApp;

/// Served routes that are deliberately not operations of the document, and why.
const NOT_DOCUMENTED: &[(&str, &str)] = &[
    // The docs page itself: HTML and Swagger UI's scripts, not JSON API operations.
    ("/api/docs", "the human docs page (HTML)"),
    ("/api/docs/", "the human docs page (HTML)"),
    ("/api/docs/{*rest}", "the docs page's embedded JS and CSS"),
];

/// The routes the document must cover: the JSON API, the health checks and the metrics.
/// (Socket.IO at `/socket.io/` is a layer, not a route, and not JSON over HTTP.)
fn in_contract(path: &str) -> bool {
    path.starts_with("/api") || path.starts_with("/health") || path == "/metrics"
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("a path item") {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn every_route_is_documented_with_its_answers_and_its_auth() {
    let app = TestApp::spawn_without_dispatcher().await;
    let state = app.api.as_ref().expect("a running API").state.clone();
    let served: BTreeSet<(String, String)> =
        smsgate_api::route_list(&smsgate_api::build_app(state))
            .into_iter()
            .filter(|(_, path)| in_contract(path))
            .filter(|(_, path)| !NOT_DOCUMENTED.iter().any(|(p, _)| p == path))
            .map(|(method, path)| (method.to_string(), path))
            .collect();
    assert!(served.len() > 40, "the route listing read only {served:?}");
    let doc = serde_json::to_value(smsgate_api::openapi::document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = documented_operations(&doc);

    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "served but not in the OpenAPI document: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        stale.is_empty(),
        "in the OpenAPI document but not served: {stale:?}"
    );

    let mut problems = Vec::new();
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let name = format!("{method} {path}");
        let Some(responses) = operation["responses"].as_object() else {
            problems.push(format!("{name}: no responses"));
            continue;
        };
        if !responses.keys().any(|status| status.starts_with('2')) {
            problems.push(format!("{name}: no success answer"));
        }
        for status in ["500", "503"] {
            if !responses.contains_key(status) {
                problems.push(format!("{name}: no {status}"));
            }
        }
        // Error answers carry the error body (the probes answer 503 with their own).
        for (status, response) in responses {
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            let probe = path.starts_with("/health") && status == "503";
            if !status.starts_with('2') && !probe && schema != "#/components/schemas/ErrorBody" {
                problems.push(format!("{name}: its {status} is not the error body"));
            }
        }
        // Security is explicit on every operation: `{}` alone for the public ones.
        let Some(security) = operation["security"].as_array().filter(|s| !s.is_empty()) else {
            problems.push(format!("{name}: no security requirement"));
            continue;
        };
        let public = security
            .iter()
            .any(|s| s.as_object().is_some_and(|o| o.is_empty()));
        if !public && !responses.contains_key("401") {
            problems.push(format!("{name}: needs credentials but has no 401"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Which routes are public is part of the contract: these, and no other.
    let public: BTreeSet<String> = documented
        .iter()
        .filter(|(method, path)| {
            doc["paths"][path][method.to_lowercase()]["security"]
                .as_array()
                .is_some_and(|s| {
                    s.iter()
                        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
                })
        })
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let expected: BTreeSet<String> = [
        "GET /api/openapi.json",
        "GET /health",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "POST /api/auth",
        "POST /api/auth/login",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(public, expected);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    app.teardown().await;
}

#[tokio::test]
async fn the_document_and_the_docs_page_are_served_from_the_binary_without_auth() {
    let app = TestApp::spawn_without_dispatcher().await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(app.url(path)).timeout(Duration::from_secs(10));
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, content_type, response.text().await.unwrap())
        }
    };

    let (status, content_type, body) = get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        served,
        serde_json::to_value(smsgate_api::openapi::document()).unwrap()
    );

    let (status, content_type, page) = get("/api/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("swagger-ui"), "{page}");
    // Everything the page loads comes from us: no CDN (the page must work offline).
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    for (asset, kind, at_least) in [
        ("swagger-ui-bundle.js", "javascript", 100_000),
        ("swagger-ui.css", "text/css", 10_000),
        ("swagger-initializer.js", "javascript", 100),
    ] {
        assert!(page.contains(asset), "the page does not load {asset}");
        let (status, content_type, body) = get(&format!("/api/docs/{asset}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(content_type.contains(kind), "{asset}: {content_type}");
        assert!(body.len() >= at_least, "{asset}: {} bytes", body.len());
    }
    let (_, _, initializer) = get("/api/docs/swagger-initializer.js").await;
    assert!(initializer.contains("/api/openapi.json"), "{initializer}");
    app.teardown().await;
}

/// The schemathesis binary: `SCHEMATHESIS_BIN`, else the venv scripts/ensure-schemathesis.sh
/// installs. Missing is a failure, not a skip: `make test` installs it.
fn schemathesis_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCHEMATHESIS_BIN") {
        return PathBuf::from(bin);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.run/tools/schemathesis/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed: run scripts/ensure-schemathesis.sh (make test does), \
         or set SCHEMATHESIS_BIN"
    );
    venv
}

/// The fuzzer's admin account, with an id the fuzzer will not come up with (it tries small
/// ids and the bounds of the schema's ranges): a generated `PUT /api/admin/users/{id}`
/// with a new password would otherwise revoke the very token the run uses, and every later
/// request would test nothing but the 401.
const FUZZER_ID: i64 = 7_340_033;

/// schemathesis against a live stack, as an admin, with every check that applies to this
/// API; any finding fails the test with the fuzzer's report (it prints a `curl` line that
/// reproduces each one).
///
/// Left out, with why:
/// - `positive_data_acceptance`: it wants a 2xx for any schema-valid input, but a valid id
///   that names no row is rightly a 404, and a valid password change of a user the run has
///   deleted a 404 too;
/// - `object_level_authorization`: it needs a second user's credentials and resources; the
///   authorization matrix (authz_matrix.rs) tests exactly that, route by route;
/// - the stateful phase: the document declares no links between operations.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_contract() {
    let bin = schemathesis_bin();
    let mut app = TestApp::spawn_without_dispatcher().await;
    // Without broker admin settings: registering a SIM would otherwise create a RabbitMQ
    // user on the shared test broker for every SIM the fuzzer invents.
    let mut settings = app.api_settings();
    settings.core.broker_admin = None;
    app.api.take().expect("a running API").stop().await;
    let api = smsgate_api::start(settings).await.expect("start the API");
    app.base_url = format!("http://{}", api.addr);
    app.api = Some(api);

    let hash = smsgate_core::auth::hash_password("fuzzer password 1").unwrap();
    let id = smsgate_core::auth::repo::insert_user(&app.db, "fuzzer", &hash, true, false)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET id = $1 WHERE id = $2")
        .bind(FUZZER_ID)
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let token = app.login("fuzzer", "fuzzer password 1").await;

    let run = tokio::process::Command::new(&bin)
        .args(["run", &app.url("/api/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,object_level_authorization",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        // Bounded and repeatable: a fixed seed, no example database carried between runs.
        .args(["--max-examples", "25", "--seed", "16"])
        // (deterministic mode also keeps no example database between runs)
        .args(["--generation-deterministic"])
        .args(["--generation-with-security-parameters", "false"])
        .args(["--workers", "2", "--request-timeout", "20"])
        .args(["--no-color", "--output-truncate", "false"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // It really tested the API: every operation it selected (all of the document's), not an
    // empty document.
    let selected = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Selected: "))
        .and_then(|counts| counts.split_once('/'))
        .unwrap_or_else(|| panic!("no `Selected: n/m` in the report:\n{report}"));
    assert_eq!(selected.0, selected.1, "operations left out:\n{report}");
    assert!(
        selected.0.parse::<usize>().unwrap() > 40,
        "too few operations:\n{report}"
    );
    assert!(
        report.contains(&format!("Tested: {}\n", selected.0)),
        "not every operation was tested:\n{report}"
    );
    assert!(report.contains(" passed"), "{report}");
    app.teardown().await;
}
