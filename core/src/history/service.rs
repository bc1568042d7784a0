//! History services: who may see what, keyset cursors, and requeueing failed recipients.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use smsgate_shared::domain::{MessageStatus, PhoneNumber};
use sqlx::PgPool;
use tracing::info;

use super::repo::{
    self, BacklogMinute, Direction, HistoryRow, MessageDetailRow, RecipientRow, ScheduledRow,
    TrafficMinute,
};
use crate::admin::audit;
use crate::outbox::Outbox;
use crate::settings::CoreSettings;
use crate::sms::repo::{self as sms_repo, MessageRow};
use crate::sms::service::Page;

/// Who is looking: staff see their own messages, admins everyone's.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: i64,
    pub is_admin: bool,
}

impl Viewer {
    /// Only `user_id`'s own messages, whatever their role: the JSON API's history, where
    /// admins list their own messages like everyone else.
    pub fn own(user_id: i64) -> Viewer {
        Viewer {
            user_id,
            is_admin: false,
        }
    }

    /// The user whose messages a listing is limited to: always the viewer for staff; for
    /// admins the chosen user, or everyone.
    pub(crate) fn scope(&self, chosen: Option<i64>) -> Option<i64> {
        if self.is_admin {
            chosen
        } else {
            Some(self.user_id)
        }
    }
}

/// History filters, parsed at the edge: the number is a `PhoneNumber`, dates are UTC
/// instants (the panel converts the display zone's days).
#[derive(Debug, Default, Clone)]
pub struct HistoryFilter {
    pub user: Option<i64>,
    pub text: Option<String>,
    pub phone: Option<PhoneNumber>,
    pub status: Option<MessageStatus>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A position in the `(created_at DESC, id DESC)` order, written `<micros>.<id>` in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at.timestamp_micros(), self.id)
    }

    /// `None` for anything malformed: a bad cursor shows the first page, not an error.
    pub fn parse(raw: &str) -> Option<Cursor> {
        let (micros, id) = raw.split_once('.')?;
        let at = Utc.timestamp_micros(micros.parse().ok()?).single()?;
        Some(Cursor {
            at,
            id: id.parse().ok()?,
        })
    }

    fn of(row: &HistoryRow) -> Cursor {
        Cursor {
            at: row.created_at,
            id: row.id,
        }
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy)]
pub enum PageRequest<C> {
    First,
    /// The page after the cursor in reading order.
    After(C),
    /// The page before the cursor in reading order.
    Before(C),
}

/// A page and the cursors of its neighbours (`None`: there is none).
#[derive(Debug)]
pub struct HistoryPage {
    pub items: Vec<HistoryRow>,
    pub newer: Option<Cursor>,
    pub older: Option<Cursor>,
}

/// One page of the messages `viewer` may see that match `filter`, newest first.
#[tracing::instrument(name = "history.search", skip_all, fields(user.id = viewer.user_id))]
pub async fn search(
    db: &PgPool,
    viewer: Viewer,
    filter: &HistoryFilter,
    page: PageRequest<Cursor>,
    limit: i64,
) -> Result<HistoryPage, sqlx::Error> {
    let sql_filter = filter.to_sql(viewer);
    let (cursor, direction) = match page {
        PageRequest::First => (None, Direction::Older),
        PageRequest::After(c) => (Some((c.at, c.id)), Direction::Older),
        PageRequest::Before(c) => (Some((c.at, c.id)), Direction::Newer),
    };
    let mut items = repo::search_messages(db, &sql_filter, cursor, direction, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(match page {
        PageRequest::First => HistoryPage {
            older: if more {
                items.last().map(Cursor::of)
            } else {
                None
            },
            newer: None,
            items,
        },
        PageRequest::After(_) => HistoryPage {
            older: if more {
                items.last().map(Cursor::of)
            } else {
                None
            },
            newer: items.first().map(Cursor::of),
            items,
        },
        PageRequest::Before(_) => {
            items.reverse();
            HistoryPage {
                newer: if more {
                    items.first().map(Cursor::of)
                } else {
                    None
                },
                older: items.last().map(Cursor::of),
                items,
            }
        }
    })
}

/// Page `page` (from 1) of the messages `viewer` may see that match `filter`, newest first,
/// with their total: the JSON API's numbered list. Without filters the total is the
/// per-user count kept by triggers; with them it is counted.
#[tracing::instrument(name = "history.list_page", skip_all, fields(user.id = viewer.user_id))]
pub async fn list_page(
    db: &PgPool,
    viewer: Viewer,
    filter: &HistoryFilter,
    page: i64,
    per_page: i64,
) -> Result<Page<MessageRow>, sqlx::Error> {
    let sql = filter.to_sql(viewer);
    let count = async {
        match sql.user_id {
            Some(user_id) if filter.is_empty() => sms_repo::count_messages(db, user_id).await,
            _ => repo::count_matching(db, &sql).await,
        }
    };
    let page = Page::fetch(
        page,
        per_page,
        |limit, offset| repo::list_matching(db, &sql, repo::START, limit, offset),
        count,
    )
    .await?;
    Ok(Page {
        items: page
            .items
            .iter()
            .map(MessageDetailRow::as_message_row)
            .collect(),
        total: page.total,
        page: page.page,
        per_page: page.per_page,
    })
}

/// Recipient figures of today's messages (sent, failed, pending), for the dashboard.
pub async fn counts_since(
    db: &PgPool,
    viewer: Viewer,
    since: DateTime<Utc>,
) -> Result<(i64, i64, i64), sqlx::Error> {
    repo::counts_since(db, since, viewer.scope(None)).await
}

pub type MessageDetail = MessageDetailRow;

/// The message if `viewer` may see it. Someone else's message is `None`, exactly like a
/// missing one, so ids of other users' messages cannot be probed.
pub async fn find_message(
    db: &PgPool,
    viewer: Viewer,
    id: i64,
) -> Result<Option<MessageDetail>, sqlx::Error> {
    let message = repo::find_message(db, id).await?;
    Ok(message.filter(|m| viewer.is_admin || m.user_id == viewer.user_id))
}

/// When the message is estimated to be done (`traffic::message_eta`); `None` once it is
/// final, for a SIM route, or when no rate is known.
pub async fn message_eta(
    db: &PgPool,
    settings: &CoreSettings,
    message: &MessageDetail,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    crate::traffic::message_eta(db, settings, &message.as_message_row()).await
}

impl MessageDetailRow {
    /// The same message as the sending side reads it, for the estimates that take one.
    pub fn as_message_row(&self) -> MessageRow {
        MessageRow {
            id: self.id,
            user_id: self.user_id,
            content: self.content.clone(),
            encoding: self.encoding.clone(),
            segments: self.segments,
            status: self.status,
            total_count: self.total_count,
            sent_count: self.sent_count,
            failed_count: self.failed_count,
            cancelled_count: self.cancelled_count,
            expired_count: self.expired_count,
            opted_out_count: self.opted_out_count,
            priority: self.priority,
            route: self.route.clone(),
            send_at: self.send_at,
            valid_until: self.valid_until,
            created_at: self.created_at,
            completed_at: self.completed_at,
        }
    }

    /// Recipients with no result yet.
    pub fn pending(&self) -> i32 {
        (self.total_count
            - self.sent_count
            - self.failed_count
            - self.cancelled_count
            - self.expired_count
            - self.opted_out_count)
            .max(0)
    }
}

/// A position in the scheduled list's `(send_at, id)` order; written like [`Cursor`].
pub type ScheduledCursor = Cursor;

/// A page of scheduled messages, soonest first, and the cursors of its neighbours.
#[derive(Debug)]
pub struct ScheduledPage {
    pub items: Vec<ScheduledRow>,
    /// The page before (sooner), if any.
    pub sooner: Option<ScheduledCursor>,
    /// The page after (later), if any.
    pub later: Option<ScheduledCursor>,
}

/// One page of the scheduled messages `viewer` may see (staff: their own; admins:
/// everyone's), in the order they will be released.
#[tracing::instrument(name = "history.scheduled", skip_all, fields(user.id = viewer.user_id))]
pub async fn list_scheduled(
    db: &PgPool,
    viewer: Viewer,
    page: PageRequest<ScheduledCursor>,
    limit: i64,
) -> Result<ScheduledPage, sqlx::Error> {
    let of = |row: &ScheduledRow| Cursor {
        at: row.send_at,
        id: row.id,
    };
    let (cursor, direction) = match page {
        PageRequest::First => (None, Direction::Older),
        PageRequest::After(c) => (Some((c.at, c.id)), Direction::Older),
        PageRequest::Before(c) => (Some((c.at, c.id)), Direction::Newer),
    };
    let mut items =
        repo::list_scheduled(db, viewer.scope(None), cursor, direction, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    if let PageRequest::Before(_) = page {
        items.reverse();
        return Ok(ScheduledPage {
            sooner: if more { items.first().map(of) } else { None },
            later: items.last().map(of),
            items,
        });
    }
    Ok(ScheduledPage {
        later: if more { items.last().map(of) } else { None },
        sooner: match page {
            PageRequest::First => None,
            _ => items.first().map(of),
        },
        items,
    })
}

/// What the dashboard's traffic chart draws: gateway results per minute and the backlog,
/// both since `since`.
#[derive(Debug, Default)]
pub struct TrafficHistory {
    pub since: DateTime<Utc>,
    pub results: Vec<TrafficMinute>,
    pub backlog: Vec<BacklogMinute>,
}

/// The whole system's traffic since `since` (it is one gateway, shared by everyone).
pub async fn traffic_since(
    db: &PgPool,
    since: DateTime<Utc>,
) -> Result<TrafficHistory, sqlx::Error> {
    let (results, backlog) = tokio::try_join!(
        repo::traffic_since(db, since),
        repo::backlog_since(db, since)
    )?;
    Ok(TrafficHistory {
        since,
        results,
        backlog,
    })
}

/// A page of recipients in id order and the cursors of its neighbours.
#[derive(Debug)]
pub struct RecipientPage {
    pub items: Vec<RecipientRow>,
    pub prev: Option<i64>,
    pub next: Option<i64>,
}

pub async fn list_recipients(
    db: &PgPool,
    message_id: i64,
    page: PageRequest<i64>,
    limit: i64,
) -> Result<RecipientPage, sqlx::Error> {
    let (cursor, direction) = match page {
        PageRequest::First => (None, Direction::Older),
        PageRequest::After(id) => (Some(id), Direction::Older),
        PageRequest::Before(id) => (Some(id), Direction::Newer),
    };
    let mut items = repo::list_recipients(db, message_id, cursor, direction, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(match page {
        PageRequest::First => RecipientPage {
            next: if more {
                items.last().map(|r| r.id)
            } else {
                None
            },
            prev: None,
            items,
        },
        PageRequest::After(_) => RecipientPage {
            next: if more {
                items.last().map(|r| r.id)
            } else {
                None
            },
            prev: items.first().map(|r| r.id),
            items,
        },
        PageRequest::Before(_) => {
            items.reverse();
            RecipientPage {
                prev: if more {
                    items.first().map(|r| r.id)
                } else {
                    None
                },
                next: items.last().map(|r| r.id),
                items,
            }
        }
    })
}

/// Why failed recipients could not be sent again.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("message not found")]
    NotFound,
    #[error("{0}")]
    NotRetryable(&'static str),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// What a retry put back in the queue.
#[derive(Debug)]
pub struct Requeued {
    pub recipients: usize,
}

/// "Retry failed recipients" on a message the viewer may see.
pub async fn retry_failed(
    db: &PgPool,
    outbox: &Outbox,
    viewer: Viewer,
    message_id: i64,
) -> Result<Requeued, HistoryError> {
    find_message(db, viewer, message_id)
        .await?
        .ok_or(HistoryError::NotFound)?;
    requeue_failed(db, outbox, viewer.user_id, message_id, None).await
}

/// Puts failed recipients of a finished message back to `pending` and the message back in
/// the release queue, so the usual guarantees hold (if the broker is down, the releaser
/// publishes them once it is back).
///
/// Only finished messages: while any recipient is still pending its job may be in a retry
/// queue, and the releaser (which publishes every pending recipient of a message put back)
/// could then send that one twice.
#[tracing::instrument(name = "history.requeue_failed", skip_all, fields(message.id = message_id, actor.id = actor_id))]
pub async fn requeue_failed(
    db: &PgPool,
    outbox: &Outbox,
    actor_id: i64,
    message_id: i64,
    only: Option<&[i64]>,
) -> Result<Requeued, HistoryError> {
    let mut tx = db.begin().await?;
    let locked = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or(HistoryError::NotFound)?;
    let status = locked.status;
    let (total, sent, failed) = (locked.total_count, locked.sent_count, locked.failed_count);
    if !status.is_final() || status == MessageStatus::Cancelled {
        return Err(HistoryError::NotRetryable(
            "The message is still being sent; retry once it has finished.",
        ));
    }
    let reset = repo::reset_failed(&mut tx, message_id, only).await?;
    if reset.is_empty() {
        return Err(HistoryError::NotRetryable(
            "There are no failed recipients to retry.",
        ));
    }
    let retried = reset.len() as i32;
    let new_status = MessageStatus::from_counts(
        i64::from(total),
        i64::from(sent),
        i64::from(failed - retried),
    );
    repo::reopen_message(&mut tx, message_id, retried, new_status).await?;
    let ids: Vec<i64> = reset.iter().map(|(id, _)| *id).collect();
    repo::resolve_dead_letters(&mut tx, &ids).await?;
    audit::record(
        &mut *tx,
        Some(actor_id),
        "message.retry",
        &format!("message:{message_id}"),
        json!({"recipients": retried}),
    )
    .await?;
    tx.commit().await?;

    info!(recipients = retried, "requeued failed recipients");
    outbox.wake();
    Ok(Requeued {
        recipients: retried as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_none() {
        let c = Cursor {
            at: Utc.timestamp_micros(1_763_800_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        assert_eq!(Cursor::parse("x.1"), None);
        assert_eq!(Cursor::parse("12"), None);
    }

    #[test]
    fn staff_are_scoped_to_themselves_and_admins_to_their_choice() {
        let staff = Viewer {
            user_id: 7,
            is_admin: false,
        };
        assert_eq!(staff.scope(Some(1)), Some(7));
        let admin = Viewer {
            user_id: 1,
            is_admin: true,
        };
        assert_eq!(admin.scope(None), None);
        assert_eq!(admin.scope(Some(7)), Some(7));
    }
}
