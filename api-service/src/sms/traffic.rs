//! Traffic control's own routes: `POST /api/sms/{id}/cancel` and `GET /api/queue/status`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use smsgate_core::traffic::{self, Backlog, CancelError, QueueStatus};
use utoipa::{OpenApi, ToSchema};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::IdPath;
use crate::state::AppState;
use crate::wire::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sms/{id}/cancel", post(cancel))
        .route("/api/queue/status", get(queue_status))
}

#[derive(OpenApi)]
#[openapi(paths(cancel, queue_status))]
pub(crate) struct Api;

impl From<CancelError> for ApiError {
    fn from(err: CancelError) -> ApiError {
        match err {
            CancelError::NotFound => ApiError::NotFound("Message"),
            CancelError::Finished(status) => ApiError::Conflict {
                code: "MESSAGE_FINISHED",
                message: format!(
                    "the message already finished ({status}); nothing is left to cancel"
                ),
            },
            CancelError::Database(e) => e.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct CancelView {
    id: i64,
    status: &'static str,
    /// Recipients this request cancelled (0 for a message cancelled before).
    cancelled_now: i64,
    recipient_count: i32,
    success_count: i32,
    failed_count: i32,
    cancelled_count: i32,
    expired_count: i32,
}

/// Cancels what of a message has not gone out yet (admins: anyone's message).
#[utoipa::path(
    post,
    path = "/api/sms/{id}/cancel",
    tag = "sms",
    params(("id" = i64, Path, minimum = 1, description = "The message id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Cancelled (or cancelled before)", body = CancelView),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`MESSAGE_FINISHED`: nothing is left to cancel", body = ErrorBody),
    ),
)]
async fn cancel(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<CancelView>, ApiError> {
    let done =
        traffic::cancel_message(&app.core.db, &app.core.outbox, user.id, user.is_admin, id).await?;
    let m = done.message;
    Ok(Json(CancelView {
        id: m.id,
        status: m.status.as_str(),
        cancelled_now: done.recipients,
        recipient_count: m.total_count,
        success_count: m.sent_count,
        failed_count: m.failed_count,
        cancelled_count: m.cancelled_count,
        expired_count: m.expired_count,
    }))
}

#[derive(Serialize, ToSchema)]
struct Rates {
    /// HKT_RATE_LIMIT; null when unlimited.
    configured: Option<f64>,
    /// Gateway results a second over the last full minute.
    measured: f64,
}

#[derive(Serialize, ToSchema)]
struct BacklogView {
    high: i64,
    normal: i64,
    low: i64,
}

impl From<Backlog> for BacklogView {
    fn from(b: Backlog) -> BacklogView {
        BacklogView {
            high: b.high,
            normal: b.normal,
            low: b.low,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct OwnView {
    backlog: BacklogView,
    recipients: i64,
    eta: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct QueueStatusView {
    /// Recipients waiting for the HKT gateway (scheduled ones not counted).
    queue_depth: i64,
    msgs_per_sec: Rates,
    pending_messages: i64,
    sending_messages: i64,
    scheduled_messages: i64,
    oldest_pending_at: Option<String>,
    backlog: BacklogView,
    mine: OwnView,
}

impl From<QueueStatus> for QueueStatusView {
    fn from(s: QueueStatus) -> QueueStatusView {
        QueueStatusView {
            queue_depth: s.backlog.total(),
            msgs_per_sec: Rates {
                configured: s.rates.configured,
                measured: s.rates.measured,
            },
            pending_messages: s.pending_messages,
            sending_messages: s.sending_messages,
            scheduled_messages: s.scheduled_messages,
            oldest_pending_at: s.oldest_pending_at.map(rfc3339),
            backlog: s.backlog.into(),
            mine: OwnView {
                recipients: s.own_backlog.total(),
                backlog: s.own_backlog.into(),
                eta: s.own_eta.map(rfc3339),
            },
        }
    }
}

/// The HKT queue's depth and rates, and the caller's own backlog.
#[utoipa::path(
    get,
    path = "/api/queue/status",
    tag = "sms",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The queue", body = QueueStatusView)),
)]
async fn queue_status(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<QueueStatusView>, ApiError> {
    let status = traffic::queue_status(&app.core.db, &app.core.settings, user.id).await?;
    Ok(Json(status.into()))
}
