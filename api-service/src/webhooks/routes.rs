//! `/api/webhooks`: register endpoints for status and received-SMS events (their
//! subscriptions), rotate their secrets, send a test event, and read (and re-queue) their
//! deliveries.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPair, IdPath};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::webhooks::repo::{DeliveryRow, WebhookRow};
use smsgate_core::webhooks::service::{self, NewWebhook, WebhookChanges, WebhookError};
use smsgate_core::webhooks::{WebhookEvents, WebhookUrl, WebhookUrlError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/webhooks/{id}",
            get(get_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route("/api/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/api/webhooks/{id}/test", post(send_test_event))
        .route("/api/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(retry_delivery),
        )
}

#[derive(OpenApi)]
#[openapi(paths(
    list_webhooks,
    create_webhook,
    get_webhook,
    update_webhook,
    delete_webhook,
    rotate_secret,
    send_test_event,
    list_deliveries,
    retry_delivery
))]
pub(crate) struct Api;

#[derive(Serialize, ToSchema)]
struct WebhookView {
    id: i64,
    url: String,
    description: String,
    is_active: bool,
    /// The events it subscribes to.
    events: Vec<String>,
    created_at: String,
    updated_at: String,
    /// Only in the answers that create it or rotate it: it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<WebhookRow> for WebhookView {
    fn from(w: WebhookRow) -> WebhookView {
        WebhookView {
            id: w.id,
            url: w.url,
            description: w.description,
            is_active: w.is_active,
            events: w.events,
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
            secret: None,
        }
    }
}

/// The subscription list of a request; `None` when it gave none.
fn parse_events(raw: Option<Vec<String>>) -> Result<Option<WebhookEvents>, ApiError> {
    raw.map(|names| {
        WebhookEvents::parse(&names)
            .map_err(|e| ApiError::validation("INVALID_WEBHOOK_EVENTS", e.to_string()))
    })
    .transpose()
}

fn parse_url(app: &AppState, raw: &str) -> Result<WebhookUrl, ApiError> {
    WebhookUrl::parse(raw, app.core.settings.webhook_allow_internal_targets)
        .map_err(|e: WebhookUrlError| ApiError::validation("INVALID_WEBHOOK_URL", e.to_string()))
}

#[derive(Deserialize, ToSchema)]
struct CreateWebhookRequest {
    url: String,
    #[serde(default)]
    description: Option<String>,
    /// Defaults to `["message.status"]`, what webhooks received before subscriptions.
    #[serde(default)]
    events: Option<Vec<String>>,
}

/// Registers an endpoint; the answer carries its signing secret, shown this once.
#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Registered", body = WebhookView),
        (status = 400, description = "`INVALID_WEBHOOK_URL`, `INVALID_WEBHOOK_EVENTS`, `VALIDATION_ERROR`", body = ErrorBody),
        (status = 409, description = "`WEBHOOK_LIMIT_REACHED`", body = ErrorBody),
    ),
)]
async fn create_webhook(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let new = NewWebhook {
        url: parse_url(&app, &req.url)?,
        description: req.description.unwrap_or_default().trim().to_owned(),
        events: parse_events(req.events)?.unwrap_or_else(WebhookEvents::status_only),
    };
    let created = service::create(
        &app.core.db,
        &app.core.settings.webhook_secret_keys,
        user.id,
        new,
        app.core.settings.webhooks_per_user,
    )
    .await?;
    let mut view = WebhookView::from(created.webhook);
    view.secret = Some(created.secret);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Serialize, ToSchema)]
struct WebhookList {
    webhooks: Vec<WebhookView>,
}

#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The caller's webhooks", body = WebhookList)),
)]
async fn list_webhooks(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = service::list(&app.core.db, user.id).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(WebhookView::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn get_webhook(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(service::find(&app.core.db, user.id, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
struct UpdateWebhookRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    events: Option<Vec<String>>,
}

/// Changes a webhook; fields left out are kept.
#[utoipa::path(
    put,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id")),
    request_body = UpdateWebhookRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The webhook as changed", body = WebhookView),
        (status = 400, description = "`INVALID_WEBHOOK_URL`, `INVALID_WEBHOOK_EVENTS`, `VALIDATION_ERROR`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn update_webhook(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let changes = WebhookChanges {
        url: req.url.as_deref().map(|u| parse_url(&app, u)).transpose()?,
        description: req.description.map(|d| d.trim().to_owned()),
        is_active: req.is_active,
        events: parse_events(req.events)?,
    };
    Ok(Json(
        service::update(&app.core.db, user.id, id, changes)
            .await?
            .into(),
    ))
}

#[derive(Serialize, ToSchema)]
struct Deleted {
    deleted: bool,
    id: i64,
}

#[utoipa::path(
    delete,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn delete_webhook(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Deleted>, ApiError> {
    service::delete(&app.core.db, user.id, id).await?;
    Ok(Json(Deleted { deleted: true, id }))
}

#[derive(Serialize, ToSchema)]
struct RotatedSecret {
    id: i64,
    secret: String,
}

/// A new signing secret, shown once; the old one stops signing at once.
#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn rotate_secret(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<RotatedSecret>, ApiError> {
    let secret = service::rotate_secret(
        &app.core.db,
        &app.core.settings.webhook_secret_keys,
        user.id,
        id,
    )
    .await?;
    Ok(Json(RotatedSecret { id, secret }))
}

#[derive(Serialize, ToSchema)]
struct QueuedDelivery {
    delivery_id: i64,
}

/// Queues a `test` event to the endpoint.
#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/test",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Queued", body = QueuedDelivery),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn send_test_event(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<QueuedDelivery>), ApiError> {
    let delivery_id = service::send_test(&app.core.db, user.id, id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedDelivery { delivery_id })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// `pending`, `delivered` or `failed`; empty or absent: all.
    #[param(pattern = "^(pending|delivered|failed)?$")]
    status: Option<String>,
    /// The last id of the previous page (`next_before` of its answer).
    before: Option<i64>,
    /// 20 by default; 1 to 100 (other values are clamped).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct DeliveryView {
    id: i64,
    event_type: String,
    message_id: Option<i64>,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    /// When a pending delivery is tried next.
    next_attempt_at: Option<String>,
    created_at: String,
    completed_at: Option<String>,
    payload: serde_json::Value,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(d: DeliveryRow) -> DeliveryView {
        let pending = d.status == "pending";
        DeliveryView {
            id: d.id,
            event_type: d.event_type,
            message_id: d.message_id,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: pending.then(|| rfc3339(d.next_attempt_at)),
            created_at: rfc3339(d.created_at),
            completed_at: d.completed_at.map(rfc3339),
            payload: d.payload,
            status: d.status,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next page; `null` on the last one.
    next_before: Option<i64>,
}

/// The webhook's deliveries, newest first, paged by `before`.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The webhook id"), DeliveryQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller", body = ErrorBody),
    ),
)]
async fn list_deliveries(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s @ ("pending" | "delivered" | "failed")) => Some(s),
        Some(_) => {
            return Err(ApiError::validation(
                "INVALID_QUERY",
                "status must be pending, delivered or failed",
            ))
        }
    };
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let rows = service::deliveries(&app.core.db, user.id, id, status, query.before, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries: rows.into_iter().map(DeliveryView::from).collect(),
        next_before,
    }))
}

/// Queues a failed delivery again.
#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    params(
        ("id" = i64, Path, minimum = 1, description = "The webhook id"),
        ("delivery_id" = i64, Path, minimum = 1, description = "The delivery id"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Queued again", body = QueuedDelivery),
        (status = 404, description = "`NOT_FOUND`: no such webhook of the caller, or no such failed delivery", body = ErrorBody),
    ),
)]
async fn retry_delivery(
    State(app): State<AppState>,
    user: AuthUser,
    IdPair(id, delivery_id): IdPair,
) -> Result<(StatusCode, Json<QueuedDelivery>), ApiError> {
    service::retry_delivery(&app.core.db, user.id, id, delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedDelivery { delivery_id })))
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> ApiError {
        match err {
            WebhookError::NotFound => ApiError::NotFound("Webhook"),
            WebhookError::NotRetryable => ApiError::NotFound("Failed delivery"),
            e @ WebhookError::LimitReached { .. } => ApiError::Conflict {
                code: "WEBHOOK_LIMIT_REACHED",
                message: e.to_string(),
            },
            e @ WebhookError::DescriptionTooLong => {
                ApiError::validation("VALIDATION_ERROR", e.to_string())
            }
            WebhookError::Database(e) => e.into(),
        }
    }
}
