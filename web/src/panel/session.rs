//! Server-side sessions in PostgreSQL (`web_sessions`) and the extractors that read them.
//!
//! The cookie holds 256 random bits; the table holds their SHA-256, the user and the
//! session's CSRF token. Logout deletes the row; disabling a user or changing their password
//! deletes all their rows; every request re-reads the user's `is_active` and `is_admin`, so
//! a change takes effect on the very next request.

use std::time::Duration;

use crate::{cookies, Flash, Layout, LayoutUser, WebError};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::errors::db_error;
use super::PanelSettings;
use crate::state::WebState;
use smsgate_core::auth::sessions;
use smsgate_core::auth::token_digest;
use smsgate_core::history::Viewer;

/// The signed-in user of a request, as its session says.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: Vec<u8>,
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
    pub must_change_password: bool,
    pub csrf: String,
}

impl Session {
    pub fn viewer(&self) -> Viewer {
        Viewer {
            user_id: self.user_id,
            is_admin: self.is_admin,
        }
    }

    /// Constant-time comparison of a form's token with the session's.
    pub fn verify_csrf(&self, token: &str) -> Result<(), WebError> {
        if constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::CsrfRejected)
        }
    }
}

/// Equal contents, compared without an early exit on the first difference (the length is
/// not secret: every token has the same one).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// 256 random bits, base64url: session ids, CSRF tokens, idempotency keys.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts a session for `user_id`; returns the cookie value. Also sweeps expired sessions,
/// which costs one indexed delete per login.
pub async fn create(db: &PgPool, user_id: i64, idle: Duration) -> Result<String, sqlx::Error> {
    let raw = random_token();
    sessions::insert(db, &token_digest(&raw), user_id, &random_token(), idle).await?;
    sessions::delete_expired(db).await?;
    Ok(raw)
}

pub async fn delete(db: &PgPool, id_hash: &[u8]) -> Result<(), sqlx::Error> {
    sessions::delete(db, id_hash).await
}

/// What the middleware found, for the extractors.
#[derive(Clone)]
enum Found {
    Session(Session),
    /// The session belonged to a user who has since been disabled.
    Disabled,
}

/// Panel middleware: resolves the session cookie once per request, and refuses unsafe
/// methods sent from another origin (defence in depth beside the CSRF tokens).
pub async fn load_session(
    State(app): State<WebState>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && is_cross_site(request.headers())
    {
        return WebError::CsrfRejected.into_response();
    }
    let settings = &app.panel;
    if let Some(raw) = cookies::get(request.headers(), cookie_name(settings)) {
        let id_hash = token_digest(raw);
        match sessions::find(&app.core.db, &id_hash, settings.session_max_age).await {
            Ok(Some(row)) if !row.is_active => {
                // Normally gone already (disabling deletes them); this covers a race.
                if let Err(e) = delete(&app.core.db, &id_hash).await {
                    return db_error(e).into_response();
                }
                request.extensions_mut().insert(Found::Disabled);
            }
            Ok(Some(row)) => {
                if Utc::now() - row.last_seen_at > chrono::Duration::seconds(60) {
                    if let Err(e) =
                        sessions::touch(&app.core.db, &id_hash, settings.session_idle).await
                    {
                        return db_error(e).into_response();
                    }
                }
                request.extensions_mut().insert(Found::Session(Session {
                    id_hash,
                    user_id: row.user_id,
                    username: row.username,
                    is_admin: row.is_admin,
                    must_change_password: row.must_change_password,
                    csrf: row.csrf_token,
                }));
            }
            Ok(None) => {}
            Err(e) => return db_error(e).into_response(),
        }
    }
    next.run(request).await
}

/// A browser tells us where a request came from: `Sec-Fetch-Site` (all current browsers)
/// or `Origin` compared with `Host`.
fn is_cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "cross-site" || site == "same-site";
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin != "null" && origin_host != host
        }
        _ => false,
    }
}

/// The signed-in user, whatever state their password is in (password page, logout).
pub struct SessionUser {
    pub session: Session,
    pub flash: Option<Flash>,
}

/// A signed-in user who may use the panel (no pending forced password change).
pub struct PanelUser {
    pub session: Session,
    pub flash: Option<Flash>,
}

/// A signed-in administrator.
pub struct AdminUser {
    pub session: Session,
    pub flash: Option<Flash>,
}

fn login_required(parts: &Parts) -> WebError {
    let next = (parts.method == Method::GET)
        .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
        .flatten();
    WebError::LoginRequired { next }
}

impl FromRequestParts<WebState> for SessionUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &WebState) -> Result<Self, WebError> {
        match parts.extensions.get::<Found>() {
            Some(Found::Session(session)) => {
                tracing::Span::current().record("user.id", session.user_id);
                Ok(SessionUser {
                    session: session.clone(),
                    flash: Flash::from_headers(&parts.headers),
                })
            }
            Some(Found::Disabled) => Err(WebError::refused(
                "/login",
                "Your account has been disabled.",
            )),
            None => Err(login_required(parts)),
        }
    }
}

impl FromRequestParts<WebState> for PanelUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let SessionUser { session, flash } = SessionUser::from_request_parts(parts, state).await?;
        if session.must_change_password {
            return Err(WebError::PasswordChangeRequired);
        }
        Ok(PanelUser { session, flash })
    }
}

impl FromRequestParts<WebState> for AdminUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let PanelUser { session, flash } = PanelUser::from_request_parts(parts, state).await?;
        if !session.is_admin {
            return Err(WebError::Forbidden);
        }
        Ok(AdminUser { session, flash })
    }
}

/// Access to the session and flash of any of the user extractors.
pub trait SignedIn {
    fn session(&self) -> &Session;
    fn flash(&self) -> Option<Flash>;

    /// The page frame for this user.
    fn layout(&self, app: &WebState, nav: &'static str) -> Layout {
        let session = self.session();
        Layout {
            user: Some(LayoutUser {
                id: session.user_id,
                username: session.username.clone(),
                is_admin: session.is_admin,
            }),
            csrf: session.csrf.clone(),
            flash: self.flash(),
            nav,
            tz: app.panel.display_tz.name(),
            ..Layout::default()
        }
    }
}

macro_rules! signed_in {
    ($($t:ty),+) => {$(
        impl SignedIn for $t {
            fn session(&self) -> &Session { &self.session }
            fn flash(&self) -> Option<Flash> { self.flash.clone() }
        }
    )+};
}
signed_in!(SessionUser, PanelUser, AdminUser);

/// The client's address for login throttling: one function for the panel and the API.
pub use smsgate_core::auth::throttle::client_address;

/// The session cookie's name. Over HTTPS (COOKIE_SECURE) it carries the `__Host-` prefix,
/// which browsers accept only with `Secure`, `Path=/` and no `Domain`: a sibling subdomain
/// or a plain-HTTP man in the middle cannot plant or overwrite it.
pub fn cookie_name(settings: &PanelSettings) -> &'static str {
    if settings.cookie_secure {
        SECURE_SESSION_COOKIE
    } else {
        cookies::SESSION
    }
}

/// The session cookie's name when COOKIE_SECURE is on.
pub const SECURE_SESSION_COOKIE: &str = "__Host-sg_session";

/// The login form's double-submit CSRF cookie, `__Host-` prefixed over HTTPS like the
/// session's: otherwise a sibling subdomain could plant a token of its own and sign a
/// victim in to the attacker's account (login CSRF).
pub fn login_csrf_cookie_name(settings: &PanelSettings) -> &'static str {
    if settings.cookie_secure {
        SECURE_LOGIN_CSRF_COOKIE
    } else {
        cookies::LOGIN_CSRF
    }
}

/// The login CSRF cookie's name when COOKIE_SECURE is on.
pub const SECURE_LOGIN_CSRF_COOKIE: &str = "__Host-sg_login_csrf";

/// A `Set-Cookie` that deletes the session cookie (a `__Host-` cookie only with `Secure`).
pub fn clear_cookie(settings: &PanelSettings) -> HeaderValue {
    cookies::set(cookie_name(settings), "", Some(0), settings.cookie_secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("panel.local:3570"));
        assert!(!is_cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://panel.local:3570"),
        );
        assert!(!is_cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(is_cross_site(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!is_cross_site(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&headers));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn over_https_the_session_cookie_is_a_host_only_secure_cookie() {
        let secure = PanelSettings {
            cookie_secure: true,
            ..PanelSettings::default()
        };
        assert_eq!(cookie_name(&secure), "__Host-sg_session");
        let cleared = clear_cookie(&secure);
        let cleared = cleared.to_str().unwrap();
        assert!(cleared.starts_with("__Host-sg_session=;"), "{cleared}");
        assert!(cleared.contains("Secure") && cleared.contains("Path=/"));
        assert!(!cleared.contains("Domain"));
        assert_eq!(cookie_name(&PanelSettings::default()), "sg_session");
    }
}
