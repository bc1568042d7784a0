//! `GET /api/sms/{id}/recipients.csv` and `GET /api/sms/export.csv`: streamed CSV over
//! `smsgate_core::history::export`, and the list filters (`status`, `from`, `to`, `q`,
//! `recipient`) shared with `GET /api/sms`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use smsgate_core::history::export::{self, Bom};
use smsgate_core::history::{HistoryFilter, RawFilter, Viewer};
use smsgate_core::sms::service;
// The panel's downloads answer the same way: one place sets the headers.
use smsgate_web::panel::csv_attachment as attachment;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, IdPath};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sms/export.csv", get(export_messages))
        .route("/api/sms/{id}/recipients.csv", get(export_recipients))
}

/// The history filters of the query string; read beside the page parameters, which it
/// ignores (and they it).
#[derive(Deserialize, Default)]
pub(super) struct FilterQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    recipient: Option<String>,
}

impl FilterQuery {
    pub(super) fn parse(&self) -> Result<HistoryFilter, ApiError> {
        Ok(HistoryFilter::parse_utc(RawFilter {
            status: self.status.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            q: self.q.as_deref(),
            recipient: self.recipient.as_deref(),
        })?)
    }
}

/// The caller's own messages matching the list's filters, newest first (admins too:
/// as `GET /api/sms`).
async fn export_messages(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<FilterQuery>,
) -> Result<Response, ApiError> {
    let filter = query.parse()?;
    let export =
        export::messages_csv(&app.core.db, Viewer::own(user.id), &filter, Bom::Without).await?;
    Ok(attachment(export))
}

/// Every recipient of the caller's message `id`; another user's message is a 404, as on
/// `GET /api/sms/{id}`.
async fn export_recipients(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    service::find_message(&app.core.db, user.id, id)
        .await?
        .ok_or(ApiError::NotFound("Message"))?;
    let export = export::recipients_csv(&app.core.db, id, Bom::Without).await?;
    Ok(attachment(export))
}
