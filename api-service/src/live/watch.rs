//! Watching one message: a snapshot from the database, then every status event for it.

use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use smsgate_shared::domain::{MessageStatus, RecipientStatus};
use smsgate_shared::queue::StatusEvent;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;

use super::LiveHub;
use crate::history::service::{self as history, PageRequest};

/// One recipient's state, as the detail page's table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientState {
    pub recipient_id: i64,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub error: Option<String>,
}

/// A message's progress: absolute figures, so applying any one of them is enough.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub message_id: i64,
    pub status: MessageStatus,
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    /// No further change is expected (the page may stop listening).
    #[serde(rename = "final")]
    pub is_final: bool,
    pub recipients: Vec<RecipientState>,
}

impl From<&StatusEvent> for Progress {
    fn from(event: &StatusEvent) -> Progress {
        match event {
            StatusEvent::MessageProgressV1 {
                message_id,
                status,
                total,
                sent,
                failed,
                recipients,
            } => Progress {
                message_id: *message_id,
                status: *status,
                total: *total,
                sent: *sent,
                failed: *failed,
                is_final: status.is_final(),
                recipients: recipients
                    .iter()
                    .map(|r| RecipientState {
                        recipient_id: r.recipient_id,
                        status: r.status,
                        attempts: r.attempts,
                        error: r.error.clone(),
                    })
                    .collect(),
            },
        }
    }
}

/// Recipients in a snapshot: the page the viewer has open.
const SNAPSHOT_RECIPIENTS: i64 = 50;

/// The message's state now, with the recipients of the open page.
pub async fn snapshot(
    db: &PgPool,
    message_id: i64,
    page: PageRequest<i64>,
) -> Result<Option<Progress>, sqlx::Error> {
    let Some(message) = crate::history::repo::find_message(db, message_id).await? else {
        return Ok(None);
    };
    let recipients = history::list_recipients(db, message_id, page, SNAPSHOT_RECIPIENTS).await?;
    Ok(Some(Progress {
        message_id,
        status: message.status,
        total: i64::from(message.total_count),
        sent: i64::from(message.sent_count),
        failed: i64::from(message.failed_count),
        is_final: message.status.is_final(),
        recipients: recipients
            .items
            .into_iter()
            .map(|r| RecipientState {
                recipient_id: r.id,
                status: r.status,
                attempts: r.attempts,
                error: r.last_error,
            })
            .collect(),
    }))
}

/// Progress of `message_id`: a snapshot first, then each event for it, until the server
/// shuts down. Subscribes before taking the snapshot, so no event falls between the two; a
/// watcher that falls behind the buffer gets a fresh snapshot instead of the missed events.
/// The caller has checked that the viewer may see the message.
pub async fn watch(
    hub: &LiveHub,
    db: PgPool,
    message_id: i64,
    page: PageRequest<i64>,
) -> Result<impl Stream<Item = Progress>, sqlx::Error> {
    let receiver = hub.subscribe();
    let first = snapshot(&db, message_id, page).await?;
    let updates = stream::unfold(receiver, move |mut receiver| {
        let db = db.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if event.message_id() == message_id => {
                        return Some((Progress::from(event.as_ref() as &StatusEvent), receiver));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(Some(progress)) = snapshot(&db, message_id, page).await {
                            return Some((progress, receiver));
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let closed = hub.closed();
    Ok(stream::iter(first)
        .chain(updates)
        .take_until(async move { closed.cancelled_owned().await }))
}
