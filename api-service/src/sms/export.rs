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
use utoipa::{IntoParams, OpenApi};
// The panel's downloads answer the same way: one place sets the headers.
use smsgate_web::panel::csv_attachment as attachment;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, IdPath};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sms/export.csv", get(export_messages))
        .route("/api/sms/{id}/recipients.csv", get(export_recipients))
}

#[derive(OpenApi)]
#[openapi(paths(export_messages, export_recipients))]
pub(crate) struct Api;

/// The 400 codes of the list's filters.
pub(super) const FILTER_400: &str =
    "`INVALID_STATUS`, `INVALID_DATE`, `INVALID_DATE_RANGE` (from after to), `INVALID_PHONE_NUMBER`, `INVALID_QUERY`";

/// The history filters of the query string; read beside the page parameters, which it
/// ignores (and they it).
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FilterQuery {
    /// A message status: `scheduled`, `pending`, `sending`, `sent`, `partial`, `failed`,
    /// `cancelled` or `expired`.
    status: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC), included.
    #[param(example = "2026-12-01")]
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    #[param(example = "2026-12-06")]
    to: Option<String>,
    /// Text in the content (case-insensitive).
    q: Option<String>,
    /// A recipient's number, E.164 or the local form.
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
#[utoipa::path(
    get,
    path = "/api/sms/export.csv",
    tag = "sms",
    params(FilterQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The messages as CSV (a header row, then one row per message), streamed", content_type = "text/csv", body = String),
        (status = 400, description = FILTER_400, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/sms/{id}/recipients.csv",
    tag = "sms",
    params(("id" = i64, Path, minimum = 1, description = "The message id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The recipients as CSV (a header row, then one row per recipient), streamed", content_type = "text/csv", body = String),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
    ),
)]
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
