//! `/metrics`: the API's and the dispatcher's Prometheus pages. Each stack has registries
//! of its own, so the figures below are exactly this test's work.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use smsgate_tests::app::{assert_error, TestApp, TestOptions};
use smsgate_tests::scrape::Scrape;

const DEADLINE: Duration = Duration::from_secs(30);

/// Whose `/metrics` page.
#[derive(Clone, Copy)]
enum Page {
    Api,
    Dispatcher,
}

/// Scrapes until `ready` holds or the deadline passes; returns the last scrape.
async fn scrape_until(app: &TestApp, which: Page, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = match which {
            Page::Api => app.api_metrics().await,
            Page::Dispatcher => app.dispatcher_metrics().await,
        };
        if ready(&page) || tokio::time::Instant::now() >= until {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_accepted_sends_by_route() {
    let app = TestApp::spawn().await;
    let before = app.api_metrics().await;
    let accepted = [("route", "hkt"), ("kind", "single")];
    assert_eq!(
        before.sum("smsgate_messages_accepted_total", &accepted),
        Some(0.0)
    );

    let id = app.send_sms("12345678", "counted").await;
    let bulk = app
        .send_bulk(&["23456789".into(), "34567890".into()], "counted too")
        .await;
    app.wait_until_final(id, DEADLINE).await;
    app.wait_until_final(bulk, DEADLINE).await;
    let after = scrape_until(&app, Page::Api, |page| {
        page.sum("smsgate_outbox_jobs_total", &[("outcome", "confirmed")]) >= Some(3.0)
    })
    .await;

    assert_eq!(
        after.sum("smsgate_messages_accepted_total", &accepted),
        Some(1.0)
    );
    assert_eq!(
        after.sum("smsgate_recipients_accepted_total", &accepted),
        Some(1.0)
    );
    let bulk_labels = [("route", "hkt"), ("kind", "bulk")];
    assert_eq!(
        after.sum("smsgate_messages_accepted_total", &bulk_labels),
        Some(1.0)
    );
    assert_eq!(
        after.sum("smsgate_recipients_accepted_total", &bulk_labels),
        Some(2.0)
    );
    assert_eq!(
        after.sum("smsgate_outbox_jobs_total", &[("outcome", "confirmed")]),
        Some(3.0),
        "{}",
        after.text
    );
    assert_eq!(
        after.sum("smsgate_outbox_jobs_total", &[("outcome", "failed")]),
        Some(0.0)
    );
    app.teardown().await;
}

#[tokio::test]
async fn http_metrics_label_requests_with_the_route_template_not_the_raw_path() {
    let app = TestApp::spawn_without_dispatcher().await;
    let id = app.send_sms("12345678", "labelled").await;
    let (status, _) = app.get(&format!("/api/sms/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/no/such/page-4242").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let page = app.api_metrics().await;
    let requests = "smsgate_http_requests_total";
    let sent = [("method", "POST"), ("route", "/api/sms"), ("status", "2xx")];
    assert_eq!(page.sum(requests, &sent), Some(1.0), "{}", page.text);
    let read = [
        ("method", "GET"),
        ("route", "/api/sms/{id}"),
        ("status", "2xx"),
    ];
    assert_eq!(page.sum(requests, &read), Some(1.0), "{}", page.text);
    let missing = [("route", "unmatched"), ("status", "4xx")];
    assert_eq!(page.sum(requests, &missing), Some(1.0), "{}", page.text);
    assert_eq!(
        page.sum(
            "smsgate_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/api/sms")]
        ),
        Some(1.0)
    );
    // Raw paths (ids, junk) never become labels.
    assert!(
        !page.text.contains(&format!("/api/sms/{id}\"")),
        "{}",
        page.text
    );
    assert!(!page.text.contains("page-4242"), "{}", page.text);
    for route in page.label_values(requests, "route") {
        assert!(route == "unmatched" || route.starts_with('/'), "{route}");
    }
    app.teardown().await;
}

#[tokio::test]
async fn metrics_need_the_bearer_token_when_one_is_set() {
    let token = "metrics-token-0123456789abcdef";
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        metrics_token: Some(token.to_owned()),
        ..Default::default()
    })
    .await;
    let get = |bearer: Option<&'static str>| {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            (status, text)
        }
    };
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);

    let (status, text) = get(None).await;
    assert_error(
        (status, &json(&text)),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    let (status, text) = get(Some("not-the-metrics-token-at-all")).await;
    assert_error(
        (status, &json(&text)),
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );
    // The admin's login token is no metrics token either.
    let (status, text) = app
        .request(reqwest::Method::GET, "/metrics", Some(&app.token), None)
        .await;
    assert_error((status, &text), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");

    let (status, text) = get(Some("metrics-token-0123456789abcdef")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("# TYPE smsgate_http_requests_total counter"),
        "{text}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn the_dispatcher_counts_a_sent_message_on_its_metrics_port() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("12345678", "dispatched").await;
    let message = app.wait_until_final(id, DEADLINE).await;
    assert_eq!(message["status"], "sent");

    let sent = [("outcome", "sent")];
    let page = scrape_until(&app, Page::Dispatcher, |page| {
        page.sum("smsgate_gateway_outcomes_total", &sent) >= Some(1.0)
    })
    .await;
    assert_eq!(
        page.sum("smsgate_gateway_outcomes_total", &sent),
        Some(1.0),
        "{}",
        page.text
    );
    for outcome in ["permanent_failure", "retry", "dead"] {
        assert_eq!(
            page.sum("smsgate_gateway_outcomes_total", &[("outcome", outcome)]),
            Some(0.0),
            "{outcome}"
        );
    }
    assert_eq!(
        page.sum("smsgate_dispatch_jobs_consumed_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        page.sum(
            "smsgate_hkt_request_duration_seconds_count",
            &[("answer", "2xx")]
        ),
        Some(1.0)
    );
    assert_eq!(page.sum("smsgate_result_batch_size_sum", &[]), Some(1.0));
    assert!(page.sum("smsgate_result_batch_commit_seconds_count", &[]) >= Some(1.0));
    app.teardown().await;
}

#[tokio::test]
async fn a_dispatcher_with_a_metrics_token_refuses_scrapes_without_it() {
    let mut app = TestApp::spawn_without_dispatcher().await;
    let token = "dispatcher-metrics-token-0123456789";
    let mut settings = app.dispatcher_settings();
    settings.metrics_token = Some(smsgate_shared::metrics::MetricsToken::parse(token).unwrap());
    app.start_dispatcher_with(settings).await;
    let addr = app
        .dispatcher
        .as_ref()
        .and_then(|d| d.metrics_addr)
        .unwrap();
    let url = format!("http://{addr}/metrics");

    let bare = app.http.get(&url).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = app.http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let text = right.text().await.unwrap();
    assert!(
        text.contains("smsgate_dispatch_jobs_consumed_total"),
        "{text}"
    );
    app.teardown().await;
}
