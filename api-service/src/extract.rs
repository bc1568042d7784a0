//! Extractors that reject with `ApiError`, so malformed requests get our error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use smsgate_core::params::positive_id;
pub use smsgate_core::params::PageNumber;

use crate::error::ApiError;
use smsgate_core::idempotency::{self, IdempotencyKey, IdempotencyKeyError};

/// `Json<T>` whose rejections are `ApiError`s: 400 for bad JSON, a missing field or a
/// wrong type (naming it), 413 for a body over the limit, 415 without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = data_error_text(&e.body_text());
            // A misspelt field (`sendat`) must not be ignored: the send it belonged to would
            // go out without it. serde names the field and the ones it expected.
            let code = if text.contains("unknown field") {
                "UNKNOWN_FIELD"
            } else {
                "VALIDATION_ERROR"
            };
            ApiError::validation(code, text)
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::validation("INVALID_JSON", "The request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::validation(
            "INVALID_CONTENT_TYPE",
            "Send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        other => ApiError::validation("INVALID_BODY", other.body_text()),
    }
}

/// serde's message says which field and why; drop axum's generic prefix.
fn data_error_text(text: &str) -> String {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    format!("Invalid request body: {detail}")
}

/// `Query<T>` whose rejections are 400 `ApiError`s.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::validation("INVALID_QUERY", e.body_text()))
    }
}

/// A numeric id in the path; anything else is a 404, as no such resource exists.
pub struct IdPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("Resource"))?;
        positive_id(&raw)
            .map(IdPath)
            .ok_or(ApiError::NotFound("Resource"))
    }
}

/// Two numeric ids in the path (`/api/webhooks/{id}/deliveries/{delivery_id}/…`); anything
/// else is a 404, as for [`IdPath`].
pub struct IdPair(pub i64, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((first, second)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("Resource"))?;
        match (positive_id(&first), positive_id(&second)) {
            (Some(a), Some(b)) => Ok(IdPair(a, b)),
            _ => Err(ApiError::NotFound("Resource")),
        }
    }
}

impl From<IdempotencyKeyError> for ApiError {
    fn from(e: IdempotencyKeyError) -> ApiError {
        ApiError::validation("INVALID_IDEMPOTENCY_KEY", e.to_string())
    }
}

/// The `Idempotency-Key` header, parsed: `Option<IdempotencyHeader>` in a handler is `None`
/// without the header, 400 for a bad one.
pub struct IdempotencyHeader(pub IdempotencyKey);

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let mut values = parts.headers.get_all(idempotency::HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::validation(
                "INVALID_IDEMPOTENCY_KEY",
                "send one Idempotency-Key header, not several",
            ));
        }
        let raw = value
            .to_str()
            .map_err(|_| IdempotencyKeyError::InvalidCharacter)?;
        Ok(Some(IdempotencyHeader(IdempotencyKey::parse(raw)?)))
    }
}
