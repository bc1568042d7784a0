//! Web panel: `/opt-outs`, the user's own opt-out list and the global one, over
//! `optout::service` as `/api/opt-outs` is. Adding, removing, importing (a CSV file or a
//! pasted list, all or nothing with the bad lines named), and the global list's forms for
//! administrators only.

use reqwest::StatusCode;
use smsgate_tests::app::{hidden_input, PanelClient, PanelResponse, TestApp, ADMIN_PASSWORD};

const BOB: (&str, &str) = ("bob", "Bob-pass-2026!");

/// The numbers on `user_id`'s list (None: the global one), straight from the database.
async fn listed(app: &TestApp, user_id: Option<i64>) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT phone FROM opt_outs WHERE user_id IS NOT DISTINCT FROM $1 ORDER BY phone",
    )
    .bind(user_id)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Follows a form's 303 back to the list and returns that page (with the flash).
async fn follow(client: &PanelClient, response: PanelResponse) -> PanelResponse {
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let to = response.location().expect("a redirect").to_owned();
    assert!(to.starts_with("/opt-outs"), "{to}");
    let page = client.get(&to).await;
    assert_eq!(page.status, StatusCode::OK);
    page
}

/// Posts the import form (multipart, as a browser does) from the page at `from`.
async fn import(
    client: &PanelClient,
    from: &str,
    file: Option<&str>,
    pasted: &str,
) -> PanelResponse {
    let page = client.get(from).await;
    let token = hidden_input(&page.body, "csrf_token").expect("csrf token");
    let scope = hidden_input(&page.body, "scope").expect("scope");
    let mut form = reqwest::multipart::Form::new()
        .text("csrf_token", token)
        .text("scope", scope)
        .text("column", "")
        .text("numbers", pasted.to_owned());
    if let Some(file) = file {
        form = form.part(
            "csv",
            reqwest::multipart::Part::text(file.to_owned())
                .file_name("numbers.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    }
    let response = client
        .http
        .post(format!("{}/opt-outs/import", client.base_url))
        .multipart(form)
        .send()
        .await
        .expect("import sent");
    PanelResponse {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

#[tokio::test]
async fn a_user_manages_their_own_list_and_reads_the_global_one() {
    let app = TestApp::spawn_without_dispatcher().await;
    let (bob_id, _) = app.create_user(BOB.0, BOB.1).await;
    let bob = app.panel_login(BOB.0, BOB.1).await;
    let anonymous = app.panel_client().get("/opt-outs").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);

    let empty = bob.get("/opt-outs").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty
        .body
        .contains("href=\"/opt-outs\" aria-current=\"page\">Opt-outs"));
    assert!(empty.body.contains("data-testid=\"no-opt-outs\""));

    let added = bob
        .submit(
            "/opt-outs",
            "/opt-outs",
            &[("phone_number", "9123 4567"), ("scope", "user")],
        )
        .await;
    let page = follow(&bob, added).await;
    assert!(
        page.body
            .contains("+85291234567 added to your opt-out list."),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-phone=\"+85291234567\""));
    let bad = bob
        .submit(
            "/opt-outs",
            "/opt-outs",
            &[("phone_number", "12"), ("scope", "user")],
        )
        .await;
    let page = follow(&bob, bad).await;
    assert!(page.body.contains("is not a phone number"), "{}", page.body);

    // A file with bad lines: refused whole, naming them.
    let file = "name,phone\nAlice,61234567\nBob,nope\nCarol,51234567\nDan,+8529043628\n";
    let page = follow(&bob, import(&bob, "/opt-outs", Some(file), "").await).await;
    assert!(
        page.body.contains("Nothing imported: 2 bad line(s): 3, 5."),
        "{}",
        page.body
    );
    assert_eq!(listed(&app, Some(bob_id)).await, ["+85291234567"]);
    // A pasted list, one already listed.
    let page = follow(
        &bob,
        import(&bob, "/opt-outs", None, "61234567\n91234567\n").await,
    )
    .await;
    assert!(
        page.body
            .contains("Imported into your opt-out list: 1 added, 1 already listed."),
        "{}",
        page.body
    );
    assert_eq!(
        listed(&app, Some(bob_id)).await,
        ["+85261234567", "+85291234567"]
    );

    // Searched by digits.
    let found = bob.get("/opt-outs?q=6123").await;
    assert!(found.body.contains("data-phone=\"+85261234567\""));
    assert!(!found.body.contains("data-phone=\"+85291234567\""));

    let removed = bob
        .submit(
            "/opt-outs",
            "/opt-outs/remove",
            &[("phone_number", "+85291234567"), ("scope", "user")],
        )
        .await;
    let page = follow(&bob, removed).await;
    assert!(page
        .body
        .contains("+85291234567 removed from your opt-out list"));
    assert_eq!(listed(&app, Some(bob_id)).await, ["+85261234567"]);

    // The global list: read-only for Bob, and his changes to it are refused.
    sqlx::query(
        "INSERT INTO opt_outs (phone, user_id, source) VALUES ('+85298760001', NULL, 'reply')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let global = bob.get("/opt-outs?scope=global").await;
    assert_eq!(global.status, StatusCode::OK);
    assert!(global.body.contains("data-phone=\"+85298760001\""));
    assert!(global.body.contains("data-testid=\"global-read-only\""));
    assert!(!global.body.contains("action=\"/opt-outs/remove\""));
    for path in ["/opt-outs", "/opt-outs/remove"] {
        let refused = bob
            .submit(
                "/opt-outs",
                path,
                &[("phone_number", "98760001"), ("scope", "global")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(listed(&app, None).await, ["+85298760001"]);
    app.teardown().await;
}

#[tokio::test]
async fn an_admin_manages_the_global_list_including_replies() {
    let app = TestApp::spawn_without_dispatcher().await;
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    sqlx::query(
        "INSERT INTO opt_outs (phone, user_id, source) VALUES ('+85298760001', NULL, 'reply')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let global = admin.get("/opt-outs?scope=global").await;
    assert!(global.body.contains("action=\"/opt-outs/import\""));
    assert!(!global.body.contains("global-read-only"));

    let added = admin
        .submit(
            "/opt-outs?scope=global",
            "/opt-outs",
            &[("phone_number", "+85291234567"), ("scope", "global")],
        )
        .await;
    assert_eq!(added.location(), Some("/opt-outs?scope=global"));
    let page = follow(&admin, added).await;
    assert!(page
        .body
        .contains("+85291234567 added to the global opt-out list."));
    let removed = admin
        .submit(
            "/opt-outs?scope=global",
            "/opt-outs/remove",
            &[("phone_number", "+85298760001"), ("scope", "global")],
        )
        .await;
    follow(&admin, removed).await;
    let page = follow(
        &admin,
        import(
            &admin,
            "/opt-outs?scope=global",
            Some("phone\n61234567\n"),
            "",
        )
        .await,
    )
    .await;
    assert!(page
        .body
        .contains("Imported into the global opt-out list: 1 added"));
    assert_eq!(listed(&app, None).await, ["+85261234567", "+85291234567"]);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'opt_out.%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, 3);
    app.teardown().await;
}
