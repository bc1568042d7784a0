//! Settings an operator changes between two starts on the same broker: the start either
//! takes the change without broker surgery, or refuses with one line that says what to do.

use std::time::{Duration, Instant};

use smsgate_mock_hkt::MockConfig;
use smsgate_shared::queue::Names;
use smsgate_tests::app::{TestApp, TestOptions};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `queue` until it holds `depth` messages, or panics at the deadline.
async fn wait_for_depth(app: &TestApp, queue: &str, depth: u32, deadline: Duration) {
    let start = Instant::now();
    loop {
        let now = app.queue_depth(queue).await.expect("the queue exists");
        if now == depth {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{queue} holds {now} message(s), not {depth}, after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_new_retry_schedule_starts_and_the_jobs_waiting_under_the_old_one_still_come_back() {
    let old_delay = Duration::from_secs(5);
    let mut app = TestApp::spawn_with(TestOptions {
        retry_schedule: vec![old_delay],
        ..Default::default()
    })
    .await;
    let names = Names::new(&app.prefix);
    app.mock.set_config(MockConfig {
        burst_5xx: 1,
        ..MockConfig::default()
    });
    let waiting = app.send_sms("51234567", "waits across a restart").await;
    wait_for_depth(&app, &names.retry_queue(old_delay), 1, DEADLINE).await;

    // Restart everything with another schedule on the same prefix: with step-numbered
    // queues this start failed on `inequivalent arg 'x-message-ttl'`.
    app.stop_processes().await;
    let new_delays = vec![Duration::from_millis(1500), Duration::from_secs(3)];
    app.options.retry_schedule = new_delays.clone();
    app.restart_api().await;
    app.start_dispatcher().await;
    for delay in &new_delays {
        assert_eq!(
            app.queue_depth(&names.retry_queue(*delay)).await.unwrap(),
            0
        );
    }

    // The job that waited in the old schedule's queue comes back when its old TTL ends,
    // and the new dispatcher sends it.
    let message = app.wait_until_final(waiting, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(
        app.recipient_rows(waiting).await[0],
        ("+85251234567".into(), "sent".into(), 2)
    );
    assert_eq!(
        app.queue_depth(&names.retry_queue(old_delay))
            .await
            .unwrap(),
        0,
        "the old schedule's queue empties itself"
    );

    // A new failure waits in the new schedule's first queue.
    app.mock.set_config(MockConfig {
        burst_5xx: 1,
        ..MockConfig::default()
    });
    let retried = app
        .send_sms("51234568", "retried on the new schedule")
        .await;
    wait_for_depth(&app, &names.retry_queue(new_delays[0]), 1, DEADLINE).await;
    let message = app.wait_until_final(retried, DEADLINE).await;
    assert_eq!(message["status"], "sent");
    let statuses: Vec<u16> = app.mock.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 200, 503, 200]);
    app.teardown().await;
}

#[tokio::test]
async fn flipping_quorum_queues_refuses_to_start_with_one_line_that_says_what_to_do() {
    let mut app = TestApp::spawn().await;
    let hkt_queue = Names::new(&app.prefix).hkt_queue();
    app.stop_processes().await;

    // The queues exist as classic queues (the test default); now ask for quorum queues.
    let mut api_settings = app.api_settings();
    api_settings.core.queue.quorum_queues = true;
    let error = match smsgate_api::start(api_settings).await {
        Ok(_) => panic!("the API started on queues of the other type"),
        Err(e) => format!("{e:#}"),
    };
    let expected = format!(
        "queue `{hkt_queue}` is a classic queue but QUORUM_QUEUES=true wants a quorum queue"
    );
    assert!(error.contains(&expected), "{error}");
    assert!(error.contains("docs/operations.md"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");

    let mut dispatcher_settings = app.dispatcher_settings();
    dispatcher_settings.queue.quorum_queues = true;
    let error = match smsgate_dispatcher::start(dispatcher_settings).await {
        Ok(_) => panic!("the dispatcher started on queues of the other type"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&expected), "{error}");

    // Nothing was changed by the refused starts: the old setting still starts.
    app.restart_api().await;
    app.start_dispatcher().await;
    let id = app.send_sms("51234569", "still classic").await;
    assert_eq!(app.wait_until_final(id, DEADLINE).await["status"], "sent");
    app.teardown().await;
}
