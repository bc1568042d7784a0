//! `/sims`: the SIM cards of the edge gateway with their agents' state, for everyone signed
//! in; adding, editing, enabling/disabling and deleting them for admins. The rules (number
//! parsing, a taken number, the queued-jobs refusal and forced delete) live in
//! `sims::service`, shared with `/api/sim-cards`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use smsgate_shared::domain::PhoneNumber;
use smsgate_web::view::DisplayTz;
use smsgate_web::{Flash, Page, WebError};

use super::forms::{CsrfForm, NoFields};
use super::session::{AdminUser, PanelUser, SignedIn};
use super::{invalid, PanelId};
use crate::error::ApiError;
use crate::sims::repo::SimRow;
use crate::sims::service::{self, NewSim, SimChanges, SimStatus};
use crate::state::AppState;

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
}

impl SimItem {
    fn new(sim: SimRow, tz: &DisplayTz) -> SimItem {
        SimItem {
            online: service::is_online(&sim),
            id: sim.id,
            number: sim.number,
            label: sim.label,
            status: sim.status,
            last_heartbeat: sim.last_heartbeat_at.map(|t| tz.format(t)),
            last_heartbeat_iso: sim.last_heartbeat_at.map(|t| tz.machine(t)),
            signal: sim.signal,
            signal_percent: sim.signal.map(|s| s * 100 / 31),
            operator: sim.operator,
        }
    }
}

/// The panel's view of a SIM service error: a missing SIM is a 404 page, a refused action
/// goes back to `back` with the reason, a database failure is a 503 or 500.
pub(super) fn sim_error(err: ApiError, back: &str) -> WebError {
    match err {
        ApiError::NotFound(what) => WebError::NotFound(what),
        ApiError::Unavailable(e) => WebError::Unavailable(e),
        ApiError::Internal(e) => WebError::Internal(e),
        other => WebError::refused(back, other.to_string()),
    }
}

async fn sim_items(app: &AppState) -> Result<Vec<SimItem>, WebError> {
    let tz = app.settings.panel.display_tz;
    Ok(service::list(&app.db)
        .await
        .map_err(|e| sim_error(e, "/"))?
        .into_iter()
        .map(|sim| SimItem::new(sim, &tz))
        .collect())
}

pub async fn list_sims(State(app): State<AppState>, user: PanelUser) -> Result<Page, WebError> {
    let sims = sim_items(&app).await?;
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
    State(app): State<AppState>,
    _user: PanelUser,
) -> Result<Response, WebError> {
    let sims = sim_items(&app).await?;
    let updated = app.settings.panel.display_tz.format(chrono::Utc::now());
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SimStates { sims, updated }),
    )
        .into_response())
}

/// The add and edit form, as typed.
#[derive(Deserialize, Default)]
pub struct SimForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    status: String,
}

/// The add form (`sim` is `None`) or the edit form of `sim`, with its values and errors.
fn sim_form_page(
    app: &AppState,
    admin: &AdminUser,
    sim: Option<&SimRow>,
    form: &SimForm,
    errors: serde_json::Value,
) -> Page {
    Page::new("sim_form.html", admin.layout(app, "sims"))
        .with("sim", sim.map(|s| json!({"id": s.id, "number": s.number})))
        .with("number", &form.number)
        .with("label", &form.label)
        .with("status", &form.status)
        .with("errors", errors)
}

pub async fn new_sim_form(State(app): State<AppState>, admin: AdminUser) -> Page {
    let form = SimForm {
        status: SimStatus::Active.as_str().to_owned(),
        ..SimForm::default()
    };
    sim_form_page(&app, &admin, None, &form, json!({}))
}

pub async fn create_sim(
    State(app): State<AppState>,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, SimForm>,
) -> Result<Response, WebError> {
    let page = |errors| sim_form_page(&app, &admin, None, &form, errors);
    let number = match PhoneNumber::parse(&form.number) {
        Ok(number) => number,
        Err(e) => return invalid(page(json!({"number": e.to_string()}))),
    };
    let Ok(status) = SimStatus::parse(&form.status) else {
        return invalid(page(json!({"status": "Choose active or inactive."})));
    };
    let new = NewSim {
        number,
        label: form.label.trim().to_owned(),
        status,
    };
    match service::create(
        &app.db,
        &app.broker,
        &app.settings.queue,
        admin.session.user_id,
        new,
    )
    .await
    {
        Ok(sim) => Ok(Flash::success(format!("SIM card {} added.", sim.number)).redirect(SIMS)),
        Err(ApiError::Conflict { message, .. }) => invalid(page(json!({ "number": message }))),
        Err(e) => Err(sim_error(e, SIMS)),
    }
}

pub async fn edit_sim_form(
    State(app): State<AppState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let sim = service::find(&app.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let form = SimForm {
        number: sim.number.clone(),
        label: sim.label.clone(),
        status: sim.status.clone(),
    };
    Ok(sim_form_page(&app, &admin, Some(&sim), &form, json!({})))
}

/// Changes the label and status; the number stays (an agent is configured with it).
pub async fn update_sim(
    State(app): State<AppState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, SimForm>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let Ok(status) = SimStatus::parse(&form.status) else {
        let page = sim_form_page(
            &app,
            &admin,
            Some(&sim),
            &form,
            json!({"status": "Choose active or inactive."}),
        );
        return invalid(page);
    };
    let changes = SimChanges {
        label: Some(form.label.trim().to_owned()),
        status: Some(status),
        ..SimChanges::default()
    };
    let sim = service::update(&app.db, admin.session.user_id, id, changes)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    Ok(Flash::success(format!("SIM card {} saved.", sim.number)).redirect(SIMS))
}

pub async fn toggle_sim(
    State(app): State<AppState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.db, id)
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
    let sim = service::update(&app.db, admin.session.user_id, id, changes)
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

fn delete_page(app: &AppState, admin: &AdminUser, sim: &SimRow, queued: i64) -> Page {
    Page::new("sim_delete.html", admin.layout(app, "sims"))
        .with(
            "sim",
            json!({"id": sim.id, "number": sim.number, "label": sim.label}),
        )
        .with("queued", queued)
}

pub async fn confirm_delete(
    State(app): State<AppState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let back = |e| sim_error(e, SIMS);
    let (sim, queued) = tokio::try_join!(
        service::find(&app.db, id),
        service::queued_jobs(&app.db, id)
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
    State(app): State<AppState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, DeleteForm>,
) -> Result<Response, WebError> {
    let sim = service::find(&app.db, id)
        .await
        .map_err(|e| sim_error(e, SIMS))?;
    let force = form.force.is_some_and(|f| f == "true");
    match service::delete(
        &app.db,
        &app.broker,
        &app.settings.queue,
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
        Err(ApiError::Conflict { .. }) => {
            let queued = service::queued_jobs(&app.db, id)
                .await
                .map_err(|e| sim_error(e, SIMS))?;
            Ok(delete_page(&app, &admin, &sim, queued)
                .status(StatusCode::CONFLICT)
                .into_response())
        }
        Err(e) => Err(sim_error(e, SIMS)),
    }
}
