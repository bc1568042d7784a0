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
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageNumber};
use crate::state::AppState;
use crate::wire::{rfc3339, success, Success};
use smsgate_core::optout::service::{self, Actor, DigitSearch, Entry, Scope};
use smsgate_core::optout::MAX_IMPORT_BYTES;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/opt-outs", get(list_opt_outs).post(add_opt_out))
        .route("/api/opt-outs/import", post(import_opt_outs))
        .route("/api/opt-outs/{number}", delete(remove_opt_out))
}

#[derive(OpenApi)]
#[openapi(paths(list_opt_outs, add_opt_out, remove_opt_out, import_opt_outs))]
pub(crate) struct Api;

/// The 400 codes of a `scope` or `q` the service refuses.
const SCOPE_400: &str = "`INVALID_QUERY`: `scope` is not `user` or `global`, or `q` is not digits";

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

#[derive(Serialize, ToSchema)]
struct OptOutView {
    /// E.164.
    #[schema(example = "+85291234567")]
    phone_number: String,
    /// `user` (the caller's own list) or `global`.
    #[schema(value_type = String, example = "user")]
    scope: &'static str,
    /// `api`, `admin` or `reply` (a STOP reply to a SIM).
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `user` (default) or `global`.
    scope: Option<String>,
    /// Digits the number contains.
    q: Option<String>,
    /// 1-based.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<PageNumber>,
    /// 20 by default; at most 1000 (larger values are clamped).
    per_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct OptOutList {
    opt_outs: Vec<OptOutView>,
    total: i64,
    pages: i64,
    current_page: i64,
    per_page: i64,
}

/// The caller's opt-out list, or the global one (readable by everyone: it blocks their sends).
#[utoipa::path(
    get,
    path = "/api/opt-outs",
    tag = "opt-outs",
    params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "One page of the list", body = Success<OptOutList>),
        (status = 400, description = SCOPE_400, body = ErrorBody),
    ),
)]
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
    Ok(success(
        OptOutList {
            total: listed.total,
            pages: listed.pages(),
            current_page: listed.page,
            per_page: listed.per_page,
            opt_outs: listed.items.into_iter().map(OptOutView::from).collect(),
        },
        None,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    /// E.164 or the Hong Kong 8-digit local form.
    #[schema(example = "91234567")]
    phone_number: String,
    /// `user` (default) or `global` (administrators only).
    #[serde(default)]
    scope: Option<String>,
}

/// 201 when the number was added, 200 when it was listed already (repeating is harmless).
#[utoipa::path(
    post,
    path = "/api/opt-outs",
    tag = "opt-outs",
    request_body = AddRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Added", body = Success<OptOutView>),
        (status = 200, description = "Listed already", body = Success<OptOutView>),
        (status = 400, description = "`INVALID_PHONE_NUMBER`, `INVALID_QUERY` (scope), `UNKNOWN_FIELD`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`: only administrators change the global list", body = ErrorBody),
    ),
)]
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
    Ok((status, success(added.entry.into(), None)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ScopeQuery {
    /// `user` (default) or `global` (administrators only).
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

/// Takes the number off the list: later sends to it go out again.
#[utoipa::path(
    delete,
    path = "/api/opt-outs/{number}",
    tag = "opt-outs",
    params(
        ("number" = String, Path, description = "E.164 (URL-encoded: `%2B85291234567`) or the local form"),
        ScopeQuery,
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`INVALID_PHONE_NUMBER`, `INVALID_QUERY` (scope)", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`: only administrators change the global list", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: the number is not on that list", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// `user` (default) or `global` (administrators only).
    scope: Option<String>,
    /// The header of the column to read; without it, the only column or the one named
    /// `phone_number`, `phone` or `number`.
    column: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ImportedView {
    added: u64,
    already_listed: u64,
}

/// All or nothing: one bad line and nothing is imported, the message names the lines.
#[utoipa::path(
    post,
    path = "/api/opt-outs/import",
    tag = "opt-outs",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "One number per line, or a column of a CSV with a header row"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Imported", body = Success<ImportedView>),
        (status = 400, description = "`INVALID_CSV` (the bad lines by number), `TOO_MANY_LINES`, `INVALID_QUERY`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`: only administrators change the global list", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
    ),
)]
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
    Ok(success(
        ImportedView {
            added: imported.added,
            already_listed: imported.already_listed,
        },
        None,
    ))
}
