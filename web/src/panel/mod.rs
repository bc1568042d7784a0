//! The staff web panel's routes. Handlers are thin: they extract (session, CSRF-checked
//! form, path), call one service shared with the JSON API (`admin`, `history`, `sms`, `sims`,
//! `traffic`, `webhooks`), and render a `crate::Page` or redirect with a flash. Templates, assets,
//! `WebError` and view helpers come from the `smsgate-web` crate; docs/web-panel.md explains
//! the split.

mod admin_pages;
mod auth_pages;
mod chart;
mod compose;
mod dashboard;
mod errors;
mod forms;
mod history_pages;
mod inbox_pages;
mod optout_pages;
pub mod session;
pub mod settings;
mod sims_pages;
mod traffic_pages;
mod webhook_pages;

use crate::{Page, WebError};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

pub use history_pages::csv_attachment;
pub use settings::PanelSettings;

use crate::state::WebState;
use smsgate_core::params::positive_id;

/// Every panel page, the embedded assets, the session middleware and the security headers.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(dashboard::show_dashboard))
        .route(
            "/login",
            get(auth_pages::login_form).post(auth_pages::log_in),
        )
        // POST only, with the session's CSRF token: a forged link must not sign anyone out.
        .route("/logout", post(auth_pages::log_out))
        .route(
            "/account/password",
            get(auth_pages::password_form).post(auth_pages::change_password),
        )
        .route(
            "/compose",
            get(compose::compose_form).post(compose::send_message),
        )
        .route("/history", get(history_pages::list_messages))
        .route("/history/export.csv", get(history_pages::export_messages))
        .route("/history/{id}", get(history_pages::show_message))
        .route(
            "/history/{id}/recipients.csv",
            get(history_pages::export_recipients),
        )
        .route("/history/{id}/events", get(history_pages::stream_events))
        .route("/history/{id}/retry", post(history_pages::retry_failed))
        // GET confirms, POST cancels: a link alone must never stop a send.
        .route(
            "/history/{id}/cancel",
            get(traffic_pages::confirm_cancel).post(traffic_pages::cancel),
        )
        .route("/scheduled", get(traffic_pages::list_scheduled))
        .route("/sims", get(sims_pages::list_sims))
        .route("/sims/state", get(sims_pages::sim_states))
        .route(
            "/sims/new",
            get(sims_pages::new_sim_form).post(sims_pages::create_sim),
        )
        .route(
            "/sims/{id}/edit",
            get(sims_pages::edit_sim_form).post(sims_pages::update_sim),
        )
        .route("/sims/{id}/toggle", post(sims_pages::toggle_sim))
        .route(
            "/sims/{id}/broker-credentials",
            post(sims_pages::rotate_broker_credentials),
        )
        .route(
            "/sims/{id}/delete",
            get(sims_pages::confirm_delete).post(sims_pages::delete_sim),
        )
        .route("/inbox", get(inbox_pages::list_inbox))
        .route(
            "/opt-outs",
            get(optout_pages::list_opt_outs).post(optout_pages::add_opt_out),
        )
        .route("/opt-outs/remove", post(optout_pages::remove_opt_out))
        .route("/opt-outs/import", post(optout_pages::import_opt_outs))
        .route(
            "/webhooks",
            get(webhook_pages::list_webhooks).post(webhook_pages::create_webhook),
        )
        .route("/webhooks/{id}", get(webhook_pages::show_webhook))
        .route("/webhooks/{id}/toggle", post(webhook_pages::toggle_webhook))
        .route("/webhooks/{id}/test", post(webhook_pages::send_test_event))
        .route(
            "/webhooks/{id}/rotate-secret",
            post(webhook_pages::rotate_secret),
        )
        .route(
            "/webhooks/{id}/delete",
            get(webhook_pages::confirm_delete).post(webhook_pages::delete_webhook),
        )
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhook_pages::retry_delivery),
        )
        .route("/admin/users", get(admin_pages::list_users))
        .route(
            "/admin/users/new",
            get(admin_pages::new_user_form).post(admin_pages::create_user),
        )
        .route(
            "/admin/users/{id}/password",
            get(admin_pages::password_form).post(admin_pages::set_password),
        )
        .route(
            "/admin/users/{id}/limits",
            get(admin_pages::limits_form).post(admin_pages::set_limits),
        )
        .route("/admin/users/{id}/toggle", post(admin_pages::toggle_user))
        .route(
            "/admin/users/{id}/delete",
            get(admin_pages::confirm_delete).post(admin_pages::delete_user),
        )
        .route(
            "/admin/users/{id}/token",
            post(admin_pages::regenerate_token),
        )
        .route("/admin/messages", get(history_pages::list_all_messages))
        .route("/admin/dead-letters", get(admin_pages::list_dead_letters))
        .route(
            "/admin/dead-letters/retry-all",
            post(admin_pages::retry_all_dead_letters),
        )
        .route(
            "/admin/dead-letters/{id}/retry",
            post(admin_pages::retry_dead_letter),
        )
        .route(
            "/admin/dead-letters/{id}/abandon",
            post(admin_pages::abandon_dead_letter),
        )
        .route("/admin/audit", get(admin_pages::list_audit))
        .layer(from_fn_with_state(state.clone(), session::load_session))
        .with_state(state)
        .merge(crate::assets::router())
        .layer(from_fn(crate::security::add_security_headers))
}

/// A numeric id in the path; anything else is a 404 page.
pub struct PanelId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PanelId {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| WebError::NotFound("Page"))?;
        positive_id(&raw)
            .map(PanelId)
            .ok_or(WebError::NotFound("Page"))
    }
}

/// Two numeric ids in the path (`/webhooks/{id}/deliveries/{delivery_id}/…`), parsed as the
/// JSON API parses them; anything else is a 404 page.
pub struct PanelIdPair(pub i64, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PanelIdPair {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        let Path((first, second)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| WebError::NotFound("Page"))?;
        match (positive_id(&first), positive_id(&second)) {
            (Some(first), Some(second)) => Ok(PanelIdPair(first, second)),
            _ => Err(WebError::NotFound("Page")),
        }
    }
}

/// A form page shown again with its errors, as 422.
pub(crate) fn invalid(page: Page) -> Result<Response, WebError> {
    Ok(page
        .status(StatusCode::UNPROCESSABLE_ENTITY)
        .into_response())
}

/// `?before=<id>`: the last id of the previous keyset page.
#[derive(Deserialize, Default)]
pub struct BeforeQuery {
    pub before: Option<i64>,
}

/// The "Older →" link of a keyset page of at most `limit` rows, newest first: `path` with
/// `?before=` the page's last id, or `None` on a short page, which is the last one.
pub(crate) fn older_url<T>(
    path: &str,
    rows: &[T],
    limit: i64,
    id: impl Fn(&T) -> i64,
) -> Option<String> {
    if rows.len() as i64 != limit {
        return None;
    }
    rows.last().map(|row| format!("{path}?before={}", id(row)))
}
