//! `/sims`: the SIM cards of the edge gateway with their agents' state, for everyone signed
//! in (each user sees the SIMs assigned to them or to all; admins every SIM); adding,
//! editing (with assignees), enabling/disabling and deleting them for admins. The rules
//! (number parsing, a taken number, unknown assignees, the queued-jobs refusal and forced
//! delete) live in `sims::service`, shared with `/api/sim-cards`.

use std::collections::{HashMap, HashSet};

use crate::view::DisplayTz;
use crate::{Flash, Page, WebError};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use smsgate_shared::domain::PhoneNumber;

use super::errors::sim_error;
use super::forms::{CsrfForm, NoFields};
use super::session::{AdminUser, PanelUser, SignedIn};
use super::{invalid, PanelId};
use crate::state::WebState;
use smsgate_core::sims::broker_users::SimBrokerCredentials;
use smsgate_core::sims::repo::{SimRow, SimUsage};
use smsgate_core::sims::service::{
    self, Assignee, Assignees, Cap, CapChanges, NewSim, SimChanges, SimError, SimStatus,
};

const SIMS: &str = "/sims";

/// A SIM card as the page (and its refresh endpoint) shows it; times in DISPLAY_TZ.
#[derive(Serialize)]
pub struct SimItem {
    id: i64,
    number: String,
    label: String,
    status: String,
    online: bool,
    last_heartbeat: Option<String>,
    last_heartbeat_iso: Option<String>,
    /// `+CSQ` rssi 0..=31; `None` until the agent reports one.
    signal: Option<i16>,
    signal_percent: Option<i16>,
    operator: Option<String>,
    /// Admins only: who the SIM is assigned to, as the list shows it.
    assigned_to: Option<String>,
    /// Jobs given to the SIM in each cap's window, beside the cap (`None`: no cap).
    usage: [CapUsage; 3],
    send_interval_secs: Option<i32>,
}

/// One cap's window: what was sent in it, against the cap.
#[derive(Serialize)]
struct CapUsage {
    window: &'static str,
    sent: i64,
    cap: Option<i32>,
}

impl SimItem {
    fn new(
        sim: SimRow,
        tz: &DisplayTz,
        offline_after: std::time::Duration,
        used: SimUsage,
    ) -> SimItem {
        SimItem {
            online: service::is_online(&sim, offline_after),
            usage: [
                CapUsage {
                    window: "minute",
                    sent: used.last_minute,
                    cap: sim.max_per_minute,
                },
                CapUsage {
                    window: "hour",
                    sent: used.last_hour,
                    cap: sim.max_per_hour,
                },
                CapUsage {
                    window: "24 h",
                    sent: used.last_24h,
                    cap: sim.max_per_day,
                },
            ],
            send_interval_secs: sim.send_interval_secs,
            signal_percent: service::signal_percent(&sim),
            id: sim.id,
            number: sim.number,
            label: sim.label,
            status: sim.status,
            last_heartbeat: sim.last_heartbeat_at.map(|t| tz.format(t)),
            last_heartbeat_iso: sim.last_heartbeat_at.map(|t| tz.machine(t)),
            signal: sim.signal,
            operator: sim.operator,
            assigned_to: None,
        }
    }
}

/// "All users", or the assignees' names ("admins only" when there are none).
fn assigned_text(assignees: &Assignees, users: &[Assignee]) -> String {
    match assignees {
        Assignees::All => "All users".to_owned(),
        Assignees::Users(_) if users.is_empty() => "Admins only".to_owned(),
        Assignees::Users(_) => users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The SIMs `user` may see (assigned to them or to all; every SIM for an admin, with who it
/// is assigned to).
async fn sim_items(app: &WebState, user: &impl SignedIn) -> Result<Vec<SimItem>, WebError> {
    let tz = app.panel.display_tz;
    let session = user.session();
    let sims = service::list_usable_by(&app.core.db, session.user_id)
        .await
        .map_err(|e| sim_error(e, "/"))?;
    let mut assigned = if session.is_admin {
        service::assignees_of(&app.core.db, &sims)
            .await
            .map_err(|e| sim_error(e, "/"))?
    } else {
        HashMap::new()
    };
    let usage = service::usage_of(&app.core.db, &sims)
        .await
        .map_err(|e| sim_error(e, "/"))?;
    let offline_after = app.core.settings.release.sim_offline_after;
    Ok(sims
        .into_iter()
        .map(|sim| {
            let sim_id = sim.id;
            let assigned_to = assigned
                .remove(&sim.id)
                .map(|(assignees, users)| assigned_text(&assignees, &users));
            SimItem {
                assigned_to,
                ..SimItem::new(
                    sim,
                    &tz,
                    offline_after,
                    usage.get(&sim_id).copied().unwrap_or_default(),
                )
            }
        })
        .collect())
}

pub async fn list_sims(State(app): State<WebState>, user: PanelUser) -> Result<Page, WebError> {
    let sims = sim_items(&app, &user).await?;
    Ok(Page::new("sims.html", user.layout(&app, "sims"))
        .with("sims", sims)
        .with("can_manage", user.session.is_admin))
}

#[derive(Serialize)]
pub struct SimStates {
    sims: Vec<SimItem>,
    /// When this was read, in DISPLAY_TZ like every time on the page.
    updated: String,
}

/// The list as JSON for `sims.js`, which refreshes online state and signal every 10 s.
/// Polled rather than streamed: heartbeats reach only the dispatcher's ingest queue, and the
/// database row it updates is what decides "online" anyway.
pub async fn sim_states(
    State(app): State<WebState>,
    user: PanelUser,
) -> Result<Response, WebError> {
    let sims = sim_items(&app, &user).await?;
    let updated = app.panel.display_tz.format(chrono::Utc::now());
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SimStates { sims, updated }),
    )
        .into_response())
}

/// Prefix of the assignee checkboxes' names: `user_<id>`, one per user (a form field can't
/// repeat into a list here).
const USER_FIELD: &str = "user_";

/// The add and edit form, as typed.
#[derive(Deserialize, Default)]
pub struct SimForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    status: String,
    /// `all`, or `users` for the ticked `user_<id>` boxes.
    #[serde(default)]
    assign: String,
    /// Carrier caps (edit form): a whole number above 0, or empty for none; absent (a form
    /// from before caps existed) keeps them.
    #[serde(default)]
    max_per_minute: Option<String>,
    #[serde(default)]
    max_per_hour: Option<String>,
    #[serde(default)]
    max_per_day: Option<String>,
    #[serde(default)]
    send_interval_secs: Option<String>,
    /// The ticked `user_<id>` boxes (and the other fields, unread).
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

impl SimForm {
    /// The ids of the ticked user boxes; ignores anything that is not one.
    fn ticked_users(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .rest
            .keys()
            .filter_map(|k| k.strip_prefix(USER_FIELD)?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The assignee choice: `Ok(None)` when the form has none (a form from before assignees
    /// existed: a new SIM is for all, an edited one keeps its assignees), `Err` for a value
    /// the form never offers.
    fn assignees(&self) -> Result<Option<Assignees>, ()> {
        match self.assign.as_str() {
            "" => Ok(None),
            "all" => Ok(Some(Assignees::All)),
            "users" => Ok(Some(Assignees::Users(self.ticked_users()))),
            _ => Err(()),
        }
    }

    /// The caps as typed: each set, or cleared when empty; the error names the first one
    /// that is not a whole number above 0.
    fn caps(&self) -> Result<CapChanges, SimError> {
        let cap =
            |field: &'static str, raw: &Option<String>| -> Result<Option<Option<Cap>>, SimError> {
                let Some(raw) = raw.as_deref().map(str::trim) else {
                    return Ok(None);
                };
                if raw.is_empty() {
                    return Ok(Some(None));
                }
                let n = raw.parse().map_err(|_| SimError::InvalidCap(field))?;
                Ok(Some(Some(Cap::parse(field, n)?)))
            };
        Ok(CapChanges {
            max_per_minute: cap("max_per_minute", &self.max_per_minute)?,
            max_per_hour: cap("max_per_hour", &self.max_per_hour)?,
            max_per_day: cap("max_per_day", &self.max_per_day)?,
            send_interval_secs: cap("send_interval_secs", &self.send_interval_secs)?,
        })
    }

    fn with_caps(mut self, sim: &SimRow) -> SimForm {
        let text = |cap: Option<i32>| Some(cap.map(|c| c.to_string()).unwrap_or_default());
        self.max_per_minute = text(sim.max_per_minute);
        self.max_per_hour = text(sim.max_per_hour);
        self.max_per_day = text(sim.max_per_day);
        self.send_interval_secs = text(sim.send_interval_secs);
        self
    }

    fn with_assignees(mut self, assignees: &Assignees) -> SimForm {
        match assignees {
            Assignees::All => self.assign = "all".to_owned(),
            Assignees::Users(ids) => {
                self.assign = "users".to_owned();
                for id in ids {
                    self.rest
                        .insert(format!("{USER_FIELD}{id}"), "on".to_owned());
                }
            }
        }
        self
    }
}

#[derive(Serialize)]
struct UserBox {
    id: i64,
    username: String,
    is_admin: bool,
    is_active: bool,
    checked: bool,
}

/// The add form (`sim` is `None`) or the edit form of `sim`, with its values and errors.
async fn sim_form_page(
    app: &WebState,
    admin: &AdminUser,
    sim: Option<&SimRow>,
    form: &SimForm,
    errors: serde_json::Value,
) -> Result<Page, WebError> {
    let ticked: HashSet<i64> = form.ticked_users().into_iter().collect();
    let users: Vec<UserBox> = service::user_choices(&app.core.db)
        .await
        .map_err(|e| sim_error(e, SIMS))?
        .into_iter()
        .map(|u| UserBox {
            checked: ticked.contains(&u.id),
            id: u.id,
            username: u.username,
            is_admin: u.is_admin,
            is_active: u.is_active,
        })
        .collect();
    Ok(Page::new("sim_form.html", admin.layout(app, "sims"))
        .with("sim", sim.map(|s| json!({"id": s.id, "number": s.number})))
        .with("number", &form.number)
        .with("label", &form.label)
        .with("status", &form.status)
        .with("assign", &form.assign)
        .with(
            "caps",
            json!({
                "max_per_minute": form.max_per_minute,
                "max_per_hour": form.max_per_hour,
                "max_per_day": form.max_per_day,
                "send_interval_secs": form.send_interval_secs,
            }),
        )
        .with("users", users)
        .with("errors", errors))
}

pub async fn new_sim_form(State(app): State<WebState>, admin: AdminUser) -> Result<Page, WebError> {
    let form = SimForm {
        status: SimStatus::Active.as_str().to_owned(),
        assign: "all".to_owned(),
        ..SimForm::default()
    };
    sim_form_page(&app, &admin, None, &form, json!({})).await
}

/// The form's error for a refused assignee choice.
fn assign_error() -> serde_json::Value {
    json!({"assign": "Choose all users or the users it is assigned to."})
}

pub async fn create_sim(
    State(app): State<WebState>,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, SimForm>,
) -> Result<Response, WebError> {
    let page = |errors| sim_form_page(&app, &admin, None, &form, errors);
    let number = match PhoneNumber::parse_dialable(&form.number) {
        Ok(number) => number,
        Err(e) => return invalid(page(json!({"number": e.to_string()})).await?),
    };
    let Ok(status) = SimStatus::parse(&form.status) else {
        return invalid(page(json!({"status": "Choose active or inactive."})).await?);
    };
    let Ok(assignees) = form.assignees() else {
        return invalid(page(assign_error()).await?);
    };
    let new = NewSim {
        number,
        label: form.label.trim().to_owned(),
        status,
        assignees: assignees.unwrap_or(Assignees::All),
    };
    match service::create(
        &app.core.db,
        &app.core.broker,
        &app.core.settings.queue,
        &app.core.sim_users,
        admin.session.user_id,
        new,
    )
    .await
    {
        Ok(created) => {
            let sim = created.sim;
            Ok(credentials_page(&app, &admin, &sim, created.credentials, false).into_response())
        }
        Err(e @ SimError::NumberTaken) => invalid(page(json!({ "number": e.to_string() })).await?),
        Err(e @ SimError::UnknownUsers(_)) => {
            invalid(page(json!({ "assign": e.to_string() })).await?)
        }
        Err(e) => Err(sim_error(e, SIMS)),
    }
}

pub async fn edit_sim_form(
    State(app): State<WebState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let sim = service::find(&app.core.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let (assignees, _) = service::assignees_of(&app.core.db, std::slice::from_ref(&sim))
        .await
        .map_err(|e| sim_error(e, SIMS))?
        .remove(&sim.id)
        .unwrap_or((Assignees::All, Vec::new()));
    let form = SimForm {
        number: sim.number.clone(),
        label: sim.label.clone(),
        status: sim.status.clone(),
        ..SimForm::default()
    }
    .with_caps(&sim)
    .with_assignees(&assignees);
    sim_form_page(&app, &admin, Some(&sim), &form, json!({})).await
}

/// Changes the label, status, assignees and caps; the number stays (an agent is configured with
/// it).
pub async fn update_sim(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, SimForm>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.core.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let page = |errors| sim_form_page(&app, &admin, Some(&sim), &form, errors);
    let Ok(status) = SimStatus::parse(&form.status) else {
        return invalid(page(json!({"status": "Choose active or inactive."})).await?);
    };
    let Ok(assignees) = form.assignees() else {
        return invalid(page(assign_error()).await?);
    };
    let caps = match form.caps() {
        Ok(caps) => caps,
        Err(e) => return invalid(page(json!({ "caps": e.to_string() })).await?),
    };
    let changes = SimChanges {
        label: Some(form.label.trim().to_owned()),
        status: Some(status),
        assignees,
        caps,
        ..SimChanges::default()
    };
    match service::update(
        &app.core.db,
        &app.core.sim_users,
        admin.session.user_id,
        id,
        changes,
    )
    .await
    {
        Ok(saved) => Ok(Flash::success(format!("SIM card {} saved.", saved.number)).redirect(SIMS)),
        Err(e @ SimError::UnknownUsers(_)) => {
            invalid(page(json!({ "assign": e.to_string() })).await?)
        }
        Err(e) => Err(sim_error(e, SIMS)),
    }
}

/// Shows a SIM's broker login once (after adding the SIM, or a new password).
fn credentials_page(
    app: &WebState,
    admin: &AdminUser,
    sim: &SimRow,
    credentials: Option<SimBrokerCredentials>,
    rotated: bool,
) -> Page {
    let names = smsgate_shared::queue::Names::new(&app.core.settings.queue.prefix);
    let broker = credentials.map(|c| {
        json!({
            "username": c.username,
            "password": c.password,
            "queue": names.sim_queue(sim.id),
            "exchange": names.edge_exchange(),
        })
    });
    Page::new("sim_credentials.html", admin.layout(app, "sims"))
        .with("sim", json!({"id": sim.id, "number": sim.number}))
        .with("broker", broker)
        .with("rotated", rotated)
}

/// A new broker password for the SIM's agent (a Pi replaced or stolen).
pub async fn rotate_broker_credentials(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Page, WebError> {
    let back = |e| sim_error(e, SIMS);
    let sim = service::find(&app.core.db, id).await.map_err(back)?;
    let credentials =
        service::rotate_credentials(&app.core.db, &app.core.sim_users, admin.session.user_id, id)
            .await
            .map_err(back)?;
    Ok(credentials_page(
        &app,
        &admin,
        &sim,
        Some(credentials),
        true,
    ))
}

pub async fn toggle_sim(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.core.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let status = if sim.status == SimStatus::Active.as_str() {
        SimStatus::Inactive
    } else {
        SimStatus::Active
    };
    let changes = SimChanges {
        status: Some(status),
        ..SimChanges::default()
    };
    let sim = service::update(
        &app.core.db,
        &app.core.sim_users,
        admin.session.user_id,
        id,
        changes,
    )
    .await
    .map_err(|e| sim_error(e, SIMS))?;
    let text = match status {
        SimStatus::Active => format!("SIM card {} enabled.", sim.number),
        SimStatus::Inactive => format!(
            "SIM card {} disabled: it takes no new sends; jobs already queued for it still go out.",
            sim.number
        ),
    };
    Ok(Flash::success(text).redirect(SIMS))
}

fn delete_page(app: &WebState, admin: &AdminUser, sim: &SimRow, queued: i64) -> Page {
    Page::new("sim_delete.html", admin.layout(app, "sims"))
        .with(
            "sim",
            json!({"id": sim.id, "number": sim.number, "label": sim.label}),
        )
        .with("queued", queued)
}

pub async fn confirm_delete(
    State(app): State<WebState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let back = |e| sim_error(e, SIMS);
    let (sim, queued) = tokio::try_join!(
        service::find(&app.core.db, id),
        service::queued_jobs(&app.core.db, id)
    )
    .map_err(back)?;
    Ok(delete_page(&app, &admin, &sim, queued))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    force: Option<String>,
}

/// Deletes the SIM. If jobs were queued for it since the confirmation page (or it was
/// never shown), the page comes back as a 409 with the count and the forced delete.
pub async fn delete_sim(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, DeleteForm>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.core.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let force = form.force.is_some_and(|f| f == "true");
    match service::delete(
        &app.core.db,
        &app.core.broker,
        &app.core.settings.queue,
        &app.core.sim_users,
        admin.session.user_id,
        id,
        force,
    )
    .await
    {
        Ok(deleted) => {
            let mut text = format!("SIM card {} deleted.", sim.number);
            if deleted.failed_recipients > 0 {
                text.push_str(&format!(
                    " {} queued SMS failed with it.",
                    deleted.failed_recipients
                ));
            }
            Ok(Flash::success(text).redirect(SIMS))
        }
        Err(SimError::HasQueuedJobs { .. }) => {
            let queued = service::queued_jobs(&app.core.db, id)
                .await
                .map_err(|e| sim_error(e, SIMS))?;
            Ok(delete_page(&app, &admin, &sim, queued)
                .status(StatusCode::CONFLICT)
                .into_response())
        }
        Err(e) => Err(sim_error(e, SIMS)),
    }
}
