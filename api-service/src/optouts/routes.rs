//! `/api/opt-outs`: list (paged, searchable), add, remove and import from CSV, on the
//! caller's own list (`scope=user`, the default) or the global one (`scope=global`: read
//! by everyone, changed by administrators). Numbers are answered in E.164.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::PhoneNumber;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PageNumber};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::optout::service::{self, Actor, DigitSearch, Entry, Scope};
use smsgate_core::optout::MAX_IMPORT_BYTES;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/opt-outs", get(list_opt_outs).post(add_opt_out))
        .route("/api/opt-outs/import", post(import_opt_outs))
        .route("/api/opt-outs/{number}", delete(remove_opt_out))
}

/// The API's success envelope, as `/api/sms` answers: `{"success": true, "data": …}`.
#[derive(Serialize)]
struct Success<T> {
    success: bool,
    data: T,
}

fn success<T>(data: T) -> Json<Success<T>> {
    Json(Success {
        success: true,
        data,
    })
}

fn actor(user: &AuthUser) -> Actor {
    Actor {
        user_id: user.id,
        is_admin: user.is_admin,
    }
}

fn parse_number(raw: &str, field: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse_dialable(raw)
        .map_err(|e| ApiError::validation("INVALID_PHONE_NUMBER", format!("{field}: {e}")))
}

#[derive(Serialize)]
struct OptOutView {
    phone_number: String,
    scope: &'static str,
    source: String,
    created_at: String,
}

impl From<Entry> for OptOutView {
    fn from(e: Entry) -> OptOutView {
        OptOutView {
            phone_number: e.phone,
            scope: e.scope.as_str(),
            source: e.source,
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    scope: Option<String>,
    q: Option<String>,
    page: Option<PageNumber>,
    per_page: Option<i64>,
}

#[derive(Serialize)]
struct OptOutList {
    opt_outs: Vec<OptOutView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

async fn list_opt_outs(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Success<OptOutList>>, ApiError> {
    let scope = Scope::parse(query.scope.as_deref())?;
    let search = DigitSearch::parse(query.q.as_deref().unwrap_or_default())?;
    let page = query.page.unwrap_or(PageNumber::FIRST).get();
    let per_page = query.per_page.unwrap_or(20).clamp(1, 1000);
    let listed = service::list(
        &app.core.db,
        &actor(&user),
        scope,
        search.as_ref(),
        page,
        per_page,
    )
    .await?;
    Ok(success(OptOutList {
        total: listed.total,
        pages: listed.pages(),
        current_page: listed.page,
        per_page: listed.per_page,
        opt_outs: listed.items.into_iter().map(OptOutView::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    phone_number: String,
    #[serde(default)]
    scope: Option<String>,
}

/// 201 when the number was added, 200 when it was listed already (repeating is harmless).
async fn add_opt_out(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<(StatusCode, Json<Success<OptOutView>>), ApiError> {
    let scope = Scope::parse(req.scope.as_deref())?;
    let phone = parse_number(&req.phone_number, "phone_number")?;
    let added = service::add(&app.core.db, &actor(&user), scope, &phone).await?;
    let status = if added.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, success(added.entry.into())))
}

#[derive(Deserialize)]
struct ScopeQuery {
    scope: Option<String>,
}

/// The `{number}` of the path, URL-decoded (`%2B85291234567` or `91234567`) and parsed.
struct NumberPath(PhoneNumber);

impl<S: Send + Sync> FromRequestParts<S> for NumberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("Opt-out"))?;
        parse_number(&raw, "number").map(NumberPath)
    }
}

async fn remove_opt_out(
    State(app): State<AppState>,
    user: AuthUser,
    NumberPath(phone): NumberPath,
    ApiQuery(query): ApiQuery<ScopeQuery>,
) -> Result<StatusCode, ApiError> {
    let scope = Scope::parse(query.scope.as_deref())?;
    service::remove(&app.core.db, &actor(&user), scope, &phone).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ImportQuery {
    scope: Option<String>,
    column: Option<String>,
}

#[derive(Serialize)]
struct ImportedView {
    added: u64,
    already_listed: u64,
}

/// The body is the CSV itself (`text/csv`), at most `MAX_IMPORT_BYTES`: read here with
/// its own bound rather than the API's general body limit, which is sized for bulk sends.
async fn import_opt_outs(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ImportQuery>,
    body: Body,
) -> Result<Json<Success<ImportedView>>, ApiError> {
    let scope = Scope::parse(query.scope.as_deref())?;
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        ApiError::validation(
            "INVALID_CSV",
            format!("line {line} is not UTF-8 text; save the file as UTF-8"),
        )
    })?;
    let imported = service::import_csv(
        &app.core.db,
        &actor(&user),
        scope,
        text,
        query.column.as_deref(),
    )
    .await?;
    Ok(success(ImportedView {
        added: imported.added,
        already_listed: imported.already_listed,
    }))
}
