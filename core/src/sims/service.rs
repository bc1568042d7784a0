//! SIM cards and SIM routing, the inbox and outbox, and the edge gateway's API keys.
//! Domain types in, rows out; no HTTP here, so the panel can use the same functions.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use serde_json::json;
use smsgate_shared::config::QueueSettings;
use smsgate_shared::domain::PhoneNumber;
use smsgate_shared::queue::{declare_sim_queue, routing, Broker, Names};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::{info, warn};

use super::broker_users::{BrokerAdminError, SimBrokerCredentials, SimBrokerUsers};
use super::repo::{self, SimRow};
use crate::admin::audit;
use crate::sms::service::Page;

/// Why a SIM-card operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Missing, or not usable by the caller (alike, so a SIM's existence is not revealed).
    #[error("SIM card not found")]
    NotFound,
    #[error("status must be `active` or `inactive`")]
    InvalidStatus,
    #[error("a SIM card with this number is already registered")]
    NumberTaken,
    #[error("assignees: no user with id {}", join_ids(.0))]
    UnknownUsers(Vec<i64>),
    /// A cap that is not a positive whole number (or null, to clear it); names the field.
    #[error("{0} must be a whole number above 0, or null for no cap")]
    InvalidCap(&'static str),
    /// A plain delete of a SIM that still has jobs waiting for it.
    #[error(
        "{pending} SMS are still queued for this SIM card; delete with ?force=true to fail them"
    )]
    HasQueuedJobs { pending: i64 },
    /// The broker's management API could not create, restrict or delete the SIM's broker
    /// user; nothing was changed.
    #[error(transparent)]
    BrokerUsers(#[from] BrokerAdminError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a SIM takes new sends. Set by people; whether its agent is online is separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStatus {
    Active,
    Inactive,
}

impl SimStatus {
    pub fn parse(raw: &str) -> Result<SimStatus, SimError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(SimStatus::Active),
            "inactive" => Ok(SimStatus::Inactive),
            _ => Err(SimError::InvalidStatus),
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub caps: CapChanges,
}

/// A carrier cap (jobs per minute, hour or day) or a spacing in seconds: above 0 and
/// small enough for its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(i32);

impl Cap {
    /// `field` names the cap in the error.
    pub fn parse(field: &'static str, raw: i64) -> Result<Cap, SimError> {
        match i32::try_from(raw) {
            Ok(n) if n > 0 => Ok(Cap(n)),
            _ => Err(SimError::InvalidCap(field)),
        }
    }

    pub fn get(&self) -> i32 {
        self.0
    }
}

/// Changes to a SIM's caps: `None` keeps one, `Some(None)` clears it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapChanges {
    pub max_per_minute: Option<Option<Cap>>,
    pub max_per_hour: Option<Option<Cap>>,
    pub max_per_day: Option<Option<Cap>>,
    pub send_interval_secs: Option<Option<Cap>>,
}

impl CapChanges {
    pub fn is_empty(&self) -> bool {
        *self == CapChanges::default()
    }

    /// How the audit log records them: each changed cap, `null` when cleared.
    fn to_json(self) -> serde_json::Value {
        let mut changed = serde_json::Map::new();
        for (name, change) in [
            ("max_per_minute", self.max_per_minute),
            ("max_per_hour", self.max_per_hour),
            ("max_per_day", self.max_per_day),
            ("send_interval_secs", self.send_interval_secs),
        ] {
            if let Some(value) = change {
                changed.insert(name.to_owned(), json!(value.map(|c| c.get())));
            }
        }
        serde_json::Value::Object(changed)
    }
}

/// True when the SIM's agent sent a heartbeat within `offline_after`
/// (SIM_OFFLINE_AFTER_SECS, the releaser's notion of online too).
pub fn is_online(sim: &SimRow, offline_after: Duration) -> bool {
    let window = chrono::Duration::from_std(offline_after).expect("small duration");
    sim.last_heartbeat_at
        .is_some_and(|at| chrono::Utc::now() - at < window)
}

/// What each SIM was given in its caps' windows (last minute, hour, 24 h), by SIM id;
/// SIMs given nothing are absent.
pub async fn usage_of(
    db: &PgPool,
    sims: &[SimRow],
) -> Result<HashMap<i64, repo::SimUsage>, SimError> {
    let ids: Vec<i64> = sims.iter().map(|s| s.id).collect();
    Ok(repo::sim_usage(db, &ids)
        .await?
        .into_iter()
        .map(|u| (u.sim_card_id, u))
        .collect())
}

/// The SIM's last `+CSQ` signal (rssi 0..=31, about -113 to -51 dBm) as a share of that
/// scale in percent, for bars in a UI; `None` until the agent reports one.
pub fn signal_percent(sim: &SimRow) -> Option<i16> {
    sim.signal.map(|rssi| rssi * 100 / 31)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Every SIM card, whoever it is assigned to: for admins and aggregate figures only; what a
/// user is shown comes from [`list_usable_by`].
pub async fn list(db: &PgPool) -> Result<Vec<SimRow>, SimError> {
    Ok(repo::list_sims(db).await?)
}

/// The SIM cards user `viewer` may see and send through: assigned to all or to them, or
/// every SIM for an admin.
pub async fn list_usable_by(db: &PgPool, viewer: i64) -> Result<Vec<SimRow>, SimError> {
    Ok(repo::list_sims_usable_by(db, viewer).await?)
}

pub async fn find(db: &PgPool, id: i64) -> Result<SimRow, SimError> {
    repo::find_sim(db, id).await?.ok_or(SimError::NotFound)
}

/// SIM `id` as user `viewer` may see it: [`SimError::NotFound`] alike whether it is missing
/// or not theirs, so a SIM's existence is not revealed.
pub async fn find_usable_by(db: &PgPool, id: i64, viewer: i64) -> Result<SimRow, SimError> {
    repo::find_sim_usable_by(db, id, viewer)
        .await?
        .ok_or(SimError::NotFound)
}

/// The assignees of each of `sims` (admins' views): `All` or the users, by SIM id.
pub async fn assignees_of(
    db: &PgPool,
    sims: &[SimRow],
) -> Result<HashMap<i64, (Assignees, Vec<Assignee>)>, SimError> {
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
pub async fn user_choices(db: &PgPool) -> Result<Vec<repo::UserChoice>, SimError> {
    Ok(repo::list_user_choices(db).await?)
}

/// Stores who SIM `id` is assigned to, inside the change's transaction;
/// [`SimError::UnknownUsers`] naming every id that is no user.
async fn assign(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    assignees: &Assignees,
) -> Result<(), SimError> {
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

fn unknown_users(ids: &[i64]) -> SimError {
    SimError::UnknownUsers(ids.to_vec())
}

/// A SIM just registered, with its agent's broker login when one was provisioned (shown
/// once: RabbitMQ keeps only a hash of the password).
pub struct Created {
    pub sim: SimRow,
    pub credentials: Option<SimBrokerCredentials>,
}

/// Registers a SIM, creates its agent's broker user and declares its queue, so jobs routed
/// to it wait there even before its agent first connects. The user is created before the
/// SIM commits: a management API that refuses rolls the SIM back
/// ([`SimError::BrokerUsers`]); without BROKER_ADMIN_URL the SIM registers without one.
/// A broker that is down for the queue only delays it: the releaser declares the queue
/// again before it publishes to it.
pub async fn create(
    db: &PgPool,
    broker: &Broker,
    queue: &QueueSettings,
    users: &SimBrokerUsers,
    actor: i64,
    sim: NewSim,
) -> Result<Created, SimError> {
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
    // The queue first: the user's permissions name it, and an agent given its login at
    // once should find it.
    if let Err(e) = declare_queue(broker, queue, row.id).await {
        warn!(error = %e, sim.id = row.id, "SIM queue not declared yet; it will be at first use");
    }
    let active = sim.status == SimStatus::Active;
    let credentials = optional(users.provision(row.id, active).await)?;
    tx.commit().await?;
    info!(sim.id = row.id, "SIM card registered");
    Ok(Created {
        sim: row,
        credentials,
    })
}

/// A new broker login for SIM `id`'s agent (a Pi replaced or stolen): the old password
/// stops working and the agent's connections are closed. Admins only; audited.
pub async fn rotate_credentials(
    db: &PgPool,
    users: &SimBrokerUsers,
    actor: i64,
    id: i64,
) -> Result<SimBrokerCredentials, SimError> {
    let sim = find(db, id).await?;
    let mut tx = db.begin().await?;
    audit_sim(&mut tx, actor, "sim.credentials", &sim, json!({})).await?;
    let credentials = users
        .provision(id, sim.status == SimStatus::Active.as_str())
        .await?;
    tx.commit().await?;
    Ok(credentials)
}

/// A broker user call's result, where having no management API configured is no error.
fn optional<T>(result: Result<T, BrokerAdminError>) -> Result<Option<T>, SimError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(BrokerAdminError::NotConfigured) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn declare_queue(
    broker: &Broker,
    queue: &QueueSettings,
    sim_id: i64,
) -> Result<(), smsgate_shared::queue::BrokerError> {
    let channel = broker.channel().await?;
    smsgate_shared::queue::declare_topology(&channel, queue).await?;
    // The edge exchange too: the agent, with no configure permission, only checks that
    // it exists, and may start before any dispatcher declared it.
    smsgate_shared::queue::declare_edge_ingest(&channel, queue).await?;
    declare_sim_queue(&channel, queue, sim_id).await?;
    let _ = channel.close(200, "declared").await;
    Ok(())
}

/// Changes a SIM. Deactivating it takes its agent's broker permissions away (and closes
/// its connections); activating gives them back. Both happen before the change commits, so
/// a management API that refuses leaves the SIM as it was.
pub async fn update(
    db: &PgPool,
    users: &SimBrokerUsers,
    actor: i64,
    id: i64,
    changes: SimChanges,
) -> Result<SimRow, SimError> {
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
    .ok_or(SimError::NotFound)?;
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
    let caps = changes.caps;
    let row = if caps.is_empty() {
        row
    } else {
        let value = |c: Option<Option<Cap>>| c.flatten().map(|c| c.get());
        repo::update_caps(
            &mut tx,
            id,
            caps.max_per_minute.is_some(),
            value(caps.max_per_minute),
            caps.max_per_hour.is_some(),
            value(caps.max_per_hour),
            caps.max_per_day.is_some(),
            value(caps.max_per_day),
            caps.send_interval_secs.is_some(),
            value(caps.send_interval_secs),
        )
        .await?;
        SimRow {
            max_per_minute: caps.max_per_minute.map_or(row.max_per_minute, value_of),
            max_per_hour: caps.max_per_hour.map_or(row.max_per_hour, value_of),
            max_per_day: caps.max_per_day.map_or(row.max_per_day, value_of),
            send_interval_secs: caps
                .send_interval_secs
                .map_or(row.send_interval_secs, value_of),
            ..row
        }
    };
    let changed = json!({
        "number": changes.number.as_ref().map(PhoneNumber::as_str),
        "label": changes.label,
        "status": changes.status.map(|s| s.as_str()),
        "assignees": changes.assignees.as_ref().map(Assignees::to_json),
        "caps": (!caps.is_empty()).then(|| caps.to_json()),
    });
    audit_sim(
        &mut tx,
        actor,
        "sim.update",
        &row,
        json!({ "changed": changed }),
    )
    .await?;
    match changes.status {
        Some(SimStatus::Active) => optional(users.grant(id).await)?,
        Some(SimStatus::Inactive) => optional(users.revoke(id).await)?,
        None => None,
    };
    tx.commit().await?;
    Ok(row)
}

fn value_of(cap: Option<Cap>) -> Option<i32> {
    cap.map(|c| c.get())
}

/// A taken number is the caller's conflict; anything else is the database's.
fn number_clash(e: sqlx::Error) -> SimError {
    if is_unique_violation(&e) {
        SimError::NumberTaken
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
    audit::record(
        &mut **tx,
        Some(actor),
        action,
        &format!("sim:{}", sim.id),
        details,
    )
    .await
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
    users: &SimBrokerUsers,
    actor: i64,
    id: i64,
    force: bool,
) -> Result<Deleted, SimError> {
    let sim = find(db, id).await?;
    let route = routing::sim(id);
    let pending = repo::count_pending_on_route(db, &route).await?;
    if pending > 0 && !force {
        return Err(SimError::HasQueuedJobs { pending });
    }
    let mut tx = db.begin().await?;
    let failed = repo::fail_pending_on_route(&mut tx, &route, "SIM card deleted").await?;
    if !repo::delete_sim(&mut tx, id).await? {
        return Err(SimError::NotFound);
    }
    let details = json!({ "forced": force, "failed_recipients": failed });
    audit_sim(&mut tx, actor, "sim.delete", &sim, details).await?;
    // Permissions go before the SIM does (a refusal keeps both); the user itself after.
    optional(users.revoke(id).await)?;
    tx.commit().await?;
    if let Err(e) = optional(users.remove(id).await) {
        warn!(error = %e, sim.id = id, "the deleted SIM's broker user is left behind, without permissions");
    }
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
pub async fn queued_jobs(db: &PgPool, id: i64) -> Result<i64, SimError> {
    Ok(repo::count_pending_on_route(db, &routing::sim(id)).await?)
}

/// SIM cards by state, for the dashboard: active and online, active but offline (no
/// heartbeat within the offline window), and inactive whatever their agent does.
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
pub async fn summary(
    db: &PgPool,
    viewer: i64,
    offline_after: Duration,
) -> Result<SimSummary, SimError> {
    // A handful of SIMs, one per modem: counting the list keeps one notion of online.
    let mut summary = SimSummary::default();
    for sim in repo::list_sims_usable_by(db, viewer).await? {
        if sim.status != SimStatus::Active.as_str() {
            summary.inactive += 1;
        } else if is_online(&sim, offline_after) {
            summary.online += 1;
        } else {
            summary.offline += 1;
        }
    }
    Ok(summary)
}

/// Received SMS that user `viewer` may read (those of the SIMs usable by them; all for an
/// admin), optionally of SIM `sim_id` only.
pub async fn inbox(
    db: &PgPool,
    viewer: i64,
    sim_id: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<Page<repo::InboundRow>, SimError> {
    Ok(Page::fetch(
        page,
        per_page,
        |limit, offset| repo::list_inbound(db, sim_id, viewer, limit, offset),
        repo::count_inbound(db, sim_id, viewer),
    )
    .await?)
}

/// Outgoing SMS of both routes: the caller's own, everyone's for an admin.
pub async fn outgoing(
    db: &PgPool,
    owner: Option<i64>,
    sim_id: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<Page<repo::OutgoingRow>, SimError> {
    let route = sim_id.map(routing::sim);
    Ok(Page::fetch(
        page,
        per_page,
        |limit, offset| repo::list_outgoing(db, owner, route.as_deref(), limit, offset),
        repo::count_outgoing(db, owner, route.as_deref()),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_status_accepts_only_active_and_inactive() {
        assert_eq!(SimStatus::parse("Active").unwrap(), SimStatus::Active);
        assert_eq!(SimStatus::parse("inactive").unwrap(), SimStatus::Inactive);
        assert!(SimStatus::parse("online").is_err());
    }

    #[test]
    fn caps_are_positive_and_fit_their_column() {
        assert_eq!(Cap::parse("max_per_day", 600).unwrap().get(), 600);
        for bad in [0, -1, i64::from(i32::MAX) + 1] {
            let err = Cap::parse("max_per_day", bad).unwrap_err();
            assert!(err.to_string().starts_with("max_per_day"), "{err}");
        }
    }
}
