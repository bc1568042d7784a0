//! The one login throttle, for the panel's `/login`, `POST /api/auth/login` and
//! `POST /api/auth`. Failures are counted per (username, client address) and per client
//! address in PostgreSQL, so every API replica shares the budget.
//!
//! An attempt is *charged* before its password is hashed: one statement increments both
//! counters and returns them, so parallel attempts cannot all pass a check made before any
//! failure is recorded. A refused attempt and one that never reached a verdict (busy,
//! database error) are refunded; a successful one clears its (username, address) counter and
//! refunds the address. There is no username-only budget: failures from one address must
//! never lock the account for everyone else.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::settings::LoginSettings;

const USER_ADDRESS: &str = "user_address";
const ADDRESS: &str = "address";

/// An attempt that passed the throttle and holds a charge on both budgets; settle it with
/// [`succeeded`], [`failed`] or [`undecided`].
#[derive(Debug)]
pub struct Charge {
    user_key: String,
    address: String,
}

/// The throttle's answer before the password is checked.
#[derive(Debug)]
pub enum Verdict {
    Allowed(Charge),
    /// Over a budget; nothing is hashed. The budget frees after `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

/// Charges one attempt to the budgets of (`username`, `address`) and of `address`.
#[tracing::instrument(name = "auth.throttle.charge", skip_all)]
pub async fn charge(
    db: &PgPool,
    settings: &LoginSettings,
    username: &str,
    address: &str,
) -> Result<Verdict, sqlx::Error> {
    let charge = Charge {
        user_key: user_key(username, address),
        address: address.to_owned(),
    };
    let rows: Vec<(String, i32, f64)> = sqlx::query_as(
        "INSERT INTO login_attempts AS a (scope, key, failures)
         VALUES ('user_address', $1, 1), ('address', $2, 1)
         ON CONFLICT (scope, key) DO UPDATE SET
           failures = CASE WHEN a.window_start <= now() - make_interval(secs => $3)
                           THEN 1 ELSE a.failures + 1 END,
           window_start = CASE WHEN a.window_start <= now() - make_interval(secs => $3)
                               THEN now() ELSE a.window_start END
         RETURNING scope, failures,
           GREATEST(0, EXTRACT(EPOCH FROM (window_start + make_interval(secs => $3) - now())))::float8",
    )
    .bind(&charge.user_key)
    .bind(&charge.address)
    .bind(settings.window.as_secs_f64())
    .fetch_all(db)
    .await?;
    let over = rows
        .iter()
        .filter(|(scope, failures, _)| {
            let limit = match scope.as_str() {
                USER_ADDRESS => settings.max_failures_per_user_address,
                _ => settings.max_failures_per_address,
            };
            i64::from(*failures) > i64::from(limit)
        })
        .map(|(_, _, secs)| *secs)
        .fold(None, |max: Option<f64>, secs| {
            Some(max.map_or(secs, |m| m.max(secs)))
        });
    match over {
        None => Ok(Verdict::Allowed(charge)),
        Some(secs) => {
            // A refused attempt checked nothing: it must not extend anyone's count.
            refund(db, &charge, true).await?;
            Ok(Verdict::Refused {
                retry_after: Duration::from_secs((secs.ceil() as u64).max(1)),
            })
        }
    }
}

/// The password was right: the (username, address) budget starts afresh and the address
/// gets its charge back (one good password must not reset a sprayer's count, though).
pub async fn succeeded(db: &PgPool, charge: Charge) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_attempts WHERE scope = $1 AND key = $2")
        .bind(USER_ADDRESS)
        .bind(&charge.user_key)
        .execute(db)
        .await?;
    refund_scope(db, ADDRESS, &charge.address).await
}

/// The password was wrong: the charge stays as the failure. Also sweeps windows long over.
pub async fn failed(
    db: &PgPool,
    settings: &LoginSettings,
    _charge: Charge,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM login_attempts WHERE window_start < now() - make_interval(secs => $1)",
    )
    .bind(settings.window.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// No verdict on the password (hashing busy, an error): both charges are returned.
pub async fn undecided(db: &PgPool, charge: Charge) -> Result<(), sqlx::Error> {
    refund(db, &charge, true).await
}

async fn refund(db: &PgPool, charge: &Charge, user_too: bool) -> Result<(), sqlx::Error> {
    if user_too {
        refund_scope(db, USER_ADDRESS, &charge.user_key).await?;
    }
    refund_scope(db, ADDRESS, &charge.address).await
}

async fn refund_scope(db: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE login_attempts SET failures = GREATEST(failures - 1, 0) WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

/// The (username, address) key: the address (never contains a space), a space, and a hash
/// of the lower-cased username, so case variants share a budget and a megabyte of username
/// is stored as 64 characters.
fn user_key(username: &str, address: &str) -> String {
    let digest = Sha256::digest(username.to_lowercase().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{address} {hex}")
}

/// The client's address, for the throttle and the audit log: the TCP peer, or behind our
/// proxy (`trust_proxy`) the address it reports. nginx overwrites `X-Real-IP` with the
/// peer it saw; failing that, the right-most `X-Forwarded-For` entry is the one our proxy
/// appended (entries to its left come from the client and may be forged).
pub fn client_address(headers: &HeaderMap, extensions: &Extensions, trust_proxy: bool) -> String {
    if trust_proxy {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let forwarded = header("x-real-ip")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .or_else(|| {
                header("x-forwarded-for").and_then(|v| {
                    v.rsplit(',')
                        .map(str::trim)
                        .find(|entry| !entry.is_empty())
                        .map(str::to_owned)
                })
            })
            .filter(|v| !v.contains(char::is_whitespace) && v.len() <= 64);
        if let Some(address) = forwarded {
            return address;
        }
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer() -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 4711))));
        extensions
    }

    #[test]
    fn proxy_headers_are_ignored_unless_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.7"));
        assert_eq!(client_address(&headers, &peer(), false), "10.0.0.9");
        assert_eq!(client_address(&headers, &peer(), true), "203.0.113.7");
    }

    #[test]
    fn the_right_most_forwarded_for_entry_is_taken_not_the_forgeable_left_most() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 198.51.100.23"),
        );
        assert_eq!(client_address(&headers, &peer(), true), "198.51.100.23");
        headers.insert("x-forwarded-for", HeaderValue::from_static("  "));
        assert_eq!(client_address(&headers, &peer(), true), "10.0.0.9");
    }

    #[test]
    fn usernames_share_a_budget_across_case_and_are_bounded_in_size() {
        assert_eq!(
            user_key("SMSadmin", "1.2.3.4"),
            user_key("smsadmin", "1.2.3.4")
        );
        assert_ne!(
            user_key("SMSadmin", "1.2.3.4"),
            user_key("SMSadmin", "1.2.3.5")
        );
        assert_eq!(
            user_key(&"x".repeat(1 << 20), "1.2.3.4").len(),
            "1.2.3.4 ".len() + 64
        );
    }
}
