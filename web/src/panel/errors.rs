//! How the panel shows each domain's errors: a missing thing is a 404 page, a refused
//! action goes back to the page it came from with the reason as a flash, a database failure
//! is a 503 or 500 page. One mapping per service error, shared by every page that calls it.

use crate::WebError;
use smsgate_core::admin::users::UserAdminError;
use smsgate_core::history::service::HistoryError;
use smsgate_core::sims::service::SimError;
use smsgate_core::webhooks::service::WebhookError;

/// A database failure as the panel shows it: a pool that cannot hand out a connection is a
/// retryable 503, anything else a 500.
pub(crate) fn db_error(err: sqlx::Error) -> WebError {
    if smsgate_core::db::is_unavailable(&err) {
        WebError::Unavailable(err.into())
    } else {
        WebError::Internal(err.into())
    }
}

/// Maps the errors of the user services that a form does not show beside a field.
pub(crate) fn user_error(err: UserAdminError, back_to: &str) -> WebError {
    match err {
        UserAdminError::Database(e) => db_error(e),
        UserAdminError::Internal(e) => WebError::Internal(e),
        UserAdminError::NotFound => WebError::NotFound("User"),
        UserAdminError::LastAdmin => {
            WebError::refused(back_to, "Refused: this is the last active administrator.")
        }
        UserAdminError::SelfAction(what) => {
            WebError::refused(back_to, format!("You cannot {what} yourself."))
        }
        other => WebError::refused(back_to, other.to_string()),
    }
}

pub(crate) fn history_error(err: HistoryError, back: &str) -> WebError {
    match err {
        HistoryError::NotFound => WebError::NotFound("Message"),
        HistoryError::NotRetryable(why) => WebError::refused(back, why),
        HistoryError::Database(e) => db_error(e),
    }
}

/// The panel's view of a SIM service error: a missing SIM is a 404 page, a refused action
/// goes back to `back` with the reason, a database failure is a 503 or 500.
pub(crate) fn sim_error(err: SimError, back: &str) -> WebError {
    match err {
        SimError::NotFound => WebError::NotFound("SIM card"),
        SimError::Database(e) => db_error(e),
        other => WebError::refused(back, other.to_string()),
    }
}

/// The panel's view of a webhook service error: a missing (or someone else's) webhook is a
/// 404 page, a refused action goes back to `back` with the reason.
pub(crate) fn webhook_error(err: WebhookError, back: &str) -> WebError {
    match err {
        WebhookError::NotFound => WebError::NotFound("Webhook"),
        WebhookError::Database(e) => db_error(e),
        refused => WebError::refused(back, refused.to_string()),
    }
}
