//! The edge gateway's API: `/api/sim-cards` CRUD, `/api/sms/inbox`, `/api/sms/outbox` and
//! `/api/sms-status`, shaped as its clients read them (bare lists and the field names of
//! the replaced Flask app), with the same auth as the rest.
//!
//! Access (issue #13): registering, changing and deleting SIM cards is for admins (403
//! `ADMIN_REQUIRED` otherwise), as in the panel. Everyone else sees, sends through and reads the
//! inbox of only the SIMs assigned to them or to all; another SIM answers as a missing one
//! does (404 here, 400 `UNKNOWN_SIM_CARD` when sending), so its existence is not revealed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::PhoneNumber;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath, PageNumber};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::sims::broker_users::SimBrokerCredentials;
use smsgate_core::sims::repo::{InboundRow, OutgoingRow, SimRow, SimUsage};
use smsgate_core::sims::service::{
    self, Assignee, Assignees, Cap, CapChanges, NewSim, SimChanges, SimStatus,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sim-cards", get(list_sims).post(create_sim))
        .route(
            "/api/sim-cards/{id}",
            put(update_sim).delete(delete_sim).get(get_sim),
        )
        .route(
            "/api/sim-cards/{id}/broker-credentials",
            post(rotate_broker_credentials),
        )
        .route("/api/sms/inbox", get(list_inbox))
        .route("/api/sms/outbox", get(list_outbox))
        .route("/api/sms-status", get(list_statuses))
}

#[derive(OpenApi)]
#[openapi(paths(
    list_sims,
    create_sim,
    get_sim,
    update_sim,
    delete_sim,
    rotate_broker_credentials,
    list_inbox,
    list_outbox,
    list_statuses
))]
pub(crate) struct Api;

/// A SIM card with its agent's state, as the API and the panel show it.
#[derive(Serialize, ToSchema)]
pub struct SimView {
    id: i64,
    number: String,
    label: String,
    status: String,
    online: bool,
    last_heartbeat: Option<String>,
    /// `+CSQ` rssi 0..=31 (about -113 to -51 dBm); `None` when unknown.
    signal: Option<i16>,
    /// The same as a share of the scale, for bars in a UI.
    signal_percent: Option<i16>,
    registration: Option<String>,
    operator: Option<String>,
    created_at: String,
    updated_at: String,
    /// Carrier caps set by admins (`null`: none): jobs per minute, hour and day, and the
    /// average spacing between jobs in seconds.
    max_per_minute: Option<i32>,
    max_per_hour: Option<i32>,
    max_per_day: Option<i32>,
    send_interval_secs: Option<i32>,
    /// Jobs given to the SIM in each cap's window, as the caps count them.
    sent_last_minute: i64,
    sent_last_hour: i64,
    sent_last_24h: i64,
    /// Admins only: `"all"` or the ids of the users the SIM is assigned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<AssigneeList>)]
    assignees: Option<serde_json::Value>,
    /// Admins only, beside `assignees`: those users' names.
    #[serde(skip_serializing_if = "Option::is_none")]
    assignee_users: Option<Vec<Assignee>>,
}

impl SimView {
    fn with_assignees(mut self, (assignees, users): (Assignees, Vec<Assignee>)) -> SimView {
        self.assignees = Some(assignees.to_json());
        self.assignee_users = Some(users);
        self
    }
}

/// The SIMs as `user` may see them, with their usage: with their assignees for an admin.
async fn sim_views(
    app: &AppState,
    user: &AuthUser,
    sims: Vec<SimRow>,
) -> Result<Vec<SimView>, ApiError> {
    let offline_after = app.core.settings.release.sim_offline_after;
    let usage = service::usage_of(&app.core.db, &sims).await?;
    let view = |sim: SimRow| {
        let used = usage.get(&sim.id).copied().unwrap_or_default();
        SimView::new(sim, offline_after, used)
    };
    if !user.is_admin {
        return Ok(sims.into_iter().map(view).collect());
    }
    let mut assignees = service::assignees_of(&app.core.db, &sims).await?;
    Ok(sims
        .into_iter()
        .map(|sim| {
            let of_sim = assignees
                .remove(&sim.id)
                .unwrap_or((Assignees::All, Vec::new()));
            view(sim).with_assignees(of_sim)
        })
        .collect())
}

impl SimView {
    fn new(sim: SimRow, offline_after: std::time::Duration, used: SimUsage) -> SimView {
        SimView {
            online: service::is_online(&sim, offline_after),
            signal_percent: service::signal_percent(&sim),
            id: sim.id,
            number: sim.number,
            label: sim.label,
            status: sim.status,
            last_heartbeat: sim.last_heartbeat_at.map(rfc3339),
            signal: sim.signal,
            registration: sim.registration,
            operator: sim.operator,
            created_at: rfc3339(sim.created_at),
            updated_at: rfc3339(sim.updated_at),
            max_per_minute: sim.max_per_minute,
            max_per_hour: sim.max_per_hour,
            max_per_day: sim.max_per_day,
            send_interval_secs: sim.send_interval_secs,
            sent_last_minute: used.last_minute,
            sent_last_hour: used.last_hour,
            sent_last_24h: used.last_24h,
            assignees: None,
            assignee_users: None,
        }
    }
}

fn parse_number(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse_dialable(raw)
        .map_err(|e| ApiError::validation("INVALID_PHONE_NUMBER", format!("number: {e}")))
}

/// Who may use a SIM card: `"all"` or a list of user ids (its schema; the value is
/// read by [`parse_assignees`]).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // describes the JSON only
#[serde(untagged)]
enum AssigneeList {
    #[schema(example = "all")]
    All(String),
    Users(Vec<i64>),
}

/// `"all"`, or a list of user ids (possibly empty: admins only), as the API takes it.
fn parse_assignees(raw: &serde_json::Value) -> Result<Assignees, ApiError> {
    let invalid = || {
        ApiError::validation(
            "INVALID_ASSIGNEES",
            "assignees must be \"all\" or a list of user ids",
        )
    };
    match raw {
        serde_json::Value::String(s) if s.trim().eq_ignore_ascii_case("all") => Ok(Assignees::All),
        serde_json::Value::Array(items) => {
            let mut ids: Vec<i64> = items
                .iter()
                .map(|v| v.as_i64().filter(|id| *id > 0).ok_or_else(invalid))
                .collect::<Result<_, _>>()?;
            ids.sort_unstable();
            ids.dedup();
            Ok(Assignees::Users(ids))
        }
        _ => Err(invalid()),
    }
}

/// The replaced gateway answered a bare list; its clients iterate over it. A user sees the
/// SIMs assigned to them or to all; an admin every SIM, with its assignees.
#[utoipa::path(
    get,
    path = "/api/sim-cards",
    tag = "sim-cards",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "A bare list, as the edge gateway answered", body = Vec<SimView>)),
)]
async fn list_sims(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<SimView>>, ApiError> {
    let sims = service::list_usable_by(&app.core.db, user.id).await?;
    Ok(Json(sim_views(&app, &user, sims).await?))
}

/// A SIM card the caller may use.
#[utoipa::path(
    get,
    path = "/api/sim-cards/{id}",
    tag = "sim-cards",
    params(("id" = i64, Path, minimum = 1, description = "The SIM card id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The SIM card", body = SimView),
        (status = 404, description = "`NOT_FOUND` (also for a SIM not assigned to the caller)", body = ErrorBody),
    ),
)]
async fn get_sim(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<SimView>, ApiError> {
    let sim = service::find_usable_by(&app.core.db, id, user.id).await?;
    let mut views = sim_views(&app, &user, vec![sim]).await?;
    Ok(Json(views.remove(0)))
}

#[derive(Deserialize, ToSchema)]
struct CreateSimRequest {
    number: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// `"all"` (the default) or a list of user ids.
    #[serde(default)]
    #[schema(value_type = Option<AssigneeList>)]
    assignees: Option<serde_json::Value>,
}

/// A SIM just registered: the SIM, and its agent's broker login when the API manages broker
/// users (`BROKER_ADMIN_URL`). The password is shown this once.
#[derive(Serialize, ToSchema)]
struct CreatedSimView {
    #[serde(flatten)]
    sim: SimView,
    broker: Option<BrokerLoginView>,
}

/// What a SIM's agent needs in its env file besides the broker's address.
#[derive(Serialize, ToSchema)]
struct BrokerLoginView {
    username: String,
    password: String,
    /// Where its jobs wait (it may read only this queue).
    queue: String,
    /// Where it publishes (it may write only here, under its own SIM's routing keys).
    exchange: String,
}

impl BrokerLoginView {
    fn new(app: &AppState, sim_id: i64, credentials: SimBrokerCredentials) -> BrokerLoginView {
        let names = smsgate_shared::queue::Names::new(&app.core.settings.queue.prefix);
        BrokerLoginView {
            username: credentials.username,
            password: credentials.password,
            queue: names.sim_queue(sim_id),
            exchange: names.edge_exchange(),
        }
    }
}

/// Registers a SIM card (admins).
#[utoipa::path(
    post,
    path = "/api/sim-cards",
    tag = "sim-cards",
    request_body = CreateSimRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Registered; `broker` is its agent's login, shown once", body = CreatedSimView),
        (status = 400, description = "`INVALID_PHONE_NUMBER`, `INVALID_SIM_STATUS`, `INVALID_ASSIGNEES`, `UNKNOWN_USERS`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 409, description = "`SIM_NUMBER_TAKEN`", body = ErrorBody),
    ),
)]
async fn create_sim(
    State(app): State<AppState>,
    AdminUser(user): AdminUser,
    ApiJson(req): ApiJson<CreateSimRequest>,
) -> Result<(StatusCode, Json<CreatedSimView>), ApiError> {
    let sim = NewSim {
        number: parse_number(&req.number)?,
        label: req.label.unwrap_or_default().trim().to_owned(),
        status: req
            .status
            .as_deref()
            .map(SimStatus::parse)
            .transpose()?
            .unwrap_or(SimStatus::Active),
        assignees: req
            .assignees
            .as_ref()
            .map(parse_assignees)
            .transpose()?
            .unwrap_or(Assignees::All),
    };
    let created = service::create(
        &app.core.db,
        &app.core.broker,
        &app.core.settings.queue,
        &app.core.sim_users,
        user.id,
        sim,
    )
    .await?;
    let id = created.sim.id;
    let mut views = sim_views(&app, &user, vec![created.sim]).await?;
    let broker = created
        .credentials
        .map(|credentials| BrokerLoginView::new(&app, id, credentials));
    Ok((
        StatusCode::CREATED,
        Json(CreatedSimView {
            sim: views.remove(0),
            broker,
        }),
    ))
}

/// `POST /api/sim-cards/{id}/broker-credentials`: a new broker password for the SIM's
/// agent; the old one stops working and the agent is disconnected.
#[utoipa::path(
    post,
    path = "/api/sim-cards/{id}/broker-credentials",
    tag = "sim-cards",
    params(("id" = i64, Path, minimum = 1, description = "The SIM card id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The new login, shown once", body = BrokerLoginView),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
    ),
)]
async fn rotate_broker_credentials(
    State(app): State<AppState>,
    AdminUser(user): AdminUser,
    IdPath(id): IdPath,
) -> Result<Json<BrokerLoginView>, ApiError> {
    let credentials =
        service::rotate_credentials(&app.core.db, &app.core.sim_users, user.id, id).await?;
    Ok(Json(BrokerLoginView::new(&app, id, credentials)))
}

#[derive(Deserialize, ToSchema)]
struct UpdateSimRequest {
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// `"all"` or a list of user ids; absent keeps them.
    #[serde(default)]
    #[schema(value_type = Option<AssigneeList>)]
    assignees: Option<serde_json::Value>,
    /// Caps: a positive number sets one, `null` clears it, absent keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    max_per_minute: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    max_per_hour: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    max_per_day: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    send_interval_secs: Option<serde_json::Value>,
}

/// A field that is present, even as `null` (absent fields take the default, `None`).
fn present<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(de).map(Some)
}

/// A cap as sent: `null` clears it, a positive whole number sets it.
fn parse_cap(
    field: &'static str,
    raw: Option<&serde_json::Value>,
) -> Result<Option<Option<Cap>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.is_null() {
        return Ok(Some(None));
    }
    let n = raw.as_i64().ok_or(service::SimError::InvalidCap(field))?;
    Ok(Some(Some(Cap::parse(field, n)?)))
}

/// Changes a SIM card (admins); fields left out are kept.
#[utoipa::path(
    put,
    path = "/api/sim-cards/{id}",
    tag = "sim-cards",
    params(("id" = i64, Path, minimum = 1, description = "The SIM card id")),
    request_body = UpdateSimRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The SIM card as changed", body = SimView),
        (status = 400, description = "`INVALID_PHONE_NUMBER`, `INVALID_SIM_STATUS`, `INVALID_ASSIGNEES`, `UNKNOWN_USERS`, `INVALID_SIM_CAP`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`SIM_NUMBER_TAKEN`", body = ErrorBody),
    ),
)]
async fn update_sim(
    State(app): State<AppState>,
    AdminUser(user): AdminUser,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateSimRequest>,
) -> Result<Json<SimView>, ApiError> {
    let changes = SimChanges {
        number: req.number.as_deref().map(parse_number).transpose()?,
        label: req.label.map(|l| l.trim().to_owned()),
        status: req.status.as_deref().map(SimStatus::parse).transpose()?,
        assignees: req.assignees.as_ref().map(parse_assignees).transpose()?,
        caps: CapChanges {
            max_per_minute: parse_cap("max_per_minute", req.max_per_minute.as_ref())?,
            max_per_hour: parse_cap("max_per_hour", req.max_per_hour.as_ref())?,
            max_per_day: parse_cap("max_per_day", req.max_per_day.as_ref())?,
            send_interval_secs: parse_cap("send_interval_secs", req.send_interval_secs.as_ref())?,
        },
    };
    let row = service::update(&app.core.db, &app.core.sim_users, user.id, id, changes).await?;
    let mut views = sim_views(&app, &user, vec![row]).await?;
    Ok(Json(views.remove(0)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete even with jobs queued for it (they fail).
    #[serde(default)]
    force: bool,
}

#[derive(Serialize, ToSchema)]
struct DeletedView {
    deleted: bool,
    id: i64,
    failed_recipients: i64,
}

/// Deletes a SIM card (admins).
#[utoipa::path(
    delete,
    path = "/api/sim-cards/{id}",
    tag = "sim-cards",
    params(("id" = i64, Path, minimum = 1, description = "The SIM card id"), DeleteQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeletedView),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`SIM_HAS_QUEUED_JOBS`: pass `force=true` to fail them", body = ErrorBody),
    ),
)]
async fn delete_sim(
    State(app): State<AppState>,
    AdminUser(user): AdminUser,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<DeletedView>, ApiError> {
    let deleted = service::delete(
        &app.core.db,
        &app.core.broker,
        &app.core.settings.queue,
        &app.core.sim_users,
        user.id,
        id,
        query.force,
    )
    .await?;
    Ok(Json(DeletedView {
        deleted: true,
        id,
        failed_recipients: deleted.failed_recipients,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// 1-based.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<PageNumber>,
    /// 20 by default; at most 1000 (larger values are clamped).
    per_page: Option<i64>,
    /// Only this SIM card's.
    sim_card_id: Option<i64>,
}

impl ListQuery {
    fn resolve(&self) -> (i64, i64) {
        let page = self.page.unwrap_or(PageNumber::FIRST).get();
        let per_page = self.per_page.unwrap_or(20).clamp(1, 1000);
        (page, per_page)
    }
}

#[derive(Serialize, ToSchema)]
struct InboundView {
    id: i64,
    sim_card_id: Option<i64>,
    /// The SIM that received it (the edge gateway's `sender_sim` column).
    sim_number: String,
    sender: String,
    /// The edge gateway's clients read `message`; the panel API's read `content`.
    message: String,
    content: String,
    parts: i16,
    direction: &'static str,
    sent_at: Option<String>,
    received_at: String,
    timestamp: String,
}

impl From<InboundRow> for InboundView {
    fn from(row: InboundRow) -> InboundView {
        InboundView {
            id: row.id,
            sim_card_id: row.sim_card_id,
            sim_number: row.sim_number,
            sender: row.sender,
            message: row.content.clone(),
            content: row.content,
            parts: row.parts,
            direction: "incoming",
            sent_at: row.sent_at.map(rfc3339),
            received_at: rfc3339(row.received_at),
            timestamp: rfc3339(row.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct Listing<T> {
    messages: Vec<T>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

/// Received SMS (often one-time codes) of the SIMs usable by the caller; all for an admin.
#[utoipa::path(
    get,
    path = "/api/sms/inbox",
    tag = "sim-cards",
    params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of received SMS", body = Listing<InboundView>),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
    ),
)]
async fn list_inbox(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Listing<InboundView>>, ApiError> {
    let (page, per_page) = query.resolve();
    let listed = service::inbox(&app.core.db, user.id, query.sim_card_id, page, per_page).await?;
    Ok(Json(Listing {
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        messages: listed.items.into_iter().map(InboundView::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
struct OutgoingView {
    id: i64,
    message_id: i64,
    recipient: String,
    message: String,
    status: &'static str,
    route: String,
    sender_sim: Option<String>,
    direction: &'static str,
    error_message: Option<String>,
    timestamp: String,
    sent_at: Option<String>,
    delivered_at: Option<String>,
}

impl From<OutgoingRow> for OutgoingView {
    fn from(row: OutgoingRow) -> OutgoingView {
        OutgoingView {
            id: row.id,
            message_id: row.message_id,
            recipient: row.phone,
            message: row.content,
            status: row.status.as_str(),
            route: row.route,
            sender_sim: row.sender_sim,
            direction: "outgoing",
            error_message: row.last_error,
            timestamp: rfc3339(row.created_at),
            sent_at: row.sent_at.map(rfc3339),
            delivered_at: row.delivered_at.map(rfc3339),
        }
    }
}

/// Admins see everyone's sends, others their own, as in the message history.
fn owner_filter(user: &AuthUser) -> Option<i64> {
    (!user.is_admin).then_some(user.id)
}

/// Outgoing SMS of both routes, one row per recipient (admins: everyone's).
#[utoipa::path(
    get,
    path = "/api/sms/outbox",
    tag = "sim-cards",
    params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of sent recipients", body = Listing<OutgoingView>),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
    ),
)]
async fn list_outbox(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Listing<OutgoingView>>, ApiError> {
    let (page, per_page) = query.resolve();
    let listed = service::outgoing(
        &app.core.db,
        owner_filter(&user),
        query.sim_card_id,
        page,
        per_page,
    )
    .await?;
    Ok(Json(Listing {
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        messages: listed.items.into_iter().map(OutgoingView::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
struct StatusView {
    id: i64,
    message_id: i64,
    /// The SIM's number for SIM-routed sends; `None` for the HKT route.
    sender_number: Option<String>,
    receiver_number: String,
    status: &'static str,
    timestamp: String,
}

#[derive(Serialize, ToSchema)]
struct StatusList {
    statuses: Vec<StatusView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

/// Where each outgoing recipient stands, as the edge gateway's clients read it.
#[utoipa::path(
    get,
    path = "/api/sms-status",
    tag = "sim-cards",
    params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of statuses", body = StatusList),
        (status = 400, description = "`INVALID_QUERY`", body = ErrorBody),
    ),
)]
async fn list_statuses(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<StatusList>, ApiError> {
    let (page, per_page) = query.resolve();
    let listed = service::outgoing(
        &app.core.db,
        owner_filter(&user),
        query.sim_card_id,
        page,
        per_page,
    )
    .await?;
    Ok(Json(StatusList {
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        statuses: listed
            .items
            .into_iter()
            .map(|row| StatusView {
                id: row.id,
                message_id: row.message_id,
                sender_number: row.sender_sim,
                receiver_number: row.phone,
                status: row.status.as_str(),
                timestamp: rfc3339(row.updated_at),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn assignees_are_all_or_a_list_of_positive_user_ids() {
        assert_eq!(parse_assignees(&json!("all")).unwrap(), Assignees::All);
        assert_eq!(parse_assignees(&json!(" ALL ")).unwrap(), Assignees::All);
        assert_eq!(
            parse_assignees(&json!([3, 1, 3])).unwrap(),
            Assignees::Users(vec![1, 3])
        );
        assert_eq!(
            parse_assignees(&json!([])).unwrap(),
            Assignees::Users(vec![])
        );
        for bad in [
            json!("everyone"),
            json!(null),
            json!(7),
            json!([0]),
            json!([-2]),
            json!(["1"]),
            json!([1.5]),
        ] {
            assert!(parse_assignees(&bad).is_err(), "{bad}");
        }
    }
}
