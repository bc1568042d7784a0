//! Browser tests of the web panel: headless Chromium driven through ChromeDriver with
//! fantoccini, against a full in-process stack (`TestApp`). One browser session runs every
//! scenario in order, which keeps the suite to a few seconds of browser time.
//!
//! Skipped when `SMSGATE_BROWSER_TESTS=0`; `make test` installs Chromium and turns them on.
//! With `SMSGATE_SCREENSHOTS=1` the screenshots go to `docs/screenshots/` (the README shows
//! them); otherwise to the target directory, so a test run leaves the tree clean.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Method;
use serde_json::json;
use smsgate_tests::app::{TestApp, TestOptions, ADMIN_PASSWORD};
use smsgate_tests::modem_sim::EdgeApp;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);

/// `SMSGATE_BROWSER_TESTS=1` (what `make test` sets) requires the browser; `0` skips; unset
/// runs them when ChromeDriver is installed, so a plain `cargo test` works anywhere.
fn enabled() -> bool {
    match std::env::var("SMSGATE_BROWSER_TESTS").as_deref() {
        Ok("0") => false,
        Ok(_) => true,
        Err(_) => std::path::Path::new(CHROMEDRIVER).exists(),
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var("SMSGATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
    };
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// ChromeDriver on a free port, killed on drop.
struct Driver {
    child: tokio::process::Child,
    url: String,
    _profile: PathBuf,
}

impl Driver {
    async fn start() -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver (scripts/ensure-browser.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("smsgate-chromium-{port}"));
        Driver {
            child,
            url,
            _profile: profile,
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self._profile.display()),
                    "--window-size=1280,900",
                ]
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn log_in(browser: &Client, app: &TestApp, username: &str, password: &str) {
    browser.goto(&app.url("/login")).await.unwrap();
    fill(browser, "#username", username).await;
    fill(browser, "#password", password).await;
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let who = text_of(browser, "[data-testid=current-user]").await;
    assert_eq!(who, username);
}

async fn log_out(browser: &Client) {
    browser
        .find(Locator::Css(".account button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
}

async fn path_of(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

/// Three SIM cards (online, offline, inactive) and three received SMS; returns their ids.
async fn seed_sims(app: &TestApp) -> [i64; 3] {
    let ids = [
        app.create_sim("6111 0001").await,
        app.create_sim("6111 0002").await,
        app.create_sim("6111 0003").await,
    ];
    sqlx::query(
        "UPDATE sim_cards s SET label = v.label, status = v.status, signal = v.signal,
             operator = v.operator, registration = 'home',
             last_heartbeat_at = now() - make_interval(secs => v.ago)
         FROM (VALUES ($1::bigint, 'modem-pi-1', 'active', 21::smallint, 'CSL', 4.0::float8),
                      ($2, 'modem-pi-2', 'active', 12, 'SmarTone', 400.0),
                      ($3, 'spare', 'inactive', NULL, NULL, 86400.0))
              AS v(id, label, status, signal, operator, ago)
         WHERE s.id = v.id",
    )
    .bind(ids[0])
    .bind(ids[1])
    .bind(ids[2])
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO inbound_messages (sim_card_id, sim_number, sender, content, received_at, created_at, dedupe_key)
         SELECT s.id, s.number, v.sender, v.content, now() - v.ago, now() - v.ago, v.key
         FROM (VALUES ($1::bigint, '+85291230001', 'Your verification code is 482913', interval '40 minutes', 'a'),
                      ($2, '+85291230002', 'Running 10 minutes late, start without me', interval '12 minutes', 'b'),
                      ($1, '+85291230003', '<script>alert(1)</script>', interval '2 minutes', 'c'))
              AS v(sim, sender, content, ago, key)
         JOIN sim_cards s ON s.id = v.sim",
    )
    .bind(ids[0])
    .bind(ids[1])
    .execute(&app.db)
    .await
    .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_works_in_a_real_browser() {
    if !enabled() {
        eprintln!("browser tests skipped (SMSGATE_BROWSER_TESTS=0, or unset without ChromeDriver)");
        return;
    }
    let mut app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        ..Default::default()
    })
    .await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Log in.
    browser.goto(&app.url("/login")).await.unwrap();
    shot(&browser, "login").await;
    log_in(&browser, &app, "SMSadmin", ADMIN_PASSWORD).await;

    // Compose to three numbers, one invalid: the error lists it, nothing is sent.
    browser.goto(&app.url("/compose")).await.unwrap();
    fill(
        &browser,
        "#content",
        "Typhoon signal 8: the office closes at 3 pm. 颱風",
    )
    .await;
    let counter = text_of(&browser, "[data-testid=counter]").await;
    assert!(
        counter.contains("UCS-2") && counter.contains("1 segment"),
        "{counter}"
    );
    fill(&browser, "#recipients", "1234 5678\n2345-678\n8765 4321").await;
    browser
        .find(Locator::Css("[data-testid=send]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let errors = text_of(&browser, "[data-testid=recipient-errors]").await;
    assert!(
        errors.contains("line 2") && errors.contains("2345-678"),
        "{errors}"
    );
    shot(&browser, "compose-invalid").await;
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(messages, 0);
    // The form kept the text; fix the number and send.
    let kept = browser
        .find(Locator::Css("#content"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("Typhoon signal 8: the office closes at 3 pm. 颱風")
    );
    fill(&browser, "#recipients", "1234 5678\n2345 6789\n8765 4321").await;
    browser
        .find(Locator::Css("[data-testid=send]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-testid=message]"))
        .await
        .unwrap();
    let message_path = path_of(&browser).await;
    assert!(message_path.starts_with("/history/"), "{message_path}");

    // Watch it reach `sent` without reloading: a marker set now must survive.
    assert_eq!(text_of(&browser, "[data-field=status]").await, "pending");
    browser
        .execute("window.__notReloaded = true;", vec![])
        .await
        .unwrap();
    app.start_dispatcher().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let status = text_of(&browser, "[data-field=status]").await;
        let rows = browser
            .find_all(Locator::Css("[data-testid=recipients] [data-field=status]"))
            .await
            .unwrap();
        let mut row_statuses = Vec::new();
        for row in rows {
            row_statuses.push(row.text().await.unwrap());
        }
        if status == "sent" && row_statuses.iter().all(|s| s == "sent") {
            assert_eq!(row_statuses.len(), 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not live: {status} {row_statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let same_page = browser
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the page was reloaded");
    assert_eq!(text_of(&browser, "[data-field=sent]").await, "3");
    shot(&browser, "message").await;

    browser.goto(&app.url("/history")).await.unwrap();
    text_of(&browser, "[data-testid=history]").await;
    shot(&browser, "history").await;
    // SIM cards as their agents would have reported them, and SMS they received.
    let sims = seed_sims(&app).await;
    browser.goto(&app.url("/")).await.unwrap();
    assert_eq!(text_of(&browser, "[data-testid=today-sent]").await, "3");
    assert_eq!(text_of(&browser, "[data-testid=sims-online]").await, "1");
    shot(&browser, "dashboard").await;

    // The SIM page refreshes online state and signal without a reload.
    browser.goto(&app.url("/sims")).await.unwrap();
    let online_row = format!("tr[data-sim-id='{}']", sims[0]);
    let online = text_of(&browser, &format!("{online_row} [data-field=online]")).await;
    assert_eq!(online, "online");
    let offline_row = format!("tr[data-sim-id='{}'] [data-field=online]", sims[1]);
    assert_eq!(text_of(&browser, &offline_row).await, "offline");
    sqlx::query("UPDATE sim_cards SET signal = 28, last_heartbeat_at = now() WHERE id = $1")
        .bind(sims[0])
        .execute(&app.db)
        .await
        .unwrap();
    let signal = format!("{online_row} [data-field=signal]");
    let deadline = Instant::now() + WAIT;
    while !text_of(&browser, &signal).await.contains("90%") {
        assert!(Instant::now() < deadline, "the signal was not refreshed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shot(&browser, "sims").await;
    browser.goto(&app.url("/inbox")).await.unwrap();
    let inbox = text_of(&browser, "[data-testid=inbox]").await;
    assert!(inbox.contains("<script>alert(1)</script>"), "{inbox}");
    shot(&browser, "inbox").await;

    // A webhook added through the form: its secret is shown once, the list does not show it.
    browser.goto(&app.url("/webhooks")).await.unwrap();
    fill(&browser, "#url", "https://hooks.example.com/smsgate").await;
    fill(&browser, "#description", "CRM status sync").await;
    browser
        .find(Locator::Css("form[action='/webhooks'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let secret = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-testid=secret]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.goto(&app.url("/webhooks")).await.unwrap();
    let webhooks = text_of(&browser, "[data-testid=webhooks]").await;
    assert!(webhooks.contains("CRM status sync"), "{webhooks}");
    assert!(!browser.source().await.unwrap().contains(&secret));
    shot(&browser, "webhooks").await;

    // The admin creates a user.
    browser.goto(&app.url("/admin/users/new")).await.unwrap();
    fill(&browser, "#username", "staffer").await;
    fill(&browser, "#password", "Harbour-42-Lights").await;
    fill(&browser, "#confirm", "Harbour-42-Lights").await;
    browser
        .find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = text_of(&browser, ".flash").await;
    assert!(flash.contains("User staffer created."), "{flash}");
    shot(&browser, "users").await;
    log_out(&browser).await;

    // That user can neither open admin pages nor see the first user's messages.
    log_in(&browser, &app, "staffer", "Harbour-42-Lights").await;
    let nav = text_of(&browser, "nav").await;
    assert!(!nav.contains("Users"), "{nav}");
    browser.goto(&app.url("/admin/users")).await.unwrap();
    assert!(text_of(&browser, "h1").await.starts_with("403"));
    browser.goto(&app.url("/history")).await.unwrap();
    assert!(text_of(&browser, "[data-testid=no-messages]")
        .await
        .contains("No messages"));
    browser.goto(&app.url(&message_path)).await.unwrap();
    assert!(text_of(&browser, "h1").await.starts_with("404"));

    // Disabling the user ends their session on the next request.
    let staffer: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'staffer'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (status, _) = app
        .request(
            Method::PUT,
            &format!("/api/admin/users/{staffer}"),
            Some(&app.token),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    browser.goto(&app.url("/history")).await.unwrap();
    text_of(&browser, "#username").await;
    assert_eq!(path_of(&browser).await, "/login");

    browser.close().await.unwrap();
    drop(driver);
    app.teardown().await;
}
