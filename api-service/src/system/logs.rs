//! `GET /api/logs`: the audit log, shaped as the edge gateway's log entries (`action`,
//! `details`, `status`, `timestamp`, `sender_sim`), newest first and paginated. Admins read
//! everyone's entries, everyone else their own actions. `?action=sim` narrows to one
//! family of actions (`sim.create`, `sim.update`, …), `?action=sim.update` to one.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, PageNumber};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::admin::audit::AuditEntry;
use smsgate_core::system::repo::{self, LogFilter};

#[derive(OpenApi)]
#[openapi(paths(list))]
pub(crate) struct Api;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// 1-based.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<PageNumber>,
    /// 50 by default; at most 500 (larger values are clamped).
    per_page: Option<i64>,
    /// An action (`sim.update`) or a family of actions (`sim`).
    #[param(pattern = "^[a-z._]{1,64}$")]
    action: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LogList {
    logs: Vec<LogView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

#[derive(Serialize, ToSchema)]
struct LogView {
    id: i64,
    action: String,
    details: serde_json::Value,
    /// Every entry records a change that committed (it is written in the change's own
    /// transaction); the edge gateway's clients read this field.
    status: &'static str,
    timestamp: String,
    /// The SIM card's number for SIM changes, as the edge gateway logged it.
    sender_sim: Option<String>,
    /// Who did it: a username, or `null` for the system or a deleted user.
    actor: Option<String>,
    /// What it was done to: `user:alice`, `sim:3`, `message:42`.
    target: Option<String>,
}

impl From<AuditEntry> for LogView {
    fn from(entry: AuditEntry) -> LogView {
        let sender_sim = entry
            .action
            .starts_with("sim.")
            .then(|| entry.details.get("number").and_then(|n| n.as_str()))
            .flatten()
            .map(str::to_owned);
        LogView {
            id: entry.id,
            action: entry.action,
            details: entry.details,
            status: "success",
            timestamp: rfc3339(entry.created_at),
            sender_sim,
            actor: entry.actor,
            target: entry.target,
        }
    }
}

/// An action name or family as the log writes them: lower-case words joined by `.` or
/// `_`. Anything else can't match any entry, so it is refused rather than silently empty.
fn parse_action(raw: &str) -> Result<&str, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::validation(
            "INVALID_ACTION",
            "action must be an action name such as `sim.update`, or its family such as `sim`",
        ))
    }
}

/// The audit log, newest first (admins: everyone's; others: their own actions).
#[utoipa::path(
    get,
    path = "/api/logs",
    tag = "system",
    params(LogQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of entries", body = LogList),
        (status = 400, description = "`INVALID_QUERY`, `INVALID_ACTION`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<LogList>, ApiError> {
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(PageNumber::FIRST).get();
    let filter = LogFilter {
        actor: (!user.is_admin).then_some(user.id),
        action: query.action.as_deref().map(parse_action).transpose()?,
    };
    let (entries, total) =
        repo::logs(&app.core.db, &filter, per_page, (page - 1) * per_page).await?;
    Ok(Json(LogList {
        logs: entries.into_iter().map(LogView::from).collect(),
        total,
        pages: (total + per_page - 1) / per_page,
        current_page: page,
        per_page,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_filters_are_names_or_families_and_nothing_else() {
        assert_eq!(parse_action("sim").unwrap(), "sim");
        assert_eq!(parse_action("token.issue").unwrap(), "token.issue");
        assert_eq!(
            parse_action("dead_letter.abandon").unwrap(),
            "dead_letter.abandon"
        );
        for bad in ["", "sim%", "SIM", "sim.*", "a b", &"x".repeat(65)] {
            assert!(parse_action(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
