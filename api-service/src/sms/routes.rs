//! The SMS panel's API, unchanged for its clients: `POST /api/sms`, `POST /api/sms/send-bulk`,
//! `GET /api/sms`, `GET /api/sms/{id}`, `GET /api/sms/{id}/recipients`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::{MessageBody, MessageBodyError, PhoneNumber};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::export::{FilterQuery, FILTER_400};
use crate::auth::{AuthSender, AuthUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::IdempotencyHeader;
use crate::extract::{ApiJson, ApiQuery, IdPath, PageNumber};
use crate::metrics::SendKind;
use crate::openapi::IdempotencyParam;
use crate::sims::{route_name, WithEdgeFields};
use crate::state::AppState;
use crate::wire::{rfc3339, success, Success};
use smsgate_core::auth::confirm_sender;
use smsgate_core::auth::service::AuthError;
use smsgate_core::history::{self, Viewer};
use smsgate_core::idempotency::{IdempotencyKey, KeyClaim};
use smsgate_core::sms::repo::{MessageRow, RecipientRow};
use smsgate_core::sms::service::AcceptError;
use smsgate_core::sms::service::{self, NewSend, Page};
use smsgate_core::sms::SmallSendError;
use smsgate_core::sms::{accept_send, accept_send_once, RouteRequest, RoutedAccepted, SendOnce};
use smsgate_core::sms::{parse_recipient_list, RawSendOptions, RecipientListError, SendOptions};
use smsgate_core::traffic::message_eta;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sms", post(send_sms).get(list_messages))
        .route("/api/sms/send-bulk", post(send_bulk))
        .route("/api/sms/{id}", get(get_message))
        .route("/api/sms/{id}/recipients", get(list_recipients))
}

#[derive(OpenApi)]
#[openapi(paths(send_sms, send_bulk, list_messages, get_message, list_recipients))]
pub(crate) struct Api;

/// 400 codes of every send, besides the JSON body's own.
const SEND_400: &str = "Invalid send: `INVALID_PHONE_NUMBER`, `EMPTY_CONTENT`, `CONTENT_TOO_LONG`, \
    `INVALID_PRIORITY`, `INVALID_SEND_AT`, `INVALID_VALIDITY`, `INVALID_ROUTE`, `INVALID_FALLBACK`, \
    `UNKNOWN_SIM_CARD`, `UNKNOWN_FIELD`, `INVALID_IDEMPOTENCY_KEY`";

fn parse_body(app: &AppState, content: &str) -> Result<MessageBody, ApiError> {
    MessageBody::parse(content, app.core.settings.max_segments).map_err(|e| match e {
        MessageBodyError::Empty => {
            ApiError::validation("EMPTY_CONTENT", "content must not be empty")
        }
        too_long @ MessageBodyError::TooLong { .. } => {
            ApiError::validation("CONTENT_TOO_LONG", too_long.to_string())
        }
    })
}

/// The traffic options every send takes (issue #14); parsed into `SendOptions`. Listed in
/// each request rather than flattened: serde can't deny unknown fields through a flatten.
fn send_options(
    priority: Option<&str>,
    send_at: Option<&str>,
    valid_for: Option<i64>,
    valid_until: Option<&str>,
) -> Result<SendOptions, ApiError> {
    let raw = RawSendOptions {
        priority,
        send_at,
        valid_for,
        valid_until,
    };
    Ok(SendOptions::parse(raw, chrono::Utc::now())?)
}

/// Unknown fields are refused (400 `UNKNOWN_FIELD`, naming it): a misspelt `sendat` used to
/// be ignored and the message sent at once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SendSmsRequest {
    /// E.164 (`+85291234567`) or a Hong Kong number of 8 digits.
    #[schema(example = "+85291234567")]
    recipient: String,
    /// The edge gateway's clients call it `message`.
    #[serde(alias = "message")]
    content: String,
    /// Edge gateway routing (issue #4): through this SIM card…
    #[serde(default)]
    sim_card_id: Option<i64>,
    /// …or `"sim"` for the pool of online SIMs, `"hkt"` (the default) for the HKT gateway.
    #[serde(default)]
    route: Option<String>,
    /// SIM routes only: `"hkt"` lets work no SIM can take go to HKT, `"none"` makes a pool
    /// send wait for a SIM even when none is online as it is accepted.
    #[serde(default)]
    fallback: Option<String>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    priority: Option<String>,
    /// RFC 3339; the message is `scheduled` until then.
    #[serde(default)]
    send_at: Option<String>,
    /// Seconds after it is due; or `valid_until`, RFC 3339.
    #[serde(default)]
    valid_for: Option<i64>,
    #[serde(default)]
    valid_until: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SentSms {
    id: i64,
    status: &'static str,
    recipient: String,
    content: String,
    created_at: String,
}

/// The busiest route: an HKT send without an idempotency key goes through the
/// shared-statement writer, which checks the sender's standing as it stores; every other
/// send checks it first.
#[utoipa::path(
    post,
    path = "/api/sms",
    tag = "sms",
    request_body = SendSmsRequest,
    params(IdempotencyParam),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Accepted and queued; `Idempotent-Replayed: true` when it repeats an earlier request with the same key",
            body = WithEdgeFields<Success<SentSms>>,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = SEND_400, body = ErrorBody),
        (status = 409, description = "`SIM_CARD_INACTIVE`, `IDEMPOTENCY_KEY_IN_USE`", body = ErrorBody),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`, `PRIORITY_ALLOWANCE_TOO_SMALL`", body = ErrorBody),
        (status = 429, description = "`QUOTA_EXCEEDED`, `RATE_LIMITED`, `PRIORITY_ALLOWANCE_EXCEEDED`; see `Retry-After`", body = ErrorBody),
    ),
)]
async fn send_sms(
    State(app): State<AppState>,
    AuthSender(sender): AuthSender,
    key: Option<IdempotencyHeader>,
    ApiJson(req): ApiJson<SendSmsRequest>,
) -> Result<Response, ApiError> {
    let route = RouteRequest::parse(
        req.sim_card_id,
        req.route.as_deref(),
        req.fallback.as_deref(),
    )?;
    let to = PhoneNumber::parse_dialable(&req.recipient)
        .map_err(|e| ApiError::validation("INVALID_PHONE_NUMBER", format!("recipient: {e}")))?;
    let body = parse_body(&app, &req.content)?;
    let options = send_options(
        req.priority.as_deref(),
        req.send_at.as_deref(),
        req.valid_for,
        req.valid_until.as_deref(),
    )?;
    let send = NewSend {
        recipients: vec![to.clone()],
        body,
        options,
    };
    let stored = match (key, route) {
        (None, RouteRequest::Hkt) if options.is_default() => {
            match app.core.small_sends.accept(sender, send).await {
                Ok(accepted) => SendOnce::Stored(RoutedAccepted {
                    accepted,
                    sender_sim: None,
                    via_sim: false,
                }),
                // A sender with quotas is charged in a transaction of its own.
                Err(SmallSendError::Limited(send)) => {
                    store(
                        &app,
                        sender.user_id,
                        RouteRequest::Hkt,
                        send,
                        None,
                        "sms.send",
                    )
                    .await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        (key, route) => {
            confirm_sender(&app.core.db, sender).await?;
            store(
                &app,
                sender.user_id,
                route,
                send,
                key.map(|k| k.0),
                "sms.send",
            )
            .await?
        }
    };
    let (routed, replayed) = stored.into_parts();
    if !replayed {
        app.metrics
            .sends
            .accepted(routed.route(), SendKind::Single, 1);
    }
    let accepted = routed.accepted;
    let data = SentSms {
        id: accepted.id,
        status: accepted.status.as_str(),
        recipient: to.to_string(),
        content: req.content,
        created_at: rfc3339(accepted.created_at),
    };
    Ok(accepted_response(
        replayed,
        WithEdgeFields {
            body: success(data, Some("SMS queued for sending")).0,
            message_id: accepted.id,
            sender_sim: routed.sender_sim,
            route: route_name(routed.via_sim),
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBulkRequest {
    /// Kept as JSON text: [`parse_recipient_list`] checks its length before building any
    /// entry, so an oversized list costs a scan, not millions of values.
    #[schema(value_type = Vec<String>, example = json!(["+85291234567", "61234567"]))]
    recipients: Box<serde_json::value::RawValue>,
    #[serde(alias = "message")]
    content: String,
    /// The same routing as `POST /api/sms`; `"route": "sim"` spreads the bulk over the
    /// pool of SIMs.
    #[serde(default)]
    sim_card_id: Option<i64>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    fallback: Option<String>,
    /// The same traffic options as `POST /api/sms`.
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    send_at: Option<String>,
    #[serde(default)]
    valid_for: Option<i64>,
    #[serde(default)]
    valid_until: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SentBulk {
    id: i64,
    status: &'static str,
    total: usize,
    content: String,
    created_at: String,
}

#[utoipa::path(
    post,
    path = "/api/sms/send-bulk",
    tag = "sms",
    request_body = SendBulkRequest,
    params(IdempotencyParam),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Accepted and queued; `Idempotent-Replayed: true` when it repeats an earlier request with the same key",
            body = WithEdgeFields<Success<SentBulk>>,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "Invalid send: the codes of `POST /api/sms`, and `EMPTY_RECIPIENTS`, `TOO_MANY_RECIPIENTS`, `INVALID_RECIPIENTS` (with `details` and `invalid_count`)", body = ErrorBody),
        (status = 409, description = "`SIM_CARD_INACTIVE`, `IDEMPOTENCY_KEY_IN_USE`", body = ErrorBody),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`, `PRIORITY_ALLOWANCE_TOO_SMALL`", body = ErrorBody),
        (status = 429, description = "`QUOTA_EXCEEDED`, `RATE_LIMITED`, `PRIORITY_ALLOWANCE_EXCEEDED`; see `Retry-After`", body = ErrorBody),
    ),
)]
async fn send_bulk(
    State(app): State<AppState>,
    user: AuthUser,
    key: Option<IdempotencyHeader>,
    ApiJson(req): ApiJson<SendBulkRequest>,
) -> Result<Response, ApiError> {
    let route = RouteRequest::parse(
        req.sim_card_id,
        req.route.as_deref(),
        req.fallback.as_deref(),
    )?;
    let body = parse_body(&app, &req.content)?;
    let options = send_options(
        req.priority.as_deref(),
        req.send_at.as_deref(),
        req.valid_for,
        req.valid_until.as_deref(),
    )?;
    let recipients = parse_recipient_list(&req.recipients, app.core.settings.max_bulk_recipients)
        .map_err(|e| match e {
        RecipientListError::NotAList => {
            ApiError::validation("VALIDATION_ERROR", "recipients must be a list")
        }
        RecipientListError::Empty => {
            ApiError::validation("EMPTY_RECIPIENTS", "recipients must not be empty")
        }
        RecipientListError::TooMany { given, max } => ApiError::validation(
            "TOO_MANY_RECIPIENTS",
            format!("{given} recipients given; at most {max} per request"),
        ),
        RecipientListError::Invalid(problems) => ApiError::InvalidRecipients(problems),
    })?;
    let send = NewSend {
        recipients,
        body,
        options,
    };
    let stored = store(
        &app,
        user.id,
        route,
        send,
        key.map(|k| k.0),
        "sms.send_bulk",
    )
    .await?;
    let (routed, replayed) = stored.into_parts();
    if !replayed {
        app.metrics
            .sends
            .accepted(routed.route(), SendKind::Bulk, routed.accepted.total);
    }
    let accepted = routed.accepted;
    let data = SentBulk {
        id: accepted.id,
        status: accepted.status.as_str(),
        total: accepted.total,
        content: req.content,
        created_at: rfc3339(accepted.created_at),
    };
    Ok(accepted_response(
        replayed,
        WithEdgeFields {
            body: success(data, Some("Bulk SMS queued for sending")).0,
            message_id: accepted.id,
            sender_sim: routed.sender_sim,
            route: route_name(routed.via_sim),
        },
    ))
}

/// Stores a send on its route; with an idempotency key, at most once per key (`operation`
/// names the endpoint, so a key can't be reused across the two).
async fn store(
    app: &AppState,
    user_id: i64,
    route: RouteRequest,
    send: NewSend,
    key: Option<IdempotencyKey>,
    operation: &str,
) -> Result<SendOnce, ApiError> {
    let Some(key) = key else {
        let stored =
            accept_send(&app.core.db, &app.core.outbox, user_id, send, route, None).await?;
        return Ok(SendOnce::Stored(stored));
    };
    let claim = KeyClaim {
        fingerprint: send.fingerprint(operation, &route.label()),
        key,
        ttl: app.core.settings.idempotency_key_ttl,
    };
    Ok(accept_send_once(&app.core.db, &app.core.outbox, user_id, send, route, &claim).await?)
}

/// 202 with the send's body; a replay of an earlier request with the same idempotency key
/// says so in `Idempotent-Replayed: true`, with the body that request was answered with.
fn accepted_response<T: Serialize>(replayed: bool, body: T) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Set on the answer to a repeated idempotency key.
const REPLAYED_HEADER: &str = "idempotent-replayed";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1-based.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<PageNumber>,
    /// 20 by default; at most 1000 (larger values are clamped).
    per_page: Option<i64>,
}

impl PageQuery {
    const DEFAULT_PER_PAGE: i64 = 20;
    const MAX_PER_PAGE: i64 = 1000;

    fn resolve(&self) -> (i64, i64) {
        let page = self.page.unwrap_or(PageNumber::FIRST).get();
        let per_page = self
            .per_page
            .unwrap_or(Self::DEFAULT_PER_PAGE)
            .clamp(1, Self::MAX_PER_PAGE);
        (page, per_page)
    }
}

#[derive(Serialize, ToSchema)]
struct MessageView {
    id: i64,
    content: String,
    status: &'static str,
    encoding: String,
    segments: i32,
    recipient_count: i32,
    success_count: i32,
    failed_count: i32,
    cancelled_count: i32,
    expired_count: i32,
    /// Recipients whose number was on the opt-out list at accept; never sent.
    opted_out_count: i32,
    pending_count: i64,
    priority: &'static str,
    /// When a scheduled message is released.
    send_at: Option<String>,
    valid_until: Option<String>,
    created_at: String,
    completed_at: Option<String>,
    /// The replaced panel's name for the completion time.
    sent_at: Option<String>,
    /// Estimated completion while work is pending (HKT route only); only on the message's
    /// own page, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    eta: Option<String>,
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> MessageView {
        MessageView {
            id: m.id,
            status: m.status.as_str(),
            encoding: m.encoding.clone(),
            segments: m.segments,
            recipient_count: m.total_count,
            success_count: m.sent_count,
            failed_count: m.failed_count,
            cancelled_count: m.cancelled_count,
            expired_count: m.expired_count,
            opted_out_count: m.opted_out_count,
            pending_count: m.tally().pending(),
            priority: m.priority.as_str(),
            send_at: m.send_at.map(rfc3339),
            valid_until: m.valid_until.map(rfc3339),
            created_at: rfc3339(m.created_at),
            completed_at: m.completed_at.map(rfc3339),
            sent_at: m.completed_at.map(rfc3339),
            eta: None,
            content: m.content,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct MessageList {
    messages: Vec<MessageView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

/// The caller's own messages (admins' too), filtered by `status`, `from`/`to` (UTC days,
/// inclusive), `q` (text in the content) and `recipient`.
#[utoipa::path(
    get,
    path = "/api/sms",
    tag = "sms",
    params(PageQuery, FilterQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of messages", body = Success<MessageList>),
        (status = 400, description = FILTER_400, body = ErrorBody),
    ),
)]
async fn list_messages(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<FilterQuery>,
) -> Result<Json<Success<MessageList>>, ApiError> {
    let (page, per_page) = query.resolve();
    let filter = filter.parse()?;
    let listed: Page<MessageRow> =
        history::service::list_page(&app.core.db, Viewer::own(user.id), &filter, page, per_page)
            .await?;
    let data = MessageList {
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        messages: listed.items.into_iter().map(MessageView::from).collect(),
    };
    Ok(success(data, None))
}

/// One of the caller's messages with its counters (`eta` while work is pending).
#[utoipa::path(
    get,
    path = "/api/sms/{id}",
    tag = "sms",
    params(("id" = i64, Path, minimum = 1, description = "The message id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The message", body = Success<MessageView>),
        (status = 404, description = "`NOT_FOUND`: no such message of the caller", body = ErrorBody),
    ),
)]
async fn get_message(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Success<MessageView>>, ApiError> {
    let message = service::find_message(&app.core.db, user.id, id)
        .await?
        .ok_or(ApiError::NotFound("Message"))?;
    let eta = message_eta(&app.core.db, &app.core.settings, &message).await?;
    let mut view = MessageView::from(message);
    view.eta = eta.map(rfc3339);
    Ok(success(view, None))
}

#[derive(Serialize, ToSchema)]
struct RecipientView {
    id: i64,
    phone: String,
    status: &'static str,
    attempts: i32,
    error_message: Option<String>,
    updated_at: String,
    sent_at: Option<String>,
    delivered_at: Option<String>,
}

impl From<RecipientRow> for RecipientView {
    fn from(r: RecipientRow) -> RecipientView {
        RecipientView {
            id: r.id,
            phone: r.phone,
            status: r.status.as_str(),
            attempts: r.attempts,
            error_message: r.last_error,
            updated_at: rfc3339(r.updated_at),
            sent_at: r.sent_at.map(rfc3339),
            delivered_at: r.delivered_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct RecipientList {
    message_id: i64,
    recipients: Vec<RecipientView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

/// A page of one message's recipients and where each stands.
#[utoipa::path(
    get,
    path = "/api/sms/{id}/recipients",
    tag = "sms",
    params(("id" = i64, Path, minimum = 1, description = "The message id"), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of recipients", body = Success<RecipientList>),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such message of the caller", body = ErrorBody),
    ),
)]
async fn list_recipients(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Success<RecipientList>>, ApiError> {
    let (page, per_page) = query.resolve();
    let (message, listed) = service::list_recipients(&app.core.db, user.id, id, page, per_page)
        .await?
        .ok_or(ApiError::NotFound("Message"))?;
    let data = RecipientList {
        message_id: message.id,
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        recipients: listed.items.into_iter().map(RecipientView::from).collect(),
    };
    Ok(success(data, None))
}

impl From<SmallSendError> for ApiError {
    fn from(err: SmallSendError) -> ApiError {
        match err {
            SmallSendError::Disabled => AuthError::Disabled.into(),
            SmallSendError::InvalidCredential => AuthError::InvalidToken.into(),
            SmallSendError::Database(e) if smsgate_core::db::is_unavailable(&e) => {
                ApiError::Unavailable(anyhow::Error::new(e))
            }
            SmallSendError::Database(e) => ApiError::Internal(anyhow::Error::new(e)),
            SmallSendError::ShuttingDown => {
                ApiError::Unavailable(anyhow::anyhow!("the API is shutting down"))
            }
            // `send_sms` resends these on the charging path; reaching here is a bug.
            SmallSendError::Limited(_) => {
                ApiError::Internal(anyhow::anyhow!("a send with quotas took the shared path"))
            }
        }
    }
}

impl From<AcceptError> for ApiError {
    fn from(err: AcceptError) -> ApiError {
        match err {
            AcceptError::Database(e) => e.into(),
            AcceptError::KeyTaken => ApiError::IdempotencyKeyTaken,
            AcceptError::Quota(e) => e.into(),
        }
    }
}
