//! The global gateway rate limit holds across dispatcher replicas together.

use std::time::Duration;

use smsgate_tests::app::{numbers, TestApp, TestOptions};

/// Most requests the mock received within any window of `window` length.
fn busiest_window(times: &mut [chrono::DateTime<chrono::Utc>], window: chrono::Duration) -> usize {
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test]
async fn three_dispatchers_together_never_exceed_the_global_limit() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let mut dispatchers = Vec::new();
    for _ in 0..3 {
        let mut settings = app.dispatcher_settings();
        settings.hkt_rate_limit = Some(20.0);
        dispatchers.push(smsgate_dispatcher::start(settings).await.unwrap());
    }
    let id = app.send_bulk(&numbers(80, 8400), "limited").await;
    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["success_count"], 80);

    let mut times: Vec<_> = app.mock.received().iter().map(|r| r.received_at).collect();
    assert_eq!(times.len(), 80);
    // 20/s: slots are 50 ms apart, so no second can hold more than 20 (+1 for the edge).
    let busiest = busiest_window(&mut times, chrono::Duration::seconds(1));
    assert!(
        busiest <= 21,
        "{busiest} requests in one second with a limit of 20/s"
    );
    let span = *times.last().unwrap() - times[0];
    assert!(
        span >= chrono::Duration::milliseconds(3_700),
        "80 requests at 20/s need ~4 s, took {span}"
    );
    for d in dispatchers {
        d.stop().await;
    }
    app.teardown().await;
}

#[tokio::test]
async fn a_dead_dispatcher_does_not_hold_capacity() {
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let mut settings = app.dispatcher_settings();
    settings.hkt_rate_limit = Some(20.0);
    let doomed = smsgate_dispatcher::start(settings.clone()).await.unwrap();
    let survivor = smsgate_dispatcher::start(settings).await.unwrap();
    let id = app.send_bulk(&numbers(60, 8500), "one dies").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.kill().await;

    let started = std::time::Instant::now();
    let message = app.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(message["success_count"], 60);
    // The survivor alone finishes at the full rate: nothing reserved by the dead one lingers.
    let remaining = 60.0 - 0.7 * 20.0;
    assert!(
        started.elapsed() < Duration::from_secs_f64(remaining / 20.0 + 3.0),
        "the survivor was slowed down: {:?}",
        started.elapsed()
    );
    survivor.stop().await;
    app.teardown().await;
}
