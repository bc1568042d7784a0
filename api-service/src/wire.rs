//! How the API writes values on the wire, once for every route.

use chrono::{DateTime, SecondsFormat, Utc};

/// Timestamps are RFC 3339 in UTC with milliseconds (`2026-11-22T05:14:59.310Z`), as the
/// replaced SMS panel's clients parse them.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
