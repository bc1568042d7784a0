//! The authorization matrix (issue #13): every route of the JSON API and the staff panel,
//! enumerated from the router, against every kind of caller, with the exact status each
//! must get. A route added without a row here fails the test, and so does a row whose
//! route is gone. docs/security.md shows the same table; `UPDATE_SECURITY_DOC=1` rewrites it.
//!
//! Cells read: a status; `login` (panel: `303` to `/login`); `-` (the caller does not apply:
//! a CSRF token on a GET, another user's resource on a route without an id). A `303` cell
//! must not point at `/login`. Columns, in the order they run:
//! - API: anonymous, expired JWT, revoked API token, disabled user's JWT, disabled user's
//!   API token | bob on alice's resource, alice, admin (on alice's resource);
//! - panel: anonymous, disabled user's session, no CSRF token, wrong CSRF token (both with
//!   the admin's session) | bob on alice's resource, alice, admin.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::json;
use smsgate_tests::app::{TestApp, ADMIN_PASSWORD};
use smsgate_tests::authz::{self, Caller, Cell, Fixtures, Row, PASSWORD};

/// No credentials, or dead ones, on a route that needs a live one: `401` for a missing,
/// expired or revoked credential, `403` (`ACCOUNT_DISABLED`) for a disabled account's.
const AUTHED: &str = "401 401 401 403 403 |";
/// Anyone, whatever credentials they send.
const PUBLIC: &str = "200 200 200 200 200 |";
/// A panel page: no session or a disabled user's goes to the login page.
const PAGE: &str = "login login - - |";
/// A panel form post: as a page, and the session's CSRF token is required.
const FORM: &str = "login login 403 403 |";

fn sim_number(cell: &Cell) -> String {
    format!("6124 {:04}", cell.n)
}

/// Every route, grouped as docs/security.md shows them. Rows run in this order; the
/// password change is last because it ends the credentials of the callers that succeed.
fn table() -> Vec<Row> {
    use Method as M;
    vec![
        // ---- JSON API: logging in and credentials
        Row::api(M::POST, "/api/auth/login")
            .json(|c| json!({"username": c.fx.alice.username, "password": PASSWORD}))
            .expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::POST, "/api/auth")
            .json(|c| json!({"username": c.fx.alice.username, "password": PASSWORD}))
            .expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/api/api-keys").expect(&[AUTHED, "- 200 200"]),
        // API keys are personal: not even an admin revokes another user's here.
        Row::api(M::DELETE, "/api/api-keys/{id}")
            .on("api-key")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::POST, "/api/generate-api-key").expect(&[AUTHED, "- 200 200"]),
        // ---- JSON API: sending and history (own messages only, admins included)
        Row::api(M::POST, "/api/sms")
            .json(|_| json!({"recipient": "9123 4567", "content": "authz matrix"}))
            .expect(&[AUTHED, "- 202 202"]),
        Row::api(M::GET, "/api/sms").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::POST, "/api/sms/send-bulk")
            .json(|_| json!({"recipients": ["9123 4567", "6123 4567"], "content": "authz matrix"}))
            .expect(&[AUTHED, "- 202 202"]),
        Row::api(M::GET, "/api/sms/{id}")
            .on("message")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::GET, "/api/sms/{id}/recipients")
            .on("message")
            .expect(&[AUTHED, "404 200 404"]),
        // CSV exports: the same scope as the list and the message they export.
        Row::api(M::GET, "/api/sms/{id}/recipients.csv")
            .on("message")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::GET, "/api/sms/export.csv").expect(&[AUTHED, "- 200 200"]),
        // Cancel: the owner or an admin (a second cancel is harmless, hence the admin's 200).
        Row::api(M::POST, "/api/sms/{id}/cancel")
            .on("scheduled-message")
            .expect(&[AUTHED, "404 200 200"]),
        Row::api(M::GET, "/api/queue/status").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::GET, "/api/sms/outbox").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::GET, "/api/sms-status").expect(&[AUTHED, "- 200 200"]),
        // ---- JSON API: opt-outs (each user's own list; the global list is read by
        // everyone and changed by admins only)
        Row::api(M::GET, "/api/opt-outs").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::POST, "/api/opt-outs")
            .json(|c| json!({"phone_number": format!("9123 {:04}", c.n)}))
            .expect(&[AUTHED, "- 201 201"]),
        // The body is CSV; a JSON string is one quoted CSV cell, so the matrix's JSON body
        // is a one-number file.
        Row::api(M::POST, "/api/opt-outs/import")
            .json(|c| json!(format!("9124{:04}", c.n)))
            .expect(&[AUTHED, "- 200 200"]),
        // Alice's number: on no one else's list, not even an admin's own.
        Row::api(M::DELETE, "/api/opt-outs/{number}")
            .on("opt-out")
            .expect(&[AUTHED, "404 204 404"]),
        // ---- JSON API: SIM cards (managed by admins; a user sees the SIMs assigned to them)
        Row::api(M::GET, "/api/sim-cards").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::POST, "/api/sim-cards")
            .json(|c| json!({"number": sim_number(c), "label": "authz matrix"}))
            .expect(&[AUTHED, "- 403 201"]),
        Row::api(M::GET, "/api/sim-cards/{id}")
            .on("sim")
            .expect(&[AUTHED, "404 200 200"]),
        Row::api(M::PUT, "/api/sim-cards/{id}")
            .on("sim")
            .json(|_| json!({"label": "renamed by the matrix"}))
            .expect(&[AUTHED, "403 403 200"]),
        Row::api(M::DELETE, "/api/sim-cards/{id}")
            .on("sim-to-delete")
            .expect(&[AUTHED, "403 403 200"]),
        // A new broker password for the SIM's agent (shown once): admins only.
        Row::api(M::POST, "/api/sim-cards/{id}/broker-credentials")
            .on("sim")
            .expect(&[AUTHED, "403 403 200"]),
        Row::api(M::GET, "/api/sms/inbox").expect(&[AUTHED, "- 200 200"]),
        // ---- JSON API: webhooks (personal: an admin gets 404 on another user's)
        Row::api(M::GET, "/api/webhooks").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::POST, "/api/webhooks")
            .json(|c| json!({"url": format!("http://127.0.0.1:9/new-{}", c.n)}))
            .expect(&[AUTHED, "- 201 201"]),
        Row::api(M::GET, "/api/webhooks/{id}")
            .on("webhook")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::PUT, "/api/webhooks/{id}")
            .on("webhook")
            .json(|_| json!({"description": "renamed by the matrix"}))
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::DELETE, "/api/webhooks/{id}")
            .on("webhook-to-delete")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::POST, "/api/webhooks/{id}/rotate-secret")
            .on("webhook")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::POST, "/api/webhooks/{id}/test")
            .on("webhook")
            .expect(&[AUTHED, "404 202 404"]),
        Row::api(M::GET, "/api/webhooks/{id}/deliveries")
            .on("webhook")
            .expect(&[AUTHED, "404 200 404"]),
        Row::api(M::POST, "/api/webhooks/{id}/deliveries/{delivery_id}/retry")
            .on("delivery")
            .expect(&[AUTHED, "404 202 404"]),
        // ---- JSON API: statistics and the activity log (a user's own figures)
        Row::api(M::GET, "/api/statistics").expect(&[AUTHED, "- 200 200"]),
        Row::api(M::GET, "/api/logs").expect(&[AUTHED, "- 200 200"]),
        // ---- JSON API: user administration
        Row::api(M::GET, "/api/admin/users").expect(&[AUTHED, "- 403 200"]),
        Row::api(M::POST, "/api/admin/users")
            .json(|c| json!({"username": format!("api-user-{}", c.n), "password": PASSWORD}))
            .expect(&[AUTHED, "- 403 201"]),
        Row::api(M::PUT, "/api/admin/users/{id}")
            .on("victim-api-update")
            .json(|_| json!({"active": true}))
            .expect(&[AUTHED, "403 403 200"]),
        Row::api(M::DELETE, "/api/admin/users/{id}")
            .on("victim-api-delete")
            .expect(&[AUTHED, "403 403 204"]),
        Row::api(M::POST, "/api/admin/users/{id}/tokens")
            .on("victim-api-token")
            .expect(&[AUTHED, "403 403 201"]),
        // ---- JSON API: probes and metrics (METRICS_TOKEN unset, the default)
        Row::api(M::GET, "/health").expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/health/live").expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/health/ready").expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/metrics").expect(&[PUBLIC, "- 200 200"]),
        // ---- JSON API: the OpenAPI document and its docs page (public: no secret in them)
        Row::api(M::GET, "/api/openapi.json").expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/api/docs").expect(&["303 303 303 303 303 |", "- 303 303"]),
        Row::api(M::GET, "/api/docs/").expect(&[PUBLIC, "- 200 200"]),
        Row::api(M::GET, "/api/docs/{*rest}")
            .on("docs-asset")
            .expect(&[PUBLIC, "- 200 200"]),
        // ---- Panel: signing in and out
        Row::panel(M::GET, "/login").expect(&["200 200 - - |", "- 200 200"]),
        Row::panel(M::POST, "/login")
            .login_form()
            .expect(&["303 303 403 403 |", "- 303 303"]),
        // Signing out is a CSRF-checked POST; a link could sign anyone out.
        Row::panel(M::GET, "/logout")
            .absent()
            .expect(&["405 405 - - |", "- 405 405"]),
        Row::panel(M::POST, "/logout").expect(&[FORM, "- login login"]),
        Row::panel(M::GET, "/account/password").expect(&[PAGE, "- 200 200"]),
        // ---- Panel: sending and history
        Row::panel(M::GET, "/").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::GET, "/compose").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::POST, "/compose")
            .multipart(|c| {
                vec![
                    ("idempotency_key", format!("authz-matrix-{:08}", c.n)),
                    ("content", "authz matrix".to_owned()),
                    ("recipients", "9123 4567".to_owned()),
                ]
            })
            .expect(&[FORM, "- 303 303"]),
        Row::panel(M::GET, "/history").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::GET, "/history/{id}")
            .on("message")
            .expect(&[PAGE, "404 200 200"]),
        Row::panel(M::GET, "/history/{id}/events")
            .on("message")
            .expect(&[PAGE, "404 200 200"]),
        // The panel's CSV downloads: whoever sees the page gets its file.
        Row::panel(M::GET, "/history/{id}/recipients.csv")
            .on("message")
            .expect(&[PAGE, "404 200 200"]),
        Row::panel(M::GET, "/history/export.csv").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::POST, "/history/{id}/retry")
            .on("message")
            .expect(&[FORM, "404 303 303"]),
        // Cancel: the owner or an admin; the confirmation page first, then the form.
        Row::panel(M::GET, "/scheduled").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::GET, "/history/{id}/cancel")
            .on("panel-scheduled-message")
            .expect(&[PAGE, "404 200 200"]),
        Row::panel(M::POST, "/history/{id}/cancel")
            .on("panel-scheduled-message")
            .expect(&[FORM, "404 303 303"]),
        // ---- Panel: SIM cards and the inbox
        Row::panel(M::GET, "/sims").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::GET, "/sims/state").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::GET, "/sims/new").expect(&[PAGE, "- 403 200"]),
        Row::panel(M::POST, "/sims/new")
            .form(|c| {
                vec![
                    ("number", sim_number(c)),
                    ("label", "authz matrix".to_owned()),
                    ("status", "active".to_owned()),
                ]
            })
            // 200: the page showing the agent's broker login once.
            .expect(&[FORM, "- 403 200"]),
        Row::panel(M::GET, "/sims/{id}/edit")
            .on("sim")
            .expect(&[PAGE, "403 403 200"]),
        Row::panel(M::POST, "/sims/{id}/edit")
            .on("sim")
            .form(|_| {
                vec![
                    // The `sim` fixture's own number (`Fixtures::build`).
                    ("number", "6123 9000".to_owned()),
                    ("label", "edited by the matrix".to_owned()),
                    ("status", "active".to_owned()),
                ]
            })
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/sims/{id}/toggle")
            .on("sim")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/sims/{id}/broker-credentials")
            .on("sim")
            .expect(&[FORM, "403 403 200"]),
        Row::panel(M::GET, "/sims/{id}/delete")
            .on("panel-sim-to-delete")
            .expect(&[PAGE, "403 403 200"]),
        Row::panel(M::POST, "/sims/{id}/delete")
            .on("panel-sim-to-delete")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::GET, "/inbox").expect(&[PAGE, "- 200 200"]),
        // ---- Panel: opt-outs (as in the API: a refused change is a flash on the list)
        Row::panel(M::GET, "/opt-outs").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::POST, "/opt-outs")
            .form(|c| vec![("phone_number", format!("9125 {:04}", c.n))])
            .expect(&[FORM, "- 303 303"]),
        Row::panel(M::POST, "/opt-outs/remove")
            .form(|c| vec![("phone_number", format!("9125 {:04}", c.n))])
            .expect(&[FORM, "- 303 303"]),
        Row::panel(M::POST, "/opt-outs/import")
            .multipart(|c| vec![("numbers", format!("9126{:04}", c.n))])
            .expect(&[FORM, "- 303 303"]),
        // ---- Panel: webhooks (personal, as in the API)
        Row::panel(M::GET, "/webhooks").expect(&[PAGE, "- 200 200"]),
        Row::panel(M::POST, "/webhooks")
            .form(|c| vec![("url", format!("http://127.0.0.1:9/panel-{}", c.n))])
            // The secret is shown once, on the page that answers the form.
            .expect(&[FORM, "- 200 200"]),
        Row::panel(M::GET, "/webhooks/{id}")
            .on("webhook")
            .expect(&[PAGE, "404 200 404"]),
        Row::panel(M::POST, "/webhooks/{id}/toggle")
            .on("webhook-to-toggle")
            .expect(&[FORM, "404 303 404"]),
        Row::panel(M::POST, "/webhooks/{id}/test")
            .on("webhook")
            .expect(&[FORM, "404 303 404"]),
        Row::panel(M::POST, "/webhooks/{id}/rotate-secret")
            .on("webhook")
            .expect(&[FORM, "404 200 404"]),
        Row::panel(M::GET, "/webhooks/{id}/delete")
            .on("panel-webhook-to-delete")
            .expect(&[PAGE, "404 200 404"]),
        Row::panel(M::POST, "/webhooks/{id}/delete")
            .on("panel-webhook-to-delete")
            .expect(&[FORM, "404 303 404"]),
        Row::panel(M::POST, "/webhooks/{id}/deliveries/{delivery_id}/retry")
            .on("panel-delivery")
            .expect(&[FORM, "404 303 404"]),
        // ---- Panel: administration
        Row::panel(M::GET, "/admin/users").expect(&[PAGE, "- 403 200"]),
        Row::panel(M::GET, "/admin/users/new").expect(&[PAGE, "- 403 200"]),
        Row::panel(M::POST, "/admin/users/new")
            .form(|c| {
                vec![
                    ("username", format!("panel-user-{}", c.n)),
                    ("password", PASSWORD.to_owned()),
                    ("confirm", PASSWORD.to_owned()),
                ]
            })
            .expect(&[FORM, "- 403 303"]),
        Row::panel(M::GET, "/admin/users/{id}/password")
            .on("victim-panel-password")
            .expect(&[PAGE, "403 403 200"]),
        Row::panel(M::POST, "/admin/users/{id}/password")
            .on("victim-panel-password")
            .form(|_| {
                vec![
                    ("password", "Reset-by-matrix-1".to_owned()),
                    ("confirm", "Reset-by-matrix-1".to_owned()),
                ]
            })
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::GET, "/admin/users/{id}/limits")
            .on("victim-panel-limits")
            .expect(&[PAGE, "403 403 200"]),
        Row::panel(M::POST, "/admin/users/{id}/limits")
            .on("victim-panel-limits")
            .form(|c| {
                vec![
                    ("daily_recipient_limit", format!("{}", 100 + c.n)),
                    ("requests_per_second", String::new()),
                    ("high_priority_per_minute", "60".to_owned()),
                    ("share_weight", "1".to_owned()),
                    ("default_valid_for", String::new()),
                ]
            })
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/admin/users/{id}/toggle")
            .on("victim-panel-toggle")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::GET, "/admin/users/{id}/delete")
            .on("victim-panel-delete")
            .expect(&[PAGE, "403 403 200"]),
        Row::panel(M::POST, "/admin/users/{id}/delete")
            .on("victim-panel-delete")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/admin/users/{id}/token")
            .on("victim-panel-token")
            .expect(&[FORM, "403 403 200"]),
        Row::panel(M::GET, "/admin/messages").expect(&[PAGE, "- 403 200"]),
        Row::panel(M::GET, "/admin/dead-letters").expect(&[PAGE, "- 403 200"]),
        Row::panel(M::POST, "/admin/dead-letters/{id}/retry")
            .on("dead-letter")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/admin/dead-letters/{id}/abandon")
            .on("dead-letter-to-abandon")
            .expect(&[FORM, "403 403 303"]),
        Row::panel(M::POST, "/admin/dead-letters/retry-all").expect(&[FORM, "- 403 303"]),
        Row::panel(M::GET, "/admin/audit").expect(&[PAGE, "- 403 200"]),
        // ---- Panel: assets
        Row::panel(M::GET, "/static/{name}")
            .on("asset")
            .expect(&["200 200 - - |", "- 200 200"]),
        // Last: it ends the sessions and JWTs of those it succeeds for.
        Row::panel(M::POST, "/account/password")
            .form(|c| {
                let current = match c.caller {
                    Caller::Admin => ADMIN_PASSWORD,
                    _ => PASSWORD,
                };
                vec![
                    ("current", current.to_owned()),
                    ("new_password", "Changed-by-matrix-1".to_owned()),
                    ("confirm", "Changed-by-matrix-1".to_owned()),
                ]
            })
            .expect(&[FORM, "- 303 303"]),
    ]
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_authorization_table_says() {
    let app = TestApp::spawn_without_dispatcher().await;
    let rows = table();
    let mut problems = Vec::new();

    // The same router the server runs (`start` only adds the Socket.IO layer around it).
    let state = app.api.as_ref().expect("a running API").state.clone();
    let served = smsgate_api::route_list(&smsgate_api::build_app(state));
    assert!(
        served.len() > 50,
        "the route listing read only {} routes: {served:?}",
        served.len()
    );
    let is_served = |row: &Row| {
        served
            .iter()
            .any(|(method, path)| *method == row.method && path == row.path)
    };
    for (method, path) in &served {
        let rows_for = rows
            .iter()
            .filter(|r| r.method == *method && r.path == path)
            .count();
        match rows_for {
            0 => problems.push(format!(
                "{method} {path}: served, but has no row in the table"
            )),
            1 => {}
            n => problems.push(format!("{method} {path}: {n} rows in the table")),
        }
    }
    for row in &rows {
        match (row.absent, is_served(row)) {
            (false, false) => problems.push(format!(
                "{}: a row for a route the router does not serve",
                row.name()
            )),
            (true, true) => problems.push(format!(
                "{}: removed on purpose, but the router serves it",
                row.name()
            )),
            _ => {}
        }
    }

    let fx = Fixtures::build(&app).await;
    let http = authz::client();
    let mut n = 0;
    let mut cells = 0;
    for row in &rows {
        for (caller, expected) in row.surface.callers().iter().zip(&row.cells) {
            if *expected == authz::Expect::NotApplicable {
                continue;
            }
            n += 1;
            cells += 1;
            let got = authz::run_cell(&app, &http, &fx, row, *caller, n).await;
            if !expected.matches(&got) {
                problems.push(format!(
                    "{} as {}: expected {expected}, got {got}",
                    row.name(),
                    caller.heading()
                ));
            }
        }
    }
    // Statuses cannot show a filter: the fixtures' SIMs are assigned to alice only.
    let (_, bobs_sims) = app
        .request(Method::GET, "/api/sim-cards", Some(&fx.bob.jwt), None)
        .await;
    let fixture_sims = ["sim", "panel-sim-to-delete"].map(|name| fx.ids(name)[0].clone());
    for sim in bobs_sims.as_array().into_iter().flatten() {
        if fixture_sims.contains(&sim["id"].to_string()) {
            problems.push(format!(
                "GET /api/sim-cards as another user: lists alice's SIM {}",
                sim["id"]
            ));
        }
    }
    app.teardown().await;
    assert!(
        problems.is_empty(),
        "{} of {cells} cells or routes differ from the authorization table:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

const DOC_BEGIN: &str = "<!-- authz-matrix:begin (generated by tests/tests/it/authz_matrix.rs; UPDATE_SECURITY_DOC=1 rewrites it) -->\n";
const DOC_END: &str = "<!-- authz-matrix:end -->";

#[test]
fn security_doc_shows_the_authorization_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let doc = std::fs::read_to_string(&path).expect("docs/security.md");
    let start = doc
        .find(DOC_BEGIN)
        .expect("docs/security.md has the matrix's begin marker")
        + DOC_BEGIN.len();
    let end = doc[start..]
        .find(DOC_END)
        .expect("docs/security.md has the matrix's end marker")
        + start;
    let rendered = authz::render_markdown(&table());
    if std::env::var_os("UPDATE_SECURITY_DOC").is_some() {
        let updated = format!("{}{rendered}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).expect("rewrite docs/security.md");
        return;
    }
    assert!(
        doc[start..end] == rendered,
        "docs/security.md's authorization table differs from the test's; run \
         `UPDATE_SECURITY_DOC=1 cargo test -p smsgate-tests --test it security_doc` and commit it"
    );
}
