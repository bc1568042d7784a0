//! Sign in, sign out and changing one's own password (forced for the default admin's
//! initial password).

use std::time::Duration;

use crate::is_local_path;
use crate::{cookies, Flash, Layout, Page, WebError};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::errors::{db_error, user_error};
use super::forms::{CsrfForm, NoFields};
use super::session::{
    self, constant_time_eq, login_csrf_cookie_name, random_token, SessionUser, SignedIn,
};
use super::PanelSettings;
use crate::client::tcp_peer;
use crate::client::ClientAddress;
use crate::state::WebState;
use smsgate_core::admin::password::PASSWORD_RULES;
use smsgate_core::admin::users::{self, UserAdminError};
use smsgate_core::auth::service::AuthError;
use smsgate_core::auth::throttle::client_address;
use smsgate_core::auth::MAX_PASSWORD_BYTES;

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(
    app: &WebState,
    csrf: &str,
    next: &str,
    username: &str,
    error: Option<&str>,
    flash: Option<Flash>,
) -> Page {
    let layout = Layout {
        flash,
        tz: app.panel.display_tz.name(),
        ..Layout::default()
    };
    Page::new("login.html", layout)
        .with("csrf", csrf)
        .with("next", next)
        .with("username", username)
        .with("error", error)
}

/// The login form with a fresh double-submit CSRF cookie (there is no session to bind a
/// token to yet).
fn with_login_csrf(
    page: Page,
    token: &str,
    headers: &HeaderMap,
    settings: &PanelSettings,
) -> Response {
    let mut response = page.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            login_csrf_cookie_name(settings),
            token,
            None,
            settings.cookie_secure || cookies::is_tls(headers),
        ),
    );
    response
}

pub async fn login_form(
    State(app): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let token = random_token();
    let next = query.next.filter(|n| is_safe_next(n)).unwrap_or_default();
    let page = login_page(&app, &token, &next, "", None, Flash::from_headers(&headers));
    with_login_csrf(page, &token, &headers, &app.panel)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn log_in(State(app): State<WebState>, request: Request) -> Result<Response, WebError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map_err(|_| WebError::BadRequest("The form is too large.".into()))?;
    let form: LoginForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| WebError::BadRequest("The form could not be read.".into()))?;
    let settings = &app.panel;
    let cookie_token = cookies::get(&parts.headers, login_csrf_cookie_name(settings)).unwrap_or("");
    if cookie_token.is_empty()
        || !constant_time_eq(cookie_token.as_bytes(), form.csrf_token.as_bytes())
    {
        return Err(WebError::CsrfRejected);
    }
    let address = client_address(&parts.headers, &tcp_peer(&parts), &app.core.settings.login);
    let next = if is_safe_next(&form.next) {
        form.next.clone()
    } else {
        String::new()
    };
    let retry = |error: &str, status: StatusCode| {
        let token = random_token();
        let page =
            login_page(&app, &token, &next, &form.username, Some(error), None).status(status);
        with_login_csrf(page, &token, &parts.headers, settings)
    };

    let login = match app
        .core
        .login(&form.username, &form.password, &address)
        .await
    {
        Ok(login) => login,
        Err(AuthError::InvalidCredentials) => {
            return Ok(retry(
                "Wrong username or password.",
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(AuthError::TooManyAttempts { retry_after }) => {
            let response = retry(
                &throttled_message(retry_after),
                StatusCode::TOO_MANY_REQUESTS,
            );
            return Ok(with_retry_after(response, retry_after));
        }
        Err(AuthError::Busy) => {
            let mut response = retry(
                "The server is busy. Please sign in again in a moment.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(response);
        }
        Err(AuthError::PasswordTooLong) => {
            return Ok(retry(
                &format!("Passwords are at most {MAX_PASSWORD_BYTES} bytes."),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(AuthError::Disabled) => {
            return Ok(retry("This account is disabled.", StatusCode::UNAUTHORIZED))
        }
        Err(AuthError::Database(e)) => return Err(db_error(e)),
        Err(e) => return Err(WebError::Internal(e.into())),
    };
    let cookie_name = session::cookie_name(settings);
    // A new id at every login: a session id planted before login is worth nothing after.
    if let Some(old) = cookies::get(&parts.headers, cookie_name) {
        let _ = session::delete(&app.core.db, &smsgate_core::auth::token_digest(old)).await;
    }
    let raw = session::create(&app.core.db, login.user.id, settings.session_idle)
        .await
        .map_err(db_error)?;
    let to = if next.is_empty() {
        "/".to_owned()
    } else {
        next
    };
    let mut response =
        Flash::success(format!("Signed in as {}.", login.user.username)).redirect(&to);
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookies::set(
            cookie_name,
            &raw,
            Some(settings.session_max_age.as_secs() as i64),
            settings.cookie_secure || cookies::is_tls(&parts.headers),
        ),
    );
    headers.append(
        header::SET_COOKIE,
        cookies::set(
            login_csrf_cookie_name(settings),
            "",
            Some(0),
            settings.cookie_secure,
        ),
    );
    Ok(response)
}

/// What the panel says when the login throttle refuses an attempt (sign-in or a guess at
/// the current password).
fn throttled_message(retry_after: Duration) -> String {
    let minutes = retry_after.as_secs().div_ceil(60).max(1);
    format!("Too many failed sign-in attempts from here. Try again in {minutes} minute(s).")
}

fn with_retry_after(mut response: Response, retry_after: Duration) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
    response
}

/// Where the login form may send the user afterwards: a plain path on this site. The
/// browser resolves `/\t/evil.example` (a tab or newline is dropped) and `/\evil.example`
/// as `//evil.example`, another host; so besides `//` and `/\` at the start, control
/// characters, whitespace, backslashes and non-ASCII bytes are refused anywhere.
pub(crate) fn is_safe_next(path: &str) -> bool {
    is_local_path(path)
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

fn signed_out(flash: &str, settings: &PanelSettings) -> Response {
    let mut response = Flash::success(flash).redirect("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, session::clear_cookie(settings));
    response
}

/// `POST /logout` with the session's CSRF token. There is no `GET /logout` (405): a link or
/// an image on another site must not be able to sign anyone out.
pub async fn log_out(
    State(app): State<WebState>,
    CsrfForm { user, .. }: CsrfForm<SessionUser, NoFields>,
) -> Result<Response, WebError> {
    session::delete(&app.core.db, &user.session.id_hash)
        .await
        .map_err(db_error)?;
    Ok(signed_out("You have signed out.", &app.panel))
}

fn password_page(
    app: &WebState,
    user: &SessionUser,
    errors: serde_json::Value,
    status: StatusCode,
) -> Page {
    Page::new("password.html", user.layout(app, "account"))
        .with("forced", user.session.must_change_password)
        .with("rules", PASSWORD_RULES)
        .with("errors", errors)
        .status(status)
}

pub async fn password_form(State(app): State<WebState>, user: SessionUser) -> Page {
    password_page(&app, &user, json!({}), StatusCode::OK)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change_password(
    State(app): State<WebState>,
    ClientAddress(address): ClientAddress,
    CsrfForm { user, form }: CsrfForm<SessionUser, PasswordForm>,
) -> Result<Response, WebError> {
    let invalid = |errors| {
        Ok(password_page(&app, &user, errors, StatusCode::UNPROCESSABLE_ENTITY).into_response())
    };
    if form.new_password != form.confirm {
        return invalid(json!({"confirm": "The two new passwords differ."}));
    }
    let session = &user.session;
    match users::change_own_password(
        &app.core.db,
        app.core.login_limits(),
        &address,
        session.user_id,
        &session.username,
        &form.current,
        form.new_password,
        Some(&session.id_hash),
    )
    .await
    {
        Ok(()) => Ok(Flash::success("Your password has been changed.").redirect("/")),
        Err(UserAdminError::WrongCurrentPassword) => {
            invalid(json!({"current": "This is not your current password."}))
        }
        Err(UserAdminError::TooManyAttempts { retry_after }) => {
            let page = password_page(
                &app,
                &user,
                json!({"current": throttled_message(retry_after)}),
                StatusCode::TOO_MANY_REQUESTS,
            );
            Ok(with_retry_after(page.into_response(), retry_after))
        }
        Err(UserAdminError::Invalid { message, .. }) => invalid(json!({"new_password": message})),
        Err(e) => Err(user_error(e, "/")),
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_next;

    #[test]
    fn plain_local_paths_are_followed_after_login() {
        for ok in ["/", "/history?status=sent&page=2", "/history/42", "/a%09b"] {
            assert!(is_safe_next(ok), "{ok:?}");
        }
    }

    #[test]
    fn anything_a_browser_could_resolve_to_another_host_is_refused() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example", // `next=/%09/evil.example`, as the query decodes it
            "/\n/evil.example",
            "/\r//evil.example",
            "/ /evil.example",
            "/x\\..\\evil",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\u{00a0}/evil.example",
            "",
        ] {
            assert!(!is_safe_next(bad), "{bad:?}");
        }
    }
}
