//! Admin pages: users, dead letters and the audit log. The rules live in `admin::users`
//! and `admin::dead_letters`, shared with the JSON admin API.

use crate::{Flash, Page, WebError};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::errors::{db_error, history_error, user_error};
use super::forms::{CsrfForm, NoFields};
use super::session::{AdminUser, SignedIn};
use super::{older_url, BeforeQuery, PanelId};
use crate::state::WebState;
use smsgate_core::admin::password::PASSWORD_RULES;
use smsgate_core::admin::users::{
    self, LimitsChange, NewUser, Patch, SendingLimits, UserAdminError, UserChange,
};
use smsgate_core::admin::{audit, dead_letters};

const USERS: &str = "/admin/users";

#[derive(Serialize)]
struct UserRow {
    id: i64,
    username: String,
    is_admin: bool,
    is_active: bool,
    must_change_password: bool,
    tokens: i64,
    created: String,
    created_iso: String,
}

pub async fn list_users(State(app): State<WebState>, admin: AdminUser) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let rows: Vec<UserRow> = users::list_users(&app.core.db)
        .await
        .map_err(|e| user_error(e, "/"))?
        .into_iter()
        .map(|u| UserRow {
            id: u.id,
            username: u.username,
            is_admin: u.is_admin,
            is_active: u.is_active,
            must_change_password: u.must_change_password,
            tokens: u.tokens,
            created: tz.format(u.created_at),
            created_iso: tz.machine(u.created_at),
        })
        .collect();
    Ok(Page::new("admin/users.html", admin.layout(&app, "users")).with("users", rows))
}

fn new_user_page(
    app: &WebState,
    admin: &AdminUser,
    username: &str,
    is_admin: bool,
    errors: serde_json::Value,
) -> Page {
    Page::new("admin/user_new.html", admin.layout(app, "users"))
        .with("username", username)
        .with("is_admin", is_admin)
        .with("rules", PASSWORD_RULES)
        .with("errors", errors)
}

pub async fn new_user_form(State(app): State<WebState>, admin: AdminUser) -> Page {
    new_user_page(&app, &admin, "", false, json!({}))
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    is_admin: Option<String>,
}

pub async fn create_user(
    State(app): State<WebState>,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, NewUserForm>,
) -> Result<Response, WebError> {
    let is_admin = form.is_admin.is_some();
    let invalid = |errors| {
        Ok(
            new_user_page(&app, &admin, &form.username, is_admin, errors)
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response(),
        )
    };
    if form.password != form.confirm {
        return invalid(json!({"confirm": "The two passwords differ."}));
    }
    let new = NewUser {
        username: form.username.clone(),
        password: form.password.clone(),
        is_admin,
    };
    match users::create_user(
        &app.core.db,
        &app.core.passwords,
        admin.session.user_id,
        new,
    )
    .await
    {
        Ok(user) => Ok(Flash::success(format!("User {} created.", user.username)).redirect(USERS)),
        Err(UserAdminError::Invalid { field, message }) => invalid(json!({ field: message })),
        Err(UserAdminError::UsernameTaken) => {
            invalid(json!({"username": "This username is already taken."}))
        }
        Err(e) => Err(user_error(e, USERS)),
    }
}

fn password_page(
    app: &WebState,
    admin: &AdminUser,
    target: &users::UserSummary,
    errors: serde_json::Value,
) -> Page {
    Page::new("admin/user_password.html", admin.layout(app, "users"))
        .with(
            "target",
            json!({"id": target.id, "username": target.username}),
        )
        .with("rules", PASSWORD_RULES)
        .with("errors", errors)
}

pub async fn password_form(
    State(app): State<WebState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    Ok(password_page(&app, &admin, &target, json!({})))
}

#[derive(Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn set_password(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, SetPasswordForm>,
) -> Result<Response, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    let invalid = |errors| {
        Ok(password_page(&app, &admin, &target, errors)
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .into_response())
    };
    if form.password != form.confirm {
        return invalid(json!({"confirm": "The two passwords differ."}));
    }
    let change = UserChange {
        password: Some(form.password),
        ..Default::default()
    };
    match users::update_user(
        &app.core.db,
        &app.core.passwords,
        admin.session.user_id,
        id,
        change,
    )
    .await
    {
        Ok(user) => {
            Ok(Flash::success(format!("Password of {} changed.", user.username)).redirect(USERS))
        }
        Err(UserAdminError::Invalid { message, .. }) => invalid(json!({"password": message})),
        Err(e) => Err(user_error(e, USERS)),
    }
}

/// The sending-limit fields as the form names them, with their labels and hints.
const LIMIT_FIELDS: [(&str, &str, &str); 5] = [
    (
        "daily_recipient_limit",
        "Recipients a day (UTC)",
        "Empty: unlimited. 0 stops all sending.",
    ),
    (
        "requests_per_second",
        "Send requests a second",
        "Empty: unlimited. Counted across every API instance.",
    ),
    (
        "high_priority_per_minute",
        "High-priority recipients a minute",
        "0 forbids priority high; the default is 60.",
    ),
    (
        "share_weight",
        "Share weight (1 to 100)",
        "The user's share of the gateway against others sending at the same priority; the default is 1.",
    ),
    (
        "default_valid_for",
        "Default validity (seconds)",
        "Given to sends that name no validity; at most 35 days (3024000 seconds). Empty: none.",
    ),
];

/// The limits form: `values` and `errors` are keyed by field name.
fn limits_page(
    app: &WebState,
    admin: &AdminUser,
    target: &users::UserSummary,
    values: &LimitsForm,
    errors: &serde_json::Value,
) -> Page {
    let fields: Vec<serde_json::Value> = LIMIT_FIELDS
        .iter()
        .map(|(name, label, hint)| {
            json!({
                "name": name,
                "label": label,
                "hint": hint,
                "value": values.get(name),
                "error": errors.get(*name),
            })
        })
        .collect();
    Page::new("admin/user_limits.html", admin.layout(app, "users"))
        .with(
            "target",
            json!({"id": target.id, "username": target.username}),
        )
        .with("fields", fields)
}

/// The limits form as posted: text, so that an empty field (unlimited) and a typo can be
/// told apart and shown back as typed.
#[derive(Deserialize, Default)]
pub struct LimitsForm {
    #[serde(default)]
    daily_recipient_limit: String,
    #[serde(default)]
    requests_per_second: String,
    #[serde(default)]
    high_priority_per_minute: String,
    #[serde(default)]
    share_weight: String,
    #[serde(default)]
    default_valid_for: String,
}

impl LimitsForm {
    fn from_limits(limits: &SendingLimits) -> LimitsForm {
        let text = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
        LimitsForm {
            daily_recipient_limit: text(limits.daily_recipient_limit),
            requests_per_second: text(limits.requests_per_second),
            high_priority_per_minute: limits.high_priority_per_minute.to_string(),
            share_weight: limits.share_weight.to_string(),
            default_valid_for: text(limits.default_valid_for_secs),
        }
    }

    fn get(&self, name: &str) -> &str {
        match name {
            "daily_recipient_limit" => &self.daily_recipient_limit,
            "requests_per_second" => &self.requests_per_second,
            "high_priority_per_minute" => &self.high_priority_per_minute,
            "share_weight" => &self.share_weight,
            _ => &self.default_valid_for,
        }
    }

    /// Every field is set from the form (the form shows them all): empty clears, a whole
    /// number sets; anything else is reported on its field. The ranges are core's to check.
    fn parse(&self) -> Result<LimitsChange, serde_json::Value> {
        let field = |name: &str| -> Result<Patch<i64>, serde_json::Value> {
            let raw = self.get(name).trim();
            if raw.is_empty() {
                return Ok(Patch::Clear);
            }
            raw.parse()
                .map(Patch::Set)
                .map_err(|_| json!({ name: "Give a whole number, or leave it empty." }))
        };
        Ok(LimitsChange {
            daily_recipient_limit: field("daily_recipient_limit")?,
            requests_per_second: field("requests_per_second")?,
            high_priority_per_minute: field("high_priority_per_minute")?,
            share_weight: field("share_weight")?,
            default_valid_for: field("default_valid_for")?,
        })
    }
}

pub async fn limits_form(
    State(app): State<WebState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    let values = LimitsForm::from_limits(&target.limits());
    Ok(limits_page(&app, &admin, &target, &values, &json!({})))
}

pub async fn set_limits(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, form }: CsrfForm<AdminUser, LimitsForm>,
) -> Result<Response, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    let invalid = |errors: serde_json::Value| {
        Ok(limits_page(&app, &admin, &target, &form, &errors)
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .into_response())
    };
    let limits = match form.parse() {
        Ok(limits) => limits,
        Err(errors) => return invalid(errors),
    };
    let change = UserChange {
        limits,
        ..Default::default()
    };
    match users::update_user(
        &app.core.db,
        &app.core.passwords,
        admin.session.user_id,
        id,
        change,
    )
    .await
    {
        Ok(user) => Ok(
            Flash::success(format!("Sending limits of {} saved.", user.username)).redirect(USERS),
        ),
        Err(UserAdminError::Invalid { field, message }) => invalid(json!({ field: message })),
        Err(e) => Err(user_error(e, USERS)),
    }
}

pub async fn toggle_user(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    let change = UserChange {
        is_active: Some(!target.is_active),
        ..Default::default()
    };
    let user = users::update_user(
        &app.core.db,
        &app.core.passwords,
        admin.session.user_id,
        id,
        change,
    )
    .await
    .map_err(|e| user_error(e, USERS))?;
    let text = if user.is_active {
        format!("{} enabled.", user.username)
    } else {
        format!(
            "{} disabled; their sessions and API tokens stopped working.",
            user.username
        )
    };
    Ok(Flash::success(text).redirect(USERS))
}

pub async fn confirm_delete(
    State(app): State<WebState>,
    admin: AdminUser,
    PanelId(id): PanelId,
) -> Result<Response, WebError> {
    if id == admin.session.user_id {
        return Err(user_error(UserAdminError::SelfAction("delete"), USERS));
    }
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    let messages = users::message_count(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    Ok(
        Page::new("admin/user_delete.html", admin.layout(&app, "users"))
            .with(
                "target",
                json!({"id": target.id, "username": target.username}),
            )
            .with("message_count", messages)
            .into_response(),
    )
}

pub async fn delete_user(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    let target = users::find_user(&app.core.db, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    users::delete_user(&app.core.db, admin.session.user_id, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    Ok(Flash::success(format!("User {} deleted.", target.username)).redirect(USERS))
}

/// Answers with the token page directly rather than a redirect: the token exists only in
/// this response.
pub async fn regenerate_token(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Page, WebError> {
    let (target, token) = users::regenerate_token(&app.core.db, admin.session.user_id, id)
        .await
        .map_err(|e| user_error(e, USERS))?;
    Ok(Page::new("admin/token.html", admin.layout(&app, "users"))
        .with(
            "target",
            json!({"id": target.id, "username": target.username}),
        )
        .with("token", token))
}

const LIST_PAGE: i64 = 50;

#[derive(Serialize)]
struct DeadLetterRow {
    id: i64,
    message_id: i64,
    phone: String,
    reason: String,
    attempts: i32,
    created: String,
    created_iso: String,
}

pub async fn list_dead_letters(
    State(app): State<WebState>,
    admin: AdminUser,
    Query(query): Query<BeforeQuery>,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let letters = dead_letters::list_open(&app.core.db, query.before, LIST_PAGE)
        .await
        .map_err(db_error)?;
    let older = older_url(DEAD, &letters, LIST_PAGE, |d| d.id);
    let rows: Vec<DeadLetterRow> = letters
        .into_iter()
        .map(|d| DeadLetterRow {
            id: d.id,
            message_id: d.message_id,
            phone: d.phone,
            reason: d.reason,
            attempts: d.attempts,
            created: tz.format(d.created_at),
            created_iso: tz.machine(d.created_at),
        })
        .collect();
    Ok(
        Page::new("admin/dead_letters.html", admin.layout(&app, "dead"))
            .with("letters", rows)
            .with("older_url", older),
    )
}

const DEAD: &str = "/admin/dead-letters";

pub async fn retry_dead_letter(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    dead_letters::retry(&app.core.db, &app.core.outbox, admin.session.user_id, id)
        .await
        .map_err(|e| history_error(e, DEAD))?;
    Ok(Flash::success("Queued again.").redirect(DEAD))
}

pub async fn retry_all_dead_letters(
    State(app): State<WebState>,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    let outcome = dead_letters::retry_all(&app.core.db, &app.core.outbox, admin.session.user_id)
        .await
        .map_err(|e| history_error(e, DEAD))?;
    let mut text = format!("{} recipient(s) queued again.", outcome.requeued);
    if outcome.skipped > 0 {
        text.push_str(&format!(
            " {} left: their messages are still being sent.",
            outcome.skipped
        ));
    }
    Ok(Flash::success(text).redirect(DEAD))
}

pub async fn abandon_dead_letter(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user: admin, .. }: CsrfForm<AdminUser, NoFields>,
) -> Result<Response, WebError> {
    dead_letters::abandon(&app.core.db, admin.session.user_id, id)
        .await
        .map_err(|e| history_error(e, DEAD))?;
    Ok(Flash::success("Dead letter abandoned; the recipient stays failed.").redirect(DEAD))
}

#[derive(Serialize)]
struct AuditRow {
    at: String,
    at_iso: String,
    actor: String,
    action: String,
    target: String,
    details: String,
}

pub async fn list_audit(
    State(app): State<WebState>,
    admin: AdminUser,
    Query(query): Query<BeforeQuery>,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let entries = audit::list(&app.core.db, query.before, LIST_PAGE)
        .await
        .map_err(db_error)?;
    let older = older_url("/admin/audit", &entries, LIST_PAGE, |e| e.id);
    let rows: Vec<AuditRow> = entries
        .into_iter()
        .map(|e| AuditRow {
            at: tz.format(e.created_at),
            at_iso: tz.machine(e.created_at),
            actor: e.actor.unwrap_or_else(|| "system".to_owned()),
            action: e.action,
            target: e.target.unwrap_or_default(),
            details: e.details.to_string(),
        })
        .collect();
    Ok(Page::new("admin/audit.html", admin.layout(&app, "audit"))
        .with("entries", rows)
        .with("older_url", older))
}
