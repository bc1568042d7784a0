//! How the API writes values on the wire, once for every route.

use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Timestamps are RFC 3339 in UTC with milliseconds (`2026-11-22T05:14:59.310Z`), as the
/// replaced SMS panel's clients parse them.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The replaced panel's success envelope, `{"success": true, "data": …, "message": …}`, which
/// the `/api/sms` and `/api/opt-outs` routes answer with.
#[derive(Serialize, ToSchema)]
pub(crate) struct Success<T> {
    success: bool,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

pub(crate) fn success<T>(data: T, message: Option<&'static str>) -> Json<Success<T>> {
    Json(Success {
        success: true,
        data,
        message,
    })
}
