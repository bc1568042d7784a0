//! The mock driven over real HTTP, as the dispatcher and the dev stack use it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::*;

async fn spawn() -> MockHkt {
    MockHkt::spawn("127.0.0.1:0").await.expect("mock spawns")
}

async fn submit(mock: &MockHkt, mrt: &str, text: &str) -> reqwest::Response {
    submit_with(&reqwest::Client::new(), mock, mrt, text)
        .await
        .expect("gateway answers")
}

async fn submit_with(
    client: &reqwest::Client,
    mock: &MockHkt,
    mrt: &str,
    text: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(mock.gateway_url())
        .form(&[
            ("application", "smsgate"),
            ("mrt", mrt),
            ("sender", "SMSGATE"),
            ("msg_utf8", text),
        ])
        .send()
        .await
}

async fn status_and_body(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn ok_answer_records_all_four_fields() {
    let mock = spawn().await;
    let before = chrono::Utc::now();

    let answer = submit(&mock, "85212345678", "你好 hello").await;

    assert_eq!(status_and_body(answer).await, (StatusCode::OK, "OK".into()));
    let received = mock.received();
    assert_eq!(received.len(), 1);
    let sms = &received[0];
    assert_eq!(sms.application, "smsgate");
    assert_eq!(sms.mrt, "85212345678");
    assert_eq!(sms.sender, "SMSGATE");
    assert_eq!(sms.msg_utf8, "你好 hello");
    assert_eq!(sms.status, 200);
    assert!(sms.received_at >= before);
    let stats = mock.stats();
    assert_eq!((stats.total, stats.ok, stats.failed), (1, 1, 0));
}

#[tokio::test]
async fn error_in_the_text_is_answered_401_unauthorized() {
    let mock = spawn().await;

    let answer = submit(&mock, "85212345678", "trigger an ERROR please").await;

    assert_eq!(
        status_and_body(answer).await,
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    assert_eq!(mock.received()[0].status, 401);
}

#[tokio::test]
async fn a_missing_field_is_answered_400_and_still_recorded() {
    let mock = spawn().await;

    let answer = reqwest::Client::new()
        .post(mock.gateway_url())
        .form(&[
            ("application", "smsgate"),
            ("mrt", "85212345678"),
            ("sender", "S"),
        ])
        .send()
        .await
        .unwrap();

    let (status, body) = status_and_body(answer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("msg_utf8"), "{body}");
    assert_eq!(mock.received_for("85212345678")[0].status, 400);
    assert_eq!(mock.stats().failed, 1);
}

#[tokio::test]
async fn fail_numbers_get_the_fail_status_and_others_do_not() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        fail_numbers: vec!["85299999999".into()],
        fail_status: 502,
        ..MockConfig::default()
    });

    let failing = submit(&mock, "85299999999", "hi").await;
    let fine = submit(&mock, "85212345678", "hi").await;

    assert_eq!(failing.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(fine.status(), StatusCode::OK);
    assert_eq!(mock.received_for("85299999999")[0].status, 502);
    assert_eq!(mock.stats().by_status.get(&502), Some(&1));
}

#[tokio::test]
async fn a_burst_of_two_answers_503_twice_then_ok() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        burst_5xx: 2,
        ..MockConfig::default()
    });

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(submit(&mock, "85212345678", "hi").await.status().as_u16());
    }

    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(mock.config().burst_5xx, 0);
}

#[tokio::test]
async fn fail_share_one_fails_every_request() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        fail_share: 1.0,
        ..MockConfig::default()
    });

    for _ in 0..20 {
        let answer = submit(&mock, "85212345678", "hi").await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let stats = mock.stats();
    assert_eq!((stats.total, stats.ok, stats.failed), (20, 0, 20));
}

#[tokio::test]
async fn configured_failures_carry_retry_after_but_ok_answers_do_not() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        burst_5xx: 1,
        retry_after_secs: Some(7),
        ..MockConfig::default()
    });

    let failed = submit(&mock, "85212345678", "hi").await;
    let ok = submit(&mock, "85212345678", "hi").await;

    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.headers()["retry-after"], "7");
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn latency_delays_gateway_answers() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        latency_ms: 200,
        ..MockConfig::default()
    });

    let started = Instant::now();
    let answer = submit(&mock, "85212345678", "hi").await;

    assert_eq!(answer.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn hang_times_the_client_out_without_blocking_health_or_control() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        hang: true,
        ..MockConfig::default()
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    // Several hung requests at once, to show they do not queue behind each other or /health.
    let hung = futures::future::join_all(
        (0..3).map(|_| submit_with(&impatient, &mock, "85212345678", "hi")),
    );
    let health = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = impatient
            .get(format!("{}/health", mock.base_url()))
            .send()
            .await
            .expect("health answers while requests hang");
        let stats = impatient
            .get(format!("{}/mock/stats", mock.base_url()))
            .send()
            .await
            .expect("control API answers while requests hang");
        (answer.status(), stats.status())
    };
    let (hung, health) = tokio::join!(hung, health);

    assert_eq!(health, (StatusCode::OK, StatusCode::OK));
    for result in hung {
        assert!(result.unwrap_err().is_timeout());
    }
    let stats = mock.stats();
    assert_eq!((stats.total, stats.hung), (3, 3));
    assert!(mock.received().iter().all(|r| r.status == STATUS_HUNG));
}

#[tokio::test]
async fn shutdown_does_not_wait_for_hung_requests() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        hang: true,
        ..MockConfig::default()
    });
    let client = reqwest::Client::new();
    let url = mock.gateway_url();
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .form(&[
                ("application", "a"),
                ("mrt", "1"),
                ("sender", "s"),
                ("msg_utf8", "m"),
            ])
            .send()
            .await
    });
    while mock.stats().hung == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    tokio::time::timeout(Duration::from_secs(5), mock.shutdown())
        .await
        .expect("shutdown finishes while hang is still on")
        .unwrap();

    let answer = pending
        .await
        .unwrap()
        .expect("held request is answered on shutdown");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn clear_forgets_records_and_counters_but_keeps_the_config() {
    let mock = spawn().await;
    mock.set_config(MockConfig {
        latency_ms: 1,
        ..MockConfig::default()
    });
    submit(&mock, "85212345678", "hi").await;

    mock.clear();

    assert!(mock.received().is_empty());
    assert_eq!(mock.stats(), MockStats::default());
    assert_eq!(mock.config().latency_ms, 1);
}

#[tokio::test]
async fn control_api_round_trips_config_records_and_stats() {
    let mock = spawn().await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", mock.base_url());

    let set = client
        .post(url("/mock/config"))
        .json(&json!({ "latency_ms": 5, "fail_numbers": ["85299999999"], "retry_after_secs": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let expected = MockConfig {
        latency_ms: 5,
        fail_numbers: vec!["85299999999".into()],
        retry_after_secs: Some(2),
        ..MockConfig::default()
    };
    assert_eq!(mock.config(), expected);
    let shown: MockConfig = client
        .get(url("/mock/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown, expected);

    submit(&mock, "85299999999", "one").await;
    submit(&mock, "85212345678", "two").await;
    let for_one: Vec<ReceivedSms> = client
        .get(url("/mock/received?mrt=85299999999"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(for_one.len(), 1);
    assert_eq!(
        (for_one[0].msg_utf8.as_str(), for_one[0].status),
        ("one", 500)
    );
    let raw: serde_json::Value = client
        .get(url("/mock/received"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received_at = raw[1]["received_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(received_at).is_ok(),
        "{received_at}"
    );
    let stats: serde_json::Value = client
        .get(url("/mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["ok"], 1);
    assert_eq!(stats["failed"], 1);
    assert_eq!(stats["by_status"]["500"], 1);

    let invalid = client
        .post(url("/mock/config"))
        .json(&json!({ "fail_status": 200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        mock.config(),
        expected,
        "an invalid config leaves the current one"
    );

    let cleared = client.delete(url("/mock/received")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(mock.received().is_empty());

    submit(&mock, "85212345678", "three").await;
    let reset = client.delete(url("/mock/config")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(mock.config(), MockConfig::default());
    assert!(mock.received().is_empty());

    mock.set_config(expected);
    let reset = client.post(url("/mock/reset")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(mock.config(), MockConfig::default());
}

#[tokio::test]
async fn health_answers_ok() {
    let mock = spawn().await;
    let answer = reqwest::get(format!("{}/health", mock.base_url()))
        .await
        .unwrap();
    assert_eq!(status_and_body(answer).await, (StatusCode::OK, "OK".into()));
}
