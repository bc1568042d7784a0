//! `ApiError`: the one error type of the HTTP API, rendered once as
//! `{"error": {"code": "MACHINE_CODE", "message": "human text"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use smsgate_core::history::{ExportError, FilterError};
use smsgate_core::optout::{CsvError, OptOutError};
use smsgate_core::quota::QuotaError;
use smsgate_core::sims::service::SimError;
pub use smsgate_core::sms::InvalidEntry;
use smsgate_core::sms::{OptionsError, Problems, RouteError, SendError};

/// Everything a request can fail with. Internal causes are logged here, once, inside the
/// request's span, and never shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { code: &'static str, message: String },
    /// The first bad entries of a recipient list and how many there were.
    #[error("{}", invalid_recipients_message(.0))]
    InvalidRecipients(Problems<InvalidEntry>),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("authentication required")]
    Unauthorized {
        code: &'static str,
        message: &'static str,
    },
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: &'static str,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is valid but clashes with the current state (a taken number, an
    /// inactive SIM, a SIM that still has queued jobs).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The `Idempotency-Key` was used before with a different request.
    #[error("this Idempotency-Key was already used with a different request; use a new key for a new request")]
    IdempotencyMismatch,
    /// Another request with the same `Idempotency-Key` committed first and its message can
    /// no longer be read (it is normally replayed instead).
    #[error(
        "another request with this Idempotency-Key was accepted first; retry to get its answer"
    )]
    IdempotencyKeyTaken,
    /// The login throttle refused the attempt; the budget frees after `retry_after`.
    #[error("too many failed login attempts; try again later")]
    TooManyAttempts { retry_after: std::time::Duration },
    /// A quota or allowance of the user refused the request (issue #14); the same request
    /// may succeed after `retry_after`.
    #[error("{message}")]
    Throttled {
        code: &'static str,
        message: String,
        retry_after: std::time::Duration,
    },
    /// Well-formed, but the user's limits can never admit it as it is.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// A bounded resource (password hashing) stayed busy: retry in a second.
    #[error("the server is busy checking passwords; retry in a moment")]
    Busy,
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn invalid_recipients_message(problems: &Problems<InvalidEntry>) -> String {
    let listed = problems.shown().len();
    if problems.total() > listed {
        format!(
            "{} invalid recipients; the first {listed} are listed",
            problems.total()
        )
    } else {
        format!("{} invalid recipient(s)", problems.total())
    }
}

impl ApiError {
    pub fn validation(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Validation {
            code,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            // The replaced panel's clients expect 400 for every validation failure.
            ApiError::Validation { .. } | ApiError::InvalidRecipients(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::IdempotencyKeyTaken => StatusCode::CONFLICT,
            // The request is well-formed but contradicts the key's earlier use (as Stripe
            // and the IETF idempotency-key draft answer it).
            ApiError::IdempotencyMismatch | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyAttempts { .. } | ApiError::Throttled { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Busy | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { code, .. } => code,
            ApiError::InvalidRecipients(_) => "INVALID_RECIPIENTS",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::Unauthorized { code, .. } | ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict { code, .. }
            | ApiError::Throttled { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::IdempotencyMismatch => "IDEMPOTENCY_KEY_REUSED",
            ApiError::IdempotencyKeyTaken => "IDEMPOTENCY_KEY_IN_USE",
            ApiError::TooManyAttempts { .. } => "TOO_MANY_ATTEMPTS",
            ApiError::Busy => "BUSY",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Unauthorized { message, .. } | ApiError::Forbidden { message, .. } => {
                (*message).to_owned()
            }
            ApiError::Unavailable(_) => {
                "Service temporarily unavailable, please retry shortly".to_owned()
            }
            ApiError::Internal(_) => "Internal server error".to_owned(),
            ApiError::NotFound(what) => format!("{what} not found"),
            other => other.to_string(),
        }
    }
}

/// How long clients should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

/// Every error answer of the API: `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail<'a> {
    /// A stable machine-readable code (`INVALID_PHONE_NUMBER`, `NOT_FOUND`, …); each
    /// operation lists the ones it can give.
    #[schema(value_type = String)]
    code: &'a str,
    /// Human text; may change between versions.
    message: String,
    /// `INVALID_RECIPIENTS` only: the first bad entries (at most 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<InvalidEntry>>)]
    details: Option<&'a [InvalidEntry]>,
    /// How many entries were invalid; `details` lists at most the first 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid_count: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable")
            }
            _ => {}
        }
        let (details, invalid_count) = match &self {
            ApiError::InvalidRecipients(problems) => {
                (Some(problems.shown()), Some(problems.total()))
            }
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                details,
                invalid_count,
            },
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        let retry_after = match &self {
            ApiError::Unavailable(_) => Some(HeaderValue::from_static(RETRY_AFTER_SECS)),
            // A hashing slot frees within milliseconds; a second is plenty.
            ApiError::Busy => Some(HeaderValue::from_static("1")),
            ApiError::TooManyAttempts { retry_after } => {
                Some(HeaderValue::from(retry_after.as_secs().max(1)))
            }
            ApiError::Throttled { retry_after, .. } => {
                Some(HeaderValue::from(whole_seconds_up(*retry_after)))
            }
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Retry-After in whole seconds, rounded up (retrying early is refused again) and at least
/// 1 (0 would invite a busy loop).
fn whole_seconds_up(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl From<QuotaError> for ApiError {
    fn from(err: QuotaError) -> ApiError {
        let message = err.to_string();
        match err {
            QuotaError::DailyLimit { retry_after, .. } => ApiError::Throttled {
                code: "QUOTA_EXCEEDED",
                message: format!("{message}; it resets at midnight UTC"),
                retry_after,
            },
            QuotaError::RateLimited { retry_after } => ApiError::Throttled {
                code: "RATE_LIMITED",
                message: format!("{message}; retry in {} s", whole_seconds_up(retry_after)),
                retry_after,
            },
            QuotaError::HighPriorityAllowance { retry_after } => ApiError::Throttled {
                code: "PRIORITY_ALLOWANCE_EXCEEDED",
                message: format!(
                    "{message}; retry in {} s, or send with priority normal",
                    whole_seconds_up(retry_after)
                ),
                retry_after,
            },
            QuotaError::HighPriorityTooLarge { .. } => ApiError::Unprocessable {
                code: "PRIORITY_ALLOWANCE_TOO_SMALL",
                message,
            },
            QuotaError::Database(e) => e.into(),
        }
    }
}

impl From<SimError> for ApiError {
    fn from(err: SimError) -> ApiError {
        let message = err.to_string();
        match err {
            SimError::NotFound => ApiError::NotFound("SIM card"),
            SimError::InvalidStatus => ApiError::validation("INVALID_SIM_STATUS", message),
            SimError::UnknownUsers(_) => ApiError::validation("UNKNOWN_USERS", message),
            SimError::InvalidCap(_) => ApiError::validation("INVALID_SIM_CAP", message),
            SimError::NumberTaken => ApiError::Conflict {
                code: "SIM_NUMBER_TAKEN",
                message,
            },
            SimError::HasQueuedJobs { .. } => ApiError::Conflict {
                code: "SIM_HAS_QUEUED_JOBS",
                message,
            },
            SimError::BrokerUsers(e) => ApiError::Unavailable(e.into()),
            SimError::Database(e) => e.into(),
        }
    }
}

impl From<OptionsError> for ApiError {
    fn from(err: OptionsError) -> ApiError {
        let code = match err.field() {
            "priority" => "INVALID_PRIORITY",
            "send_at" => "INVALID_SEND_AT",
            _ => "INVALID_VALIDITY",
        };
        ApiError::validation(code, err.to_string())
    }
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> ApiError {
        let code = match err.field() {
            "fallback" => "INVALID_FALLBACK",
            _ => "INVALID_ROUTE",
        };
        ApiError::validation(code, err.to_string())
    }
}

impl From<SendError> for ApiError {
    fn from(err: SendError) -> ApiError {
        let message = err.to_string();
        match err {
            SendError::UnknownSim(_) => ApiError::validation("UNKNOWN_SIM_CARD", message),
            SendError::SimInactive(_) => ApiError::Conflict {
                code: "SIM_CARD_INACTIVE",
                message,
            },
            SendError::KeyTaken => ApiError::IdempotencyKeyTaken,
            SendError::KeyReused { .. } => ApiError::IdempotencyMismatch,
            SendError::Quota(e) => e.into(),
            SendError::Database(e) => e.into(),
        }
    }
}

impl From<OptOutError> for ApiError {
    fn from(err: OptOutError) -> ApiError {
        let message = err.to_string();
        match err {
            OptOutError::NotAdmin => ApiError::Forbidden {
                code: "ADMIN_REQUIRED",
                message: "Only administrators may change the global opt-out list",
            },
            OptOutError::NotListed => ApiError::NotFound("Opt-out"),
            OptOutError::BadScope | OptOutError::BadSearch => {
                ApiError::validation("INVALID_QUERY", message)
            }
            OptOutError::Csv(CsvError::TooManyLines) => {
                ApiError::validation("TOO_MANY_LINES", message)
            }
            OptOutError::Csv(_) => ApiError::validation("INVALID_CSV", message),
            OptOutError::Database(e) => e.into(),
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(err: FilterError) -> ApiError {
        let code = match err {
            FilterError::Status { .. } => "INVALID_STATUS",
            FilterError::Date { .. } => "INVALID_DATE",
            FilterError::Range { .. } => "INVALID_DATE_RANGE",
            FilterError::Recipient(_) => "INVALID_PHONE_NUMBER",
        };
        ApiError::validation(code, err.to_string())
    }
}

impl From<ExportError> for ApiError {
    fn from(err: ExportError) -> ApiError {
        match err {
            ExportError::Database(e) => e.into(),
            ExportError::Csv(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// A pool that cannot hand out a connection means PostgreSQL is down or saturated:
    /// that is a 503 the client may retry, not a 500.
    fn from(err: sqlx::Error) -> ApiError {
        if smsgate_core::db::is_unavailable(&err) {
            ApiError::Unavailable(err.into())
        } else {
            ApiError::Internal(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(err: ApiError) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn validation_errors_are_400_in_the_panel_format() {
        let (status, body, _) = body_of(ApiError::validation(
            "EMPTY_CONTENT",
            "content must not be empty",
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "EMPTY_CONTENT");
        assert_eq!(body["error"]["message"], "content must not be empty");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, body, _) =
            body_of(ApiError::Internal(anyhow::anyhow!("password=hunter2"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn unavailable_carries_retry_after() {
        let (status, body, retry) = body_of(ApiError::Unavailable(anyhow::anyhow!("down"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(retry.unwrap(), "5");
    }

    #[tokio::test]
    async fn a_throttled_login_is_429_with_the_seconds_until_the_window_frees() {
        let (status, body, retry) = body_of(ApiError::TooManyAttempts {
            retry_after: std::time::Duration::from_secs(540),
        })
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "TOO_MANY_ATTEMPTS");
        assert_eq!(retry.unwrap(), "540");
    }

    #[tokio::test]
    async fn busy_password_hashing_is_a_quick_503_with_retry_after_one_second() {
        let (status, body, retry) = body_of(ApiError::Busy).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "BUSY");
        assert_eq!(retry.unwrap(), "1");
    }

    #[tokio::test]
    async fn a_daily_quota_is_429_until_midnight_and_names_the_limit() {
        let (status, body, retry) = body_of(ApiError::from(QuotaError::DailyLimit {
            limit: 1000,
            used: 998,
            retry_after: std::time::Duration::from_millis(3_600_000 + 1),
        }))
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "QUOTA_EXCEEDED");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("1000 recipients"), "{message}");
        assert!(message.contains("998 already sent"), "{message}");
        assert_eq!(retry.unwrap(), "3601", "rounded up");
    }

    #[tokio::test]
    async fn a_rate_limit_is_429_with_at_least_one_second_to_wait() {
        let (status, body, retry) = body_of(ApiError::from(QuotaError::RateLimited {
            retry_after: std::time::Duration::from_millis(120),
        }))
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a second"));
        assert_eq!(retry.unwrap(), "1");
        let (_, _, retry) = body_of(ApiError::from(QuotaError::RateLimited {
            retry_after: std::time::Duration::ZERO,
        }))
        .await;
        assert_eq!(retry.unwrap(), "1", "never 0");
    }

    #[tokio::test]
    async fn a_used_up_high_allowance_is_429_and_suggests_normal_priority() {
        let (status, body, retry) = body_of(ApiError::from(QuotaError::HighPriorityAllowance {
            retry_after: std::time::Duration::from_secs(6),
        }))
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "PRIORITY_ALLOWANCE_EXCEEDED");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("recipients a minute"), "{message}");
        assert!(message.contains("priority normal"), "{message}");
        assert_eq!(retry.unwrap(), "6");
    }

    #[tokio::test]
    async fn a_high_request_larger_than_the_allowance_is_422_naming_it() {
        let (status, body, retry) = body_of(ApiError::from(QuotaError::HighPriorityTooLarge {
            allowance: 60,
        }))
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "PRIORITY_ALLOWANCE_TOO_SMALL");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 60 recipients"));
        assert!(retry.is_none(), "retrying the same request cannot help");
        let (_, body, _) = body_of(ApiError::from(QuotaError::HighPriorityTooLarge {
            allowance: 0,
        }))
        .await;
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not send with priority high"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        use std::time::Duration;
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(999)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(2001)), 3);
    }

    #[tokio::test]
    async fn invalid_recipients_list_every_entry() {
        let mut entries = Problems::default();
        for entry in [
            InvalidEntry {
                index: 1,
                value: "1234-5678".into(),
                reason: "bad".into(),
            },
            InvalidEntry {
                index: 3,
                value: "x".into(),
                reason: "bad".into(),
            },
        ] {
            entries.push(entry);
        }
        let (status, body, _) = body_of(ApiError::InvalidRecipients(entries)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);
        assert_eq!(body["error"]["invalid_count"], 2);
        assert_eq!(body["error"]["details"][1]["index"], 3);
    }
}
