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
    pub cancelled: i64,
    pub expired: i64,
    pub opted_out: i64,
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
                cancelled,
                expired,
                opted_out,
                recipients,
            } => Progress {
                message_id: *message_id,
                status: *status,
                total: *total,
                sent: *sent,
                failed: *failed,
                cancelled: *cancelled,
                expired: *expired,
                opted_out: *opted_out,
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
        cancelled: i64::from(message.cancelled_count),
        expired: i64::from(message.expired_count),
        opted_out: i64::from(message.opted_out_count),
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
/// While the message is not final and no event came for `QUIET`, a fresh snapshot is sent
/// too: events are best-effort (one published before this instance's queue was bound, or
/// during a broker blip, is gone), so a quiet stream must not leave a page stuck.
/// The caller has checked that the viewer may see the message.
pub async fn watch(
    hub: &LiveHub,
    db: PgPool,
    message_id: i64,
    page: PageRequest<i64>,
) -> Result<impl Stream<Item = Progress>, sqlx::Error> {
    let receiver = hub.subscribe();
    let first = snapshot(&db, message_id, page).await?;
    let finished = first.as_ref().is_some_and(|p| p.is_final);
    let updates = stream::unfold((receiver, finished), move |(mut receiver, finished)| {
        let db = db.clone();
        async move {
            loop {
                let next = if finished {
                    Ok(receiver.recv().await)
                } else {
                    tokio::time::timeout(QUIET, receiver.recv()).await
                };
                let progress = match next {
                    Ok(Ok(event)) if event.message_id() == message_id => {
                        Progress::from(event.as_ref() as &StatusEvent)
                    }
                    Ok(Ok(_)) => continue,
                    Ok(Err(RecvError::Closed)) => return None,
                    Ok(Err(RecvError::Lagged(_))) | Err(_) => {
                        match snapshot(&db, message_id, page).await {
                            Ok(Some(progress)) => progress,
                            _ => continue,
                        }
                    }
                };
                let finished = progress.is_final;
                return Some((progress, (receiver, finished)));
            }
        }
    });
    let closed = hub.closed();
    let open = hub.stream_opened();
    Ok(stream::iter(first)
        .chain(updates)
        // The guard lives in the stream, so the stream is counted until it is dropped.
        .take_until(async move {
            let _open = open;
            closed.cancelled_owned().await
        }))
}

/// How long a watcher of an unfinished message waits for an event before re-reading.
const QUIET: std::time::Duration = std::time::Duration::from_secs(3);
