//! The authorization matrix's machinery: who calls ([`Caller`]), what a cell expects
//! ([`Expect`]), the fixtures the cells point at ([`Fixtures`]), the request each cell sends
//! ([`run_cell`]) and the markdown the table is shown as in docs/security.md
//! ([`render_markdown`]). The table itself is in `tests/tests/it/authz_matrix.rs`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::{hidden_input, TestApp};

/// The panel's session cookie (`smsgate_web::cookies::SESSION`; the tests crate does not
/// depend on `smsgate-web`). Over plain HTTP it carries no `__Host-` prefix.
const SESSION_COOKIE: &str = "sg_session";
/// The password of every account the fixtures create.
pub const PASSWORD: &str = "Matrix-pass-2026";
/// A CSRF token that is well-formed but not the session's.
const FORGED_CSRF: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Which of the two HTTP surfaces a route belongs to; each has its own callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The JSON API: bearer JWTs and API tokens.
    Api,
    /// The staff panel: session cookies and CSRF tokens.
    Panel,
}

impl Surface {
    /// The matrix's columns for this surface, in the order the cells run: the callers who
    /// must be refused first, then the ones who may succeed, so a cell that succeeds (a
    /// delete) comes after those that must not.
    pub fn callers(self) -> &'static [Caller] {
        match self {
            Surface::Api => &[
                Caller::Anonymous,
                Caller::ExpiredJwt,
                Caller::RevokedToken,
                Caller::DisabledJwt,
                Caller::DisabledToken,
                Caller::OtherUser,
                Caller::User,
                Caller::Admin,
            ],
            Surface::Panel => &[
                Caller::Anonymous,
                Caller::DisabledSession,
                Caller::NoCsrf,
                Caller::WrongCsrf,
                Caller::OtherUser,
                Caller::User,
                Caller::Admin,
            ],
        }
    }
}

/// Who sends a cell's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credentials at all.
    Anonymous,
    /// Alice's JWT, signed with the right key, expired two hours ago.
    ExpiredJwt,
    /// An API token of alice's that was revoked.
    RevokedToken,
    /// Carol's JWT, issued while she was active; she has since been disabled.
    DisabledJwt,
    /// An unrevoked API token of carol's (disabled).
    DisabledToken,
    /// A panel session of carol's that is still in the table although she is disabled.
    DisabledSession,
    /// The admin's session, posting without a CSRF token.
    NoCsrf,
    /// The admin's session, posting another token than the session's.
    WrongCsrf,
    /// Bob, an ordinary user, on alice's resource (the route's ids are alice's).
    OtherUser,
    /// Alice, an ordinary user, on her own resource.
    User,
    /// The default admin, on alice's resource.
    Admin,
}

impl Caller {
    /// The column heading in docs/security.md.
    pub fn heading(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::ExpiredJwt => "expired JWT",
            Caller::RevokedToken => "revoked API token",
            Caller::DisabledJwt => "disabled user, JWT",
            Caller::DisabledToken => "disabled user, API token",
            Caller::DisabledSession => "disabled user, session",
            Caller::NoCsrf => "no CSRF token",
            Caller::WrongCsrf => "wrong CSRF token",
            Caller::OtherUser => "another user's resource",
            Caller::User => "user",
            Caller::Admin => "admin",
        }
    }
}

/// What one cell must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this status. A `303` must not point at the login page.
    Status(u16),
    /// `303 See Other` to `/login` (the panel's answer to a missing or dead session).
    ToLogin,
    /// The caller does not apply to this route (a CSRF token on a GET, an id on a route
    /// without one).
    NotApplicable,
}

impl Expect {
    /// Reads one cell of the table: a status, `login` or `-`.
    pub fn parse(token: &str) -> Expect {
        match token {
            "-" => Expect::NotApplicable,
            "login" => Expect::ToLogin,
            status => Expect::Status(
                status
                    .parse()
                    .unwrap_or_else(|_| panic!("`{status}` is not a status, `login` or `-`")),
            ),
        }
    }

    pub fn matches(self, got: &Outcome) -> bool {
        let to_login = got
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login"));
        match self {
            Expect::NotApplicable => true,
            Expect::ToLogin => got.status == 303 && to_login,
            Expect::Status(303) => got.status == 303 && !to_login,
            Expect::Status(status) => got.status == status,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Status(status) => write!(f, "{status}"),
            Expect::ToLogin => f.write_str("303 → /login"),
            Expect::NotApplicable => f.write_str("—"),
        }
    }
}

/// The body a cell sends; functions of the cell so that what must be unique (a SIM's
/// number, a username, an idempotency key) is.
pub enum Body {
    None,
    Json(fn(&Cell) -> Value),
    /// URL-encoded; the runner adds the caller's `csrf_token`.
    Form(fn(&Cell) -> Vec<(&'static str, String)>),
    /// `multipart/form-data` (the compose form); the runner adds the caller's `csrf_token`.
    Multipart(fn(&Cell) -> Vec<(&'static str, String)>),
    /// The panel's login form: the runner fetches `/login` first for its CSRF cookie.
    PanelLogin,
}

/// One route of the matrix and what each caller gets.
pub struct Row {
    pub method: Method,
    pub path: &'static str,
    pub surface: Surface,
    /// The fixture whose ids fill the path's `{…}` segments, in order.
    pub target: Option<&'static str>,
    pub body: Body,
    /// One per [`Surface::callers`].
    pub cells: Vec<Expect>,
    /// A route that must not be served any more: the router must not list it.
    pub absent: bool,
}

impl Row {
    pub fn api(method: Method, path: &'static str) -> Row {
        Row::new(Surface::Api, method, path)
    }

    pub fn panel(method: Method, path: &'static str) -> Row {
        Row::new(Surface::Panel, method, path)
    }

    fn new(surface: Surface, method: Method, path: &'static str) -> Row {
        Row {
            method,
            path,
            surface,
            target: None,
            body: Body::None,
            cells: Vec::new(),
            absent: false,
        }
    }

    /// The path's ids are those of fixture `name`.
    pub fn on(mut self, name: &'static str) -> Row {
        self.target = Some(name);
        self
    }

    pub fn json(mut self, body: fn(&Cell) -> Value) -> Row {
        self.body = Body::Json(body);
        self
    }

    pub fn form(mut self, body: fn(&Cell) -> Vec<(&'static str, String)>) -> Row {
        self.body = Body::Form(body);
        self
    }

    pub fn multipart(mut self, body: fn(&Cell) -> Vec<(&'static str, String)>) -> Row {
        self.body = Body::Multipart(body);
        self
    }

    pub fn login_form(mut self) -> Row {
        self.body = Body::PanelLogin;
        self
    }

    /// A route that was removed on purpose: it must not be in the router, and every
    /// caller gets the given answers.
    pub fn absent(mut self) -> Row {
        self.absent = true;
        self
    }

    /// The cells, in the surface's column order, written as the table reads: statuses,
    /// `login` or `-`, separated by spaces (a `|` may group them and is ignored).
    pub fn expect(mut self, parts: &[&str]) -> Row {
        self.cells = parts
            .iter()
            .flat_map(|part| part.split_whitespace())
            .filter(|token| *token != "|")
            .map(Expect::parse)
            .collect();
        assert_eq!(
            self.cells.len(),
            self.surface.callers().len(),
            "{} {}: {} cells for {} callers",
            self.method,
            self.path,
            self.cells.len(),
            self.surface.callers().len()
        );
        self
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An account of the fixtures, with a JWT it got by logging in.
pub struct Account {
    pub id: i64,
    pub username: String,
    pub jwt: String,
}

/// Everything the cells point at, built once: the accounts, their credentials and the
/// resources whose ids fill the routes' paths (all alice's, so that bob's cells are
/// "another user's resource"). Each destructive route has a resource of its own.
pub struct Fixtures {
    pub alice: Account,
    pub bob: Account,
    pub carol: Account,
    pub admin: Account,
    pub expired_jwt: String,
    pub revoked_token: String,
    pub carol_token: String,
    ids: HashMap<&'static str, Vec<String>>,
}

/// A cell being run: what its body functions may read.
pub struct Cell<'a> {
    pub fx: &'a Fixtures,
    pub caller: Caller,
    /// Unique across the whole run.
    pub n: u32,
}

impl Fixtures {
    fn set(&mut self, name: &'static str, ids: &[i64]) {
        self.ids
            .insert(name, ids.iter().map(ToString::to_string).collect());
    }

    /// The ids of fixture `name`.
    pub fn ids(&self, name: &str) -> &[String] {
        self.ids
            .get(name)
            .unwrap_or_else(|| panic!("no fixture named `{name}`"))
    }

    /// Builds every account, credential and resource. The API is used where it can be
    /// (so the rows are what it writes), SQL where no route can make the state wanted (a
    /// revoked token, a failed delivery, a dead letter, a disabled user's live credential).
    pub async fn build(app: &TestApp) -> Fixtures {
        let db = &app.db;
        let hash = smsgate_core::auth::hash_password(PASSWORD).unwrap();
        let user = |name: &'static str| {
            let hash = hash.clone();
            async move {
                smsgate_core::auth::repo::insert_user(db, name, &hash, false, false)
                    .await
                    .unwrap()
            }
        };
        let (alice, bob, carol) = (user("alice").await, user("bob").await, user("carol").await);
        let victims = [
            "victim-api-update",
            "victim-api-delete",
            "victim-api-token",
            "victim-panel-password",
            "victim-panel-limits",
            "victim-panel-toggle",
            "victim-panel-delete",
            "victim-panel-token",
        ];
        let mut victim_ids = Vec::new();
        for name in victims {
            victim_ids.push((name, user(name).await));
        }
        let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'SMSadmin'")
            .fetch_one(db)
            .await
            .unwrap();
        let account = |id: i64, username: &str, jwt: String| Account {
            id,
            username: username.to_owned(),
            jwt,
        };
        let alice = account(alice, "alice", app.login("alice", PASSWORD).await);
        let bob = account(bob, "bob", app.login("bob", PASSWORD).await);
        // Carol logs in and gets a token while active, then is disabled behind their back
        // (SQL, so that whatever else disabling does, these credentials stay live).
        let carol = account(carol, "carol", app.login("carol", PASSWORD).await);
        let admin = account(admin_id, "SMSadmin", app.token.clone());
        let issue = |user_id: i64, label: &'static str| async move {
            smsgate_core::auth::service::issue_api_token(db, user_id, label)
                .await
                .unwrap()
        };
        let carol_token = issue(carol.id, "authz: disabled").await;
        sqlx::query("UPDATE users SET is_active = false WHERE id = $1")
            .bind(carol.id)
            .execute(db)
            .await
            .unwrap();
        let revoked_token = issue(alice.id, "authz: revoked").await;
        issue(alice.id, "authz: to revoke").await;
        sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE label = 'authz: revoked'")
            .execute(db)
            .await
            .unwrap();
        let api_key: i64 =
            sqlx::query_scalar("SELECT id FROM api_tokens WHERE label = 'authz: to revoke'")
                .fetch_one(db)
                .await
                .unwrap();
        let settings = &app.api.as_ref().expect("a running API").state.settings;
        let expired_jwt = smsgate_core::auth::JwtKeys::new(
            settings.jwt_secret.expose_secret().as_bytes(),
            chrono::Duration::hours(-2),
        )
        .issue(alice.id, "alice")
        .unwrap();

        let mut fx = Fixtures {
            alice,
            bob,
            carol,
            admin,
            expired_jwt,
            revoked_token,
            carol_token,
            ids: HashMap::new(),
        };
        for (name, id) in victim_ids {
            fx.set(name, &[id]);
        }
        fx.set("api-key", &[api_key]);
        fx.ids.insert("asset", vec!["app.css".to_owned()]);
        // Alice's own opt-out; DELETE /api/opt-outs/{number} takes the number, URL-encoded.
        sqlx::query("INSERT INTO opt_outs (phone, user_id, source) VALUES ($1, $2, 'api')")
            .bind("+85291239999")
            .bind(fx.alice.id)
            .execute(db)
            .await
            .unwrap();
        fx.ids.insert("opt-out", vec!["%2B85291239999".to_owned()]);
        fx.ids
            .insert("docs-asset", vec!["swagger-ui.css".to_owned()]);

        let message = app
            .send_sms_as(&fx.alice.jwt, "9123 4567", "authz matrix")
            .await;
        fx.set("message", &[message]);
        // Scheduled messages of alice's to cancel: one for the API's row, one for the panel's.
        for name in ["scheduled-message", "panel-scheduled-message"] {
            let (status, scheduled) = app
                .request(
                    reqwest::Method::POST,
                    "/api/sms",
                    Some(&fx.alice.jwt),
                    Some(serde_json::json!({
                        "recipient": "9123 4568",
                        "content": "authz matrix, later",
                        "send_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                    })),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{scheduled}");
            fx.set(
                name,
                &[scheduled["data"]["id"].as_i64().expect("a message id")],
            );
        }
        for name in ["dead-letter", "dead-letter-to-abandon"] {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO dead_letters (recipient_id, message_id, reason, attempts, payload)
                 SELECT id, message_id, 'authz matrix', 3, '{}'::jsonb FROM recipients
                 WHERE message_id = $1 RETURNING id",
            )
            .bind(message)
            .fetch_one(db)
            .await
            .unwrap();
            fx.set(name, &[id]);
        }

        for (i, name) in ["sim", "sim-to-delete", "panel-sim-to-delete"]
            .into_iter()
            .enumerate()
        {
            let (status, body) = app
                .request(
                    Method::POST,
                    "/api/sim-cards",
                    Some(&fx.admin.jwt),
                    Some(json!({"number": format!("6123 90{i:02}"), "label": name})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "SIM fixture: {body}");
            let id = body["id"].as_i64().unwrap();
            assign_sim_to(app, id, fx.alice.id).await;
            fx.set(name, &[id]);
        }

        for name in [
            "webhook",
            "webhook-to-toggle",
            "webhook-to-delete",
            "panel-webhook-to-delete",
        ] {
            let (status, body) = app
                .request(
                    Method::POST,
                    "/api/webhooks",
                    Some(&fx.alice.jwt),
                    Some(json!({"url": format!("http://127.0.0.1:9/{name}")})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "webhook fixture: {body}");
            fx.set(name, &[body["id"].as_i64().unwrap()]);
        }
        let webhook = fx.ids("webhook")[0].clone();
        for name in ["delivery", "panel-delivery"] {
            let (status, body) = app
                .request(
                    Method::POST,
                    &format!("/api/webhooks/{webhook}/test"),
                    Some(&fx.alice.jwt),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "delivery fixture: {body}");
            let delivery = body["delivery_id"].as_i64().unwrap();
            // Only a failed delivery can be retried; no dispatcher runs to fail it.
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', completed_at = now() WHERE id = $1",
            )
            .bind(delivery)
            .execute(db)
            .await
            .unwrap();
            fx.ids
                .insert(name, vec![webhook.clone(), delivery.to_string()]);
        }
        fx
    }
}

/// Narrows a SIM to `user_id` once SIM cards have assignees (issue #13, the
/// `sim_card_assignees` migration); before that every SIM is everyone's and this does
/// nothing.
async fn assign_sim_to(app: &TestApp, sim: i64, user_id: i64) {
    let has_assignees: bool =
        sqlx::query_scalar("SELECT to_regclass('sim_card_assignees') IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    if !has_assignees {
        return;
    }
    sqlx::query("UPDATE sim_cards SET assigned_to_all = false WHERE id = $1")
        .bind(sim)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sim_card_assignees (sim_card_id, user_id) VALUES ($1, $2)")
        .bind(sim)
        .bind(user_id)
        .execute(&app.db)
        .await
        .unwrap();
}

/// What a cell got.
pub struct Outcome {
    pub status: u16,
    pub location: Option<String>,
    /// The start of the body, to explain a mismatch.
    pub snippet: String,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(location) = &self.location {
            write!(f, " → {location}")?;
        }
        if !self.snippet.is_empty() {
            write!(f, " ({})", self.snippet)?;
        }
        Ok(())
    }
}

/// A panel session made for one cell, so that a cell that ends it (logout, a password
/// change, a disabled user's session being dropped) cannot spoil the next.
struct PanelSession {
    cookie: String,
    csrf: String,
}

async fn new_session(app: &TestApp, user_id: i64) -> PanelSession {
    let raw = smsgate_web::panel::session::create(&app.db, user_id, Duration::from_secs(3600))
        .await
        .unwrap();
    let csrf: String = sqlx::query_scalar("SELECT csrf_token FROM web_sessions WHERE id_hash = $1")
        .bind(Sha256::digest(raw.as_bytes()).to_vec())
        .fetch_one(&app.db)
        .await
        .unwrap();
    PanelSession {
        cookie: format!("{SESSION_COOKIE}={raw}"),
        csrf,
    }
}

/// The client every cell uses: no cookie jar (cells set their own), no redirects followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Fills the path's `{…}` segments with the target's ids, in order.
fn fill_path(row: &Row, fx: &Fixtures) -> String {
    let ids = row.target.map_or(&[][..], |name| fx.ids(name));
    let mut ids = ids.iter();
    row.path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                ids.next()
                    .unwrap_or_else(|| panic!("{}: no id for {segment}", row.name()))
                    .as_str()
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends one cell's request as `caller`.
pub async fn run_cell(
    app: &TestApp,
    http: &reqwest::Client,
    fx: &Fixtures,
    row: &Row,
    caller: Caller,
    n: u32,
) -> Outcome {
    let url = app.url(&fill_path(row, fx));
    let cell = Cell { fx, caller, n };
    let mut headers = HeaderMap::new();
    let mut csrf = None;
    match row.surface {
        Surface::Api => {
            let credential = match caller {
                Caller::Anonymous => None,
                Caller::ExpiredJwt => Some(format!("Bearer {}", fx.expired_jwt)),
                Caller::DisabledJwt => Some(format!("Bearer {}", fx.carol.jwt)),
                Caller::OtherUser => Some(format!("Bearer {}", fx.bob.jwt)),
                Caller::User => Some(format!("Bearer {}", fx.alice.jwt)),
                Caller::Admin => Some(format!("Bearer {}", fx.admin.jwt)),
                // API tokens go in the edge gateway's header, so both headers are covered.
                Caller::RevokedToken => {
                    headers.insert(
                        "x-api-key",
                        HeaderValue::from_str(&fx.revoked_token).unwrap(),
                    );
                    None
                }
                Caller::DisabledToken => {
                    headers.insert("x-api-key", HeaderValue::from_str(&fx.carol_token).unwrap());
                    None
                }
                other => panic!("{other:?} is not an API caller"),
            };
            if let Some(credential) = credential {
                headers.insert(AUTHORIZATION, HeaderValue::from_str(&credential).unwrap());
            }
        }
        Surface::Panel => {
            let session = match caller {
                Caller::Anonymous => None,
                Caller::DisabledSession => Some(new_session(app, fx.carol.id).await),
                Caller::NoCsrf | Caller::WrongCsrf | Caller::Admin => {
                    Some(new_session(app, fx.admin.id).await)
                }
                Caller::OtherUser => Some(new_session(app, fx.bob.id).await),
                Caller::User => Some(new_session(app, fx.alice.id).await),
                other => panic!("{other:?} is not a panel caller"),
            };
            if let Some(session) = session {
                headers.insert(COOKIE, HeaderValue::from_str(&session.cookie).unwrap());
                csrf = Some(session.csrf);
            }
            csrf = match caller {
                Caller::NoCsrf => None,
                Caller::WrongCsrf => Some(FORGED_CSRF.to_owned()),
                _ => csrf,
            };
        }
    }

    let mut request = http.request(row.method.clone(), &url);
    match &row.body {
        // A panel POST is a form even when it has no fields but its token.
        Body::None if row.surface == Surface::Panel && row.method == Method::POST => {
            let fields: Vec<(&str, String)> = csrf.map(|t| ("csrf_token", t)).into_iter().collect();
            request = request.form(&fields);
        }
        Body::None => {}
        Body::Json(body) => request = request.json(&body(&cell)),
        Body::Form(fields) => {
            let mut fields = fields(&cell);
            if let Some(token) = csrf {
                fields.push(("csrf_token", token));
            }
            request = request.form(&fields);
        }
        Body::Multipart(fields) => {
            let mut form = reqwest::multipart::Form::new();
            if let Some(token) = csrf {
                form = form.text("csrf_token", token);
            }
            for (name, value) in fields(&cell) {
                form = form.text(name, value);
            }
            request = request.multipart(form);
        }
        Body::PanelLogin => {
            // The login form sets a double-submit cookie and puts the same token in the page.
            let page = http
                .get(app.url("/login"))
                .headers(headers.clone())
                .send()
                .await
                .expect("GET /login sent");
            let cookie = page
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .expect("the login form sets its CSRF cookie")
                .to_owned();
            let token = hidden_input(&page.text().await.unwrap(), "csrf_token")
                .expect("the login form has a csrf_token");
            let cookies = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
                Some(session) => format!("{session}; {cookie}"),
                None => cookie,
            };
            headers.insert(COOKIE, HeaderValue::from_str(&cookies).unwrap());
            let mut fields = vec![
                ("username", fx.alice.username.clone()),
                ("password", PASSWORD.to_owned()),
            ];
            match caller {
                Caller::NoCsrf => {}
                Caller::WrongCsrf => fields.push(("csrf_token", FORGED_CSRF.to_owned())),
                _ => fields.push(("csrf_token", token)),
            }
            request = request.form(&fields);
        }
    }
    let response = request
        .headers(headers)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} as {caller:?}: {e}", row.name()));
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let streaming = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    // A live stream never ends: its status is all a cell needs.
    let snippet = if streaming {
        String::new()
    } else {
        let text = response.text().await.unwrap_or_default();
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(120)
            .collect()
    };
    Outcome {
        status,
        location,
        snippet,
    }
}

/// The table as docs/security.md shows it: one markdown table per surface.
pub fn render_markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    for (surface, title) in [(Surface::Api, "JSON API"), (Surface::Panel, "Staff panel")] {
        let callers = surface.callers();
        out.push_str(&format!("#### {title}\n\n| Route |"));
        for caller in callers {
            out.push_str(&format!(" {} |", caller.heading()));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(callers.len()));
        out.push('\n');
        for row in rows.iter().filter(|r| r.surface == surface) {
            let note = if row.absent { " (removed)" } else { "" };
            out.push_str(&format!("| `{}`{note} |", row.name()));
            for cell in &row.cells {
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}
