//! The JSON admin API for automation, admins only: `GET/POST /api/admin/users`,
//! `PUT/DELETE /api/admin/users/{id}`, `POST /api/admin/users/{id}/tokens`. Same services,
//! rules and audit log as the panel's user pages. The PUT also sets a user's sending limits
//! (issue #14): a limit left out is kept, `null` clears it, a number sets it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, IdPath};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::admin::users::{
    self, LimitsChange, NewUser, Patch, UserAdminError, UserChange, UserSummary,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users).post(create_user))
        .route(
            "/api/admin/users/{id}",
            put(update_user).delete(delete_user),
        )
        .route("/api/admin/users/{id}/tokens", post(issue_token))
}

#[derive(OpenApi)]
#[openapi(paths(list_users, create_user, update_user, delete_user, issue_token))]
pub(crate) struct Api;

#[derive(Serialize, ToSchema)]
struct UserView {
    id: i64,
    username: String,
    is_admin: bool,
    is_active: bool,
    must_change_password: bool,
    api_tokens: i64,
    created_at: String,
    /// Recipients a UTC day; `null`: unlimited.
    daily_recipient_limit: Option<i32>,
    /// Send requests a second; `null`: unlimited.
    requests_per_second: Option<i32>,
    /// Recipients a minute with priority `high`; 0 forbids `high`.
    high_priority_per_minute: i32,
    /// Share of the gateway against users of the same priority, 1 to 100.
    share_weight: i32,
    /// Seconds of validity given to sends that name none; `null`: none.
    default_valid_for: Option<i32>,
}

impl From<UserSummary> for UserView {
    fn from(u: UserSummary) -> UserView {
        UserView {
            id: u.id,
            username: u.username,
            is_admin: u.is_admin,
            is_active: u.is_active,
            must_change_password: u.must_change_password,
            api_tokens: u.tokens,
            created_at: rfc3339(u.created_at),
            daily_recipient_limit: u.daily_recipient_limit,
            requests_per_second: u.requests_per_second,
            high_priority_per_minute: u.high_priority_per_minute,
            share_weight: u.share_weight,
            default_valid_for: u.default_valid_for_secs,
        }
    }
}

impl From<UserAdminError> for ApiError {
    fn from(err: UserAdminError) -> ApiError {
        match err {
            UserAdminError::Invalid { field, message } => {
                ApiError::validation("VALIDATION_ERROR", format!("{field}: {message}"))
            }
            UserAdminError::UsernameTaken => ApiError::Conflict {
                code: "USERNAME_TAKEN",
                message: "The username is already taken".into(),
            },
            UserAdminError::NotFound => ApiError::NotFound("User"),
            UserAdminError::SelfAction(_) => ApiError::Forbidden {
                code: "SELF_ACTION",
                message: "Administrators cannot delete, disable or demote themselves",
            },
            UserAdminError::LastAdmin => ApiError::Conflict {
                code: "LAST_ADMIN",
                message: "This change would leave no active administrator".into(),
            },
            UserAdminError::WrongCurrentPassword => {
                ApiError::validation("WRONG_PASSWORD", "The current password is wrong")
            }
            UserAdminError::Database(e) => e.into(),
            UserAdminError::Busy => ApiError::Busy,
            UserAdminError::TooManyAttempts { retry_after } => {
                ApiError::TooManyAttempts { retry_after }
            }
            UserAdminError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct UserList {
    users: Vec<UserView>,
}

#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Every user", body = UserList),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
    ),
)]
async fn list_users(
    State(app): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<UserList>, ApiError> {
    let users = users::list_users(&app.core.db).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    username: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
}

#[utoipa::path(
    post,
    path = "/api/admin/users",
    tag = "admin",
    request_body = CreateUserRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "`VALIDATION_ERROR`, `UNKNOWN_FIELD`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 409, description = "`USERNAME_TAKEN`", body = ErrorBody),
    ),
)]
async fn create_user(
    State(app): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let new = NewUser {
        username: req.username,
        password: req.password,
        is_admin: req.is_admin,
    };
    let user = users::create_user(&app.core.db, &app.core.passwords, admin.id, new).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    password: Option<String>,
    #[serde(alias = "is_active")]
    active: Option<bool>,
    #[serde(alias = "is_admin")]
    admin: Option<bool>,
    /// A limit left out is kept, `null` clears it, a number sets it.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    daily_recipient_limit: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    requests_per_second: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    high_priority_per_minute: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    share_weight: Patch<i64>,
    /// Seconds.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    default_valid_for: Patch<i64>,
}

/// Changes a user: password, active, admin, and sending limits.
#[utoipa::path(
    put,
    path = "/api/admin/users/{id}",
    tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "The user id")),
    request_body = UpdateUserRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user as changed", body = UserView),
        (status = 400, description = "`VALIDATION_ERROR`, `UNKNOWN_FIELD`", body = ErrorBody),
        (status = 403, description = "`ADMIN_REQUIRED`, `SELF_ACTION`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`LAST_ADMIN`", body = ErrorBody),
    ),
)]
async fn update_user(
    State(app): State<AppState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    let change = UserChange {
        password: req.password,
        is_active: req.active,
        is_admin: req.admin,
        limits: LimitsChange {
            daily_recipient_limit: req.daily_recipient_limit,
            requests_per_second: req.requests_per_second,
            high_priority_per_minute: req.high_priority_per_minute,
            share_weight: req.share_weight,
            default_valid_for: req.default_valid_for,
        },
    };
    let user = users::update_user(&app.core.db, &app.core.passwords, admin.id, id, change).await?;
    Ok(Json(user.into()))
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "The user id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`ADMIN_REQUIRED`, `SELF_ACTION`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`LAST_ADMIN`", body = ErrorBody),
    ),
)]
async fn delete_user(
    State(app): State<AppState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    users::delete_user(&app.core.db, admin.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct IssuedToken {
    user_id: i64,
    /// Shown once: only its hash is stored.
    token: String,
}

/// A new API token for the user, shown once; the user's earlier tokens are revoked.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/tokens",
    tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "The user id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Issued", body = IssuedToken),
        (status = 403, description = "`ADMIN_REQUIRED`", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ErrorBody),
    ),
)]
async fn issue_token(
    State(app): State<AppState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let (user, token) = users::regenerate_token(&app.core.db, admin.id, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            user_id: user.id,
            token,
        }),
    ))
}
