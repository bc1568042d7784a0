//! SIM cards and SIM routing, the inbox and outbox, and the edge gateway's API keys.
//! Domain types in, rows out; no HTTP here, so the panel can use the same functions.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use serde_json::json;
use smsgate_shared::config::QueueSettings;
use smsgate_shared::domain::PhoneNumber;
use smsgate_shared::queue::{declare_sim_queue, routing, Broker, Names, OutboundJob};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::{info, warn};

use super::repo::{self, SimRow};
use crate::admin::audit;
use crate::auth::ApiToken;
use crate::error::ApiError;
use crate::idempotency::{KeyClaim, PriorSend};
use crate::metrics::SendRoute;
use crate::outbox::Outbox;
use crate::sms::service::{self as sms, AcceptError, Accepted, NewSend, Page};

/// An agent heartbeats every 30 s; a SIM is offline after three missed heartbeats.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(90);

/// Whether a SIM takes new sends. Set by people; whether its agent is online is separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStatus {
    Active,
    Inactive,
}

impl SimStatus {
    pub fn parse(raw: &str) -> Result<SimStatus, ApiError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(SimStatus::Active),
            "inactive" => Ok(SimStatus::Inactive),
            _ => Err(ApiError::validation(
                "INVALID_SIM_STATUS",
                "status must be `active` or `inactive`",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SimStatus::Active => "active",
            SimStatus::Inactive => "inactive",
        }
    }
}

/// Who may see and send through a SIM card (admins always may), and read what it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignees {
    /// Every user: what a SIM is until an admin narrows it (and what SIMs registered before
    /// assignees existed are).
    All,
    /// Only these users (ids); an empty list leaves the SIM to admins.
    Users(Vec<i64>),
}

impl Assignees {
    /// How the API and the audit log write it: `"all"` or the list of user ids.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Assignees::All => json!("all"),
            Assignees::Users(ids) => json!(ids),
        }
    }
}

/// A user a SIM card is assigned to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assignee {
    pub id: i64,
    pub username: String,
}

/// A SIM card to register: parsed at the edge.
pub struct NewSim {
    pub number: PhoneNumber,
    pub label: String,
    pub status: SimStatus,
    pub assignees: Assignees,
}

/// Changes to a SIM card; `None` keeps a field.
#[derive(Default)]
pub struct SimChanges {
    pub number: Option<PhoneNumber>,
    pub label: Option<String>,
    pub status: Option<SimStatus>,
    pub assignees: Option<Assignees>,
}

/// True when the SIM's agent sent a heartbeat within [`OFFLINE_AFTER`].
pub fn is_online(sim: &SimRow) -> bool {
    let window = chrono::Duration::from_std(OFFLINE_AFTER).expect("small duration");
    sim.last_heartbeat_at
        .is_some_and(|at| chrono::Utc::now() - at < window)
}

fn taken_number() -> ApiError {
    ApiError::Conflict {
        code: "SIM_NUMBER_TAKEN",
        message: "a SIM card with this number is already registered".into(),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Every SIM card, whoever it is assigned to: for admins and aggregate figures only; what a
/// user is shown comes from [`list_usable_by`].
pub async fn list(db: &PgPool) -> Result<Vec<SimRow>, ApiError> {
    Ok(repo::list_sims(db).await?)
}

/// The SIM cards user `viewer` may see and send through: assigned to all or to them, or
/// every SIM for an admin.
pub async fn list_usable_by(db: &PgPool, viewer: i64) -> Result<Vec<SimRow>, ApiError> {
    Ok(repo::list_sims_usable_by(db, viewer).await?)
}

pub async fn find(db: &PgPool, id: i64) -> Result<SimRow, ApiError> {
    repo::find_sim(db, id)
        .await?
        .ok_or(ApiError::NotFound("SIM card"))
}

/// SIM `id` as user `viewer` may see it: 404 alike whether it is missing or not theirs, so
/// a SIM's existence is not revealed.
pub async fn find_usable_by(db: &PgPool, id: i64, viewer: i64) -> Result<SimRow, ApiError> {
    repo::find_sim_usable_by(db, id, viewer)
        .await?
        .ok_or(ApiError::NotFound("SIM card"))
}

/// The assignees of each of `sims` (admins' views): `All` or the users, by SIM id.
pub async fn assignees_of(
    db: &PgPool,
    sims: &[SimRow],
) -> Result<HashMap<i64, (Assignees, Vec<Assignee>)>, ApiError> {
    let ids: Vec<i64> = sims.iter().map(|s| s.id).collect();
    let mut users: HashMap<i64, Vec<Assignee>> = HashMap::new();
    for row in repo::list_assignees(db, &ids).await? {
        users.entry(row.sim_card_id).or_default().push(Assignee {
            id: row.user_id,
            username: row.username,
        });
    }
    Ok(sims
        .iter()
        .map(|sim| {
            let users = users.remove(&sim.id).unwrap_or_default();
            let assignees = if sim.assigned_to_all {
                Assignees::All
            } else {
                Assignees::Users(users.iter().map(|u| u.id).collect())
            };
            (sim.id, (assignees, users))
        })
        .collect())
}

/// Every user, for the assignee choice of the panel's SIM form.
pub async fn user_choices(db: &PgPool) -> Result<Vec<repo::UserChoice>, ApiError> {
    Ok(repo::list_user_choices(db).await?)
}

/// Stores who SIM `id` is assigned to, inside the change's transaction; 400
/// `UNKNOWN_USERS` naming every id that is no user.
async fn assign(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    assignees: &Assignees,
) -> Result<(), ApiError> {
    let users: &[i64] = match assignees {
        Assignees::All => &[],
        Assignees::Users(ids) => ids,
    };
    let missing = repo::missing_users(tx, users).await?;
    if !missing.is_empty() {
        return Err(unknown_users(&missing));
    }
    repo::set_assignees(tx, id, *assignees == Assignees::All, users)
        .await
        .map_err(|e| {
            // A user deleted between the check and the insert.
            if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                unknown_users(users)
            } else {
                e.into()
            }
        })
}

fn unknown_users(ids: &[i64]) -> ApiError {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    ApiError::validation(
        "UNKNOWN_USERS",
        format!("assignees: no user with id {}", list.join(", ")),
    )
}

/// Registers a SIM and declares its queue, so jobs routed to it wait there even before its
/// agent first connects. A broker that is down only delays that: the outbox declares the
/// queue again before it publishes to it, and so does the agent when it starts.
pub async fn create(
    db: &PgPool,
    broker: &Broker,
    queue: &QueueSettings,
    actor: i64,
    sim: NewSim,
) -> Result<SimRow, ApiError> {
    let mut tx = db.begin().await?;
    let row = repo::insert_sim(
        &mut tx,
        sim.number.as_str(),
        &sim.label,
        sim.status.as_str(),
    )
    .await
    .map_err(number_clash)?;
    assign(&mut tx, row.id, &sim.assignees).await?;
    let row = SimRow {
        assigned_to_all: sim.assignees == Assignees::All,
        ..row
    };
    let details = json!({ "assignees": sim.assignees.to_json() });
    audit_sim(&mut tx, actor, "sim.create", &row, details).await?;
    tx.commit().await?;
    if let Err(e) = declare_queue(broker, queue, row.id).await {
        warn!(error = %e, sim.id = row.id, "SIM queue not declared yet; it will be at first use");
    }
    info!(sim.id = row.id, "SIM card registered");
    Ok(row)
}

async fn declare_queue(
    broker: &Broker,
    queue: &QueueSettings,
    sim_id: i64,
) -> Result<(), smsgate_shared::queue::BrokerError> {
    let channel = broker.channel().await?;
    smsgate_shared::queue::declare_topology(&channel, queue).await?;
    declare_sim_queue(&channel, queue, sim_id).await?;
    let _ = channel.close(200, "declared").await;
    Ok(())
}

pub async fn update(
    db: &PgPool,
    actor: i64,
    id: i64,
    changes: SimChanges,
) -> Result<SimRow, ApiError> {
    let mut tx = db.begin().await?;
    let row = repo::update_sim(
        &mut tx,
        id,
        changes.number.as_ref().map(PhoneNumber::as_str),
        changes.label.as_deref(),
        changes.status.map(|s| s.as_str()),
    )
    .await
    .map_err(number_clash)?
    .ok_or(ApiError::NotFound("SIM card"))?;
    let row = match &changes.assignees {
        Some(assignees) => {
            assign(&mut tx, id, assignees).await?;
            SimRow {
                assigned_to_all: *assignees == Assignees::All,
                ..row
            }
        }
        None => row,
    };
    let changed = json!({
        "number": changes.number.as_ref().map(PhoneNumber::as_str),
        "label": changes.label,
        "status": changes.status.map(|s| s.as_str()),
        "assignees": changes.assignees.as_ref().map(Assignees::to_json),
    });
    audit_sim(
        &mut tx,
        actor,
        "sim.update",
        &row,
        json!({ "changed": changed }),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// A taken number is the caller's conflict; anything else is the database's.
fn number_clash(e: sqlx::Error) -> ApiError {
    if is_unique_violation(&e) {
        taken_number()
    } else {
        e.into()
    }
}

/// Records a change to a SIM card in the audit log, inside the change's transaction. The
/// SIM's number and status go in the details, so the entry still says which SIM it was
/// after the SIM is gone (the edge gateway's `/api/logs` clients read `sender_sim`).
async fn audit_sim(
    tx: &mut Transaction<'_, Postgres>,
    actor: i64,
    action: &str,
    sim: &SimRow,
    mut details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    details["number"] = json!(sim.number);
    details["status"] = json!(sim.status);
    audit::record(tx, Some(actor), action, &format!("sim:{}", sim.id), details).await
}

/// What deleting a SIM did.
pub struct Deleted {
    /// Recipients that were still waiting for this SIM and are now failed (forced only).
    pub failed_recipients: i64,
}

/// Deletes a SIM. With jobs still queued for it, refuses unless `force`: then those
/// recipients fail ("SIM card deleted"), so none is left pending for ever. Its queue is
/// removed from the broker.
pub async fn delete(
    db: &PgPool,
    broker: &Broker,
    queue: &QueueSettings,
    actor: i64,
    id: i64,
    force: bool,
) -> Result<Deleted, ApiError> {
    let sim = find(db, id).await?;
    let route = routing::sim(id);
    let pending = repo::count_pending_on_route(db, &route).await?;
    if pending > 0 && !force {
        return Err(ApiError::Conflict {
            code: "SIM_HAS_QUEUED_JOBS",
            message: format!(
                "{pending} SMS are still queued for this SIM card; delete with ?force=true to fail them"
            ),
        });
    }
    let mut tx = db.begin().await?;
    let failed = repo::fail_pending_on_route(&mut tx, &route, "SIM card deleted").await?;
    if !repo::delete_sim(&mut tx, id).await? {
        return Err(ApiError::NotFound("SIM card"));
    }
    let details = json!({ "forced": force, "failed_recipients": failed });
    audit_sim(&mut tx, actor, "sim.delete", &sim, details).await?;
    tx.commit().await?;
    let names = Names::new(&queue.prefix);
    match broker.channel().await {
        Ok(channel) => {
            if let Err(e) = channel
                .queue_delete(&names.sim_queue(id), QueueDeleteOptions::default())
                .await
            {
                warn!(error = %e, sim.id = id, "could not delete the SIM's queue");
            }
            let _ = channel.close(200, "deleted").await;
        }
        Err(e) => warn!(error = %e, sim.id = id, "broker away; the SIM's queue is left behind"),
    }
    info!(sim.id = id, failed, "SIM card deleted");
    Ok(Deleted {
        failed_recipients: failed,
    })
}

/// Recipients still waiting to go out through SIM `id`: what a plain delete would refuse
/// over, shown before asking.
pub async fn queued_jobs(db: &PgPool, id: i64) -> Result<i64, ApiError> {
    Ok(repo::count_pending_on_route(db, &routing::sim(id)).await?)
}

/// SIM cards by state, for the dashboard: active and online, active but offline (no
/// heartbeat within [`OFFLINE_AFTER`]), and inactive whatever their agent does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimSummary {
    pub online: usize,
    pub offline: usize,
    pub inactive: usize,
}

impl SimSummary {
    pub fn total(&self) -> usize {
        self.online + self.offline + self.inactive
    }
}

/// How the SIMs `viewer` may use stand (all SIMs for an admin): other users' SIMs are not
/// even counted.
pub async fn summary(db: &PgPool, viewer: i64) -> Result<SimSummary, ApiError> {
    // A handful of SIMs, one per modem: counting the list keeps one notion of online.
    let mut summary = SimSummary::default();
    for sim in repo::list_sims_usable_by(db, viewer).await? {
        if sim.status != SimStatus::Active.as_str() {
            summary.inactive += 1;
        } else if is_online(&sim) {
            summary.online += 1;
        } else {
            summary.offline += 1;
        }
    }
    Ok(summary)
}

/// Where a send goes, as the request asked for it.
pub enum RouteRequest {
    /// No routing given: the HKT gateway, as before.
    Hkt,
    /// Through this SIM card.
    Sim(i64),
    /// Through any active, online SIM, round-robin; HKT when none is online.
    AnySim,
}

impl RouteRequest {
    pub fn parse(sim_card_id: Option<i64>, route: Option<&str>) -> Result<RouteRequest, ApiError> {
        match (sim_card_id, route.map(str::trim)) {
            (Some(id), None | Some("sim")) => Ok(RouteRequest::Sim(id)),
            (None, None | Some("") | Some("hkt")) => Ok(RouteRequest::Hkt),
            (None, Some("sim")) => Ok(RouteRequest::AnySim),
            (Some(_), Some("hkt")) => Err(ApiError::validation(
                "INVALID_ROUTE",
                "sim_card_id cannot be combined with route `hkt`",
            )),
            _ => Err(ApiError::validation(
                "INVALID_ROUTE",
                "route must be `hkt` or `sim`",
            )),
        }
    }

    /// The routing asked for, as an idempotency fingerprint records it.
    pub fn label(&self) -> String {
        match self {
            RouteRequest::Hkt => "hkt".to_owned(),
            RouteRequest::Sim(id) => format!("sim:{id}"),
            RouteRequest::AnySim => "sim:any".to_owned(),
        }
    }
}

/// A message accepted, with the SIM it goes out through (`None`: HKT).
pub struct RoutedAccepted {
    pub accepted: Accepted,
    pub sender_sim: Option<String>,
}

/// Whether a send with an idempotency key was stored now or answered from the earlier
/// request that used the key.
pub enum SendOnce {
    Stored(RoutedAccepted),
    Replayed(RoutedAccepted),
}

impl SendOnce {
    /// The acceptance, and whether it is a replay.
    pub fn into_parts(self) -> (RoutedAccepted, bool) {
        match self {
            SendOnce::Stored(accepted) => (accepted, false),
            SendOnce::Replayed(accepted) => (accepted, true),
        }
    }
}

impl RoutedAccepted {
    /// The route it was accepted for, as the metrics label it.
    pub fn route(&self) -> SendRoute {
        match self.sender_sim {
            Some(_) => SendRoute::Sim,
            None => SendRoute::Hkt,
        }
    }
}

/// Accepts a send on the route asked for: HKT through the SMS service as before, a SIM
/// through its own queue. 400 `UNKNOWN_SIM_CARD` for a SIM that is missing or not usable by
/// the user (alike, so a SIM's existence is not revealed), 409 for an inactive one; any
/// online SIM means one of those usable by the user. With a `claim`,
/// its key is recorded in the message's transaction (409 `IDEMPOTENCY_KEY_IN_USE` if another
/// request recorded it first; [`accept_send_once`] turns that into a replay).
pub async fn accept_send(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    route: RouteRequest,
    claim: Option<&KeyClaim>,
) -> Result<RoutedAccepted, ApiError> {
    let sim = match route {
        RouteRequest::Hkt => None,
        RouteRequest::Sim(id) => {
            let sim = repo::find_sim_usable_by(db, id, user_id)
                .await?
                .ok_or_else(|| {
                    ApiError::validation("UNKNOWN_SIM_CARD", format!("no SIM card with id {id}"))
                })?;
            if sim.status != SimStatus::Active.as_str() {
                return Err(ApiError::Conflict {
                    code: "SIM_CARD_INACTIVE",
                    message: format!("SIM card {id} is inactive"),
                });
            }
            repo::touch_sim(db, id).await?;
            Some((sim.id, sim.number))
        }
        RouteRequest::AnySim => {
            repo::take_next_online_sim(db, OFFLINE_AFTER.as_secs_f64(), user_id).await?
        }
    };
    let Some((sim_id, number)) = sim else {
        let accepted = sms::accept(db, outbox, user_id, send, claim).await?;
        return Ok(RoutedAccepted {
            accepted,
            sender_sim: None,
        });
    };
    let accepted = accept_via_sim(db, outbox, user_id, send, sim_id, claim).await?;
    Ok(RoutedAccepted {
        accepted,
        sender_sim: Some(number),
    })
}

/// [`accept_send`] at most once per idempotency key: a key this user already sent with is
/// answered with that message (422 `IDEMPOTENCY_KEY_REUSED` if the request differs), and
/// of two requests racing with one key, the one that commits second is answered with the
/// first one's message.
#[tracing::instrument(name = "sms.accept_once", skip_all, fields(user.id = user_id, replayed))]
pub async fn accept_send_once(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    route: RouteRequest,
    claim: &KeyClaim,
) -> Result<SendOnce, ApiError> {
    if let Some(prior) = claim.prior(db, user_id).await? {
        return replay(prior);
    }
    match accept_send(db, outbox, user_id, send, route, Some(claim)).await {
        Ok(stored) => Ok(SendOnce::Stored(stored)),
        Err(ApiError::IdempotencyKeyTaken) => match claim.prior(db, user_id).await? {
            Some(prior) => replay(prior),
            None => Err(ApiError::IdempotencyKeyTaken),
        },
        Err(e) => Err(e),
    }
}

fn replay(prior: PriorSend) -> Result<SendOnce, ApiError> {
    tracing::Span::current().record("replayed", true);
    if !prior.same_request {
        return Err(ApiError::IdempotencyMismatch);
    }
    Ok(SendOnce::Replayed(RoutedAccepted {
        accepted: Accepted::from(&prior),
        sender_sim: prior.sender_sim,
    }))
}

/// Stores the message with route `sim.<id>` and hands its jobs to the outbox for that
/// route. Kept apart from the HKT path on purpose: that path is tuned for 100,000-recipient
/// bulks, a modem sends a few SMS a minute.
#[tracing::instrument(name = "sms.accept_via_sim", skip_all, fields(user.id = user_id, sim.id = sim_id, message.id))]
async fn accept_via_sim(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    sim_id: i64,
    claim: Option<&KeyClaim>,
) -> Result<Accepted, AcceptError> {
    let route = routing::sim(sim_id);
    let total = send.recipients.len();
    let phones: Vec<&str> = send.recipients.iter().map(PhoneNumber::as_str).collect();
    let mut tx = db.begin().await?;
    let (id, created_at, recipients) = repo::insert_routed_message(
        &mut tx,
        user_id,
        &send.body,
        &phones,
        &route,
        outbox.lease().as_secs_f64(),
    )
    .await?;
    if let Some(claim) = claim {
        if !claim.record(&mut tx, user_id, id).await? {
            return Err(AcceptError::KeyTaken); // dropping `tx` rolls the message back
        }
    }
    tx.commit().await?;
    tracing::Span::current().record("message.id", id);
    let jobs = OutboundJob::sends_of(id, &send.body, recipients);
    outbox.publish_routed_in_background(id, route, jobs);
    Ok(Accepted {
        id,
        status: smsgate_shared::domain::MessageStatus::Pending,
        total,
        created_at,
    })
}

/// Received SMS that user `viewer` may read (those of the SIMs usable by them; all for an
/// admin), optionally of SIM `sim_id` only.
pub async fn inbox(
    db: &PgPool,
    viewer: i64,
    sim_id: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<Page<repo::InboundRow>, ApiError> {
    let (items, total) = tokio::try_join!(
        repo::list_inbound(db, sim_id, viewer, per_page, (page - 1) * per_page),
        repo::count_inbound(db, sim_id, viewer),
    )?;
    Ok(Page {
        items,
        total,
        page,
        per_page,
    })
}

/// Outgoing SMS of both routes: the caller's own, everyone's for an admin.
pub async fn outgoing(
    db: &PgPool,
    owner: Option<i64>,
    sim_id: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<Page<repo::OutgoingRow>, ApiError> {
    let route = sim_id.map(routing::sim);
    let (items, total) = tokio::try_join!(
        repo::list_outgoing(db, owner, route.as_deref(), per_page, (page - 1) * per_page),
        repo::count_outgoing(db, owner, route.as_deref()),
    )?;
    Ok(Page {
        items,
        total,
        page,
        per_page,
    })
}

/// Revokes every key of the user and issues one new key, in one transaction with its
/// `token.mint` audit entry (the key's id and who asked from where, never the key).
pub async fn replace_api_keys(
    db: &PgPool,
    user_id: i64,
    address: &str,
) -> Result<String, ApiError> {
    let token = ApiToken::generate();
    let mut tx = db.begin().await?;
    let revoked = repo::revoke_all_api_keys(&mut tx, user_id).await?;
    let token_id = repo::insert_api_key(&mut tx, user_id, &token.hash, GENERATED_KEY_LABEL).await?;
    crate::admin::audit::record(
        &mut tx,
        Some(user_id),
        "token.mint",
        &format!("user:{user_id}"),
        serde_json::json!({
            "via": GENERATED_KEY_LABEL,
            "token_id": token_id,
            "address": address,
            "revoked_count": revoked,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(token.plain)
}

/// The label of keys minted by `POST /api/generate-api-key`, in the key list and the audit.
const GENERATED_KEY_LABEL: &str = "POST /api/generate-api-key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_requests_parse_as_the_edge_gateway_clients_send_them() {
        assert!(matches!(
            RouteRequest::parse(None, None),
            Ok(RouteRequest::Hkt)
        ));
        assert!(matches!(
            RouteRequest::parse(Some(3), None),
            Ok(RouteRequest::Sim(3))
        ));
        assert!(matches!(
            RouteRequest::parse(None, Some("sim")),
            Ok(RouteRequest::AnySim)
        ));
        assert!(RouteRequest::parse(Some(3), Some("hkt")).is_err());
        assert!(RouteRequest::parse(None, Some("carrier-pigeon")).is_err());
    }

    #[test]
    fn sim_status_accepts_only_active_and_inactive() {
        assert_eq!(SimStatus::parse("Active").unwrap(), SimStatus::Active);
        assert_eq!(SimStatus::parse("inactive").unwrap(), SimStatus::Inactive);
        assert!(SimStatus::parse("online").is_err());
    }
}
