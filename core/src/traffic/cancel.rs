//! `POST /api/sms/{id}/cancel` and the panel's Cancel button.

use serde_json::json;
use smsgate_shared::domain::MessageStatus;
use sqlx::PgPool;
use tracing::info;

use super::repo;
use crate::admin::audit;
use crate::outbox::Outbox;
use crate::progress::{self, MessageTally};

/// Why a message was not cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such message, or not the caller's (alike, so others' messages stay unseen).
    #[error("no such message")]
    NotFound,
    /// Every recipient already has a result; there is nothing left to stop.
    #[error("the message already finished ({0})")]
    Finished(MessageStatus),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The answer for a message that is already cancelled (harmless: its counters) or
/// finished (refused); `None` while it can be cancelled.
async fn already_done(
    conn: &mut sqlx::PgConnection,
    message_id: i64,
    status: MessageStatus,
) -> Result<Option<Result<Cancelled, CancelError>>, sqlx::Error> {
    Ok(match status {
        MessageStatus::Cancelled => Some(Ok(Cancelled {
            message: repo::tally(conn, message_id).await?,
            recipients: 0,
        })),
        status if status.is_final() => Some(Err(CancelError::Finished(status))),
        _ => None,
    })
}

/// What the cancel did.
#[derive(Debug)]
pub struct Cancelled {
    /// The message's counters afterwards.
    pub message: MessageTally,
    /// Recipients this call cancelled; 0 when the message was cancelled before.
    pub recipients: i64,
}

/// Cancels a message: in one transaction, every recipient still `pending` (scheduled, not
/// yet released, or waiting in a queue) becomes `cancelled`, the message becomes
/// `cancelled` with its sent and failed counters as they are, and it leaves the release
/// queue. Once this returns, nothing more of it reaches a gateway except requests already
/// past the dispatchers' last look (`dispatcher/src/gate.rs`), whose results are still
/// recorded. A second cancel changes nothing and succeeds. `actor_is_admin` may cancel
/// anyone's message; others only their own.
#[tracing::instrument(name = "sms.cancel", skip_all, fields(message.id = message_id, actor.id = actor_id))]
pub async fn cancel_message(
    db: &PgPool,
    outbox: &Outbox,
    actor_id: i64,
    actor_is_admin: bool,
    message_id: i64,
) -> Result<Cancelled, CancelError> {
    let mut tx = db.begin().await?;
    let found = repo::find_message(&mut tx, message_id)
        .await?
        .filter(|m| actor_is_admin || m.user_id == actor_id)
        .ok_or(CancelError::NotFound)?;
    if let Some(done) = already_done(&mut tx, message_id, found.status).await? {
        return done;
    }
    // The release row, the recipients, then the message: the order in which the releaser's
    // expiry and the dispatchers' result writes lock them, so none of them deadlock.
    repo::leave_release_queue(&mut tx, message_id).await?;
    let recipients = repo::cancel_recipients(&mut tx, message_id).await?;
    let locked = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or(CancelError::NotFound)?;
    if let Some(done) = already_done(&mut tx, message_id, locked.status).await? {
        // Finished or cancelled meanwhile: dropping `tx` undoes the recipients' update.
        return done;
    }
    let message = repo::mark_cancelled(&mut tx, message_id, recipients).await?;
    if found.user_id != actor_id {
        audit::record(
            &mut *tx,
            Some(actor_id),
            "message.cancel",
            &format!("message:{message_id}"),
            json!({"recipients": recipients}),
        )
        .await?;
    }
    progress::enqueue_webhooks(&mut tx, std::slice::from_ref(&message)).await?;
    tx.commit().await?;
    info!(recipients, "message cancelled");
    outbox.announce(std::slice::from_ref(&message)).await;
    Ok(Cancelled {
        message,
        recipients,
    })
}
