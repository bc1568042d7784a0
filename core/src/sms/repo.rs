//! SQL for messages and recipients. One function per statement; bulk writes use COPY or
//! UNNEST, never a statement per row.

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{
    MessageBody, MessageStatus, PhoneNumber, Priority, RecipientStatus, Tally,
};

use super::options::SendOptions;
use sqlx::{PgConnection, PgPool};

/// A message as the API shows it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub user_id: i64,
    pub content: String,
    pub encoding: String,
    pub segments: i32,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub expired_count: i32,
    pub opted_out_count: i32,
    pub priority: Priority,
    /// `hkt` or `sim.<id>`.
    pub route: String,
    pub send_at: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl MessageRow {
    pub fn tally(&self) -> Tally {
        Tally {
            total: i64::from(self.total_count),
            sent: i64::from(self.sent_count),
            failed: i64::from(self.failed_count),
            cancelled: i64::from(self.cancelled_count),
            expired: i64::from(self.expired_count),
            opted_out: i64::from(self.opted_out_count),
        }
    }
}

/// One recipient of a message.
#[derive(Debug, Clone)]
pub struct RecipientRow {
    pub id: i64,
    pub phone: String,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Inserts the message, its row in the release queue and all its recipients, in the
/// caller's transaction, with the send's options: a `send_at` makes it `scheduled` (due
/// then), and its validity is the one asked for or the sender's default, counted from when
/// it is due. Returns the message's id and time only: the releaser reads the recipients
/// back (for a 100,000-recipient bulk, returning their ids and numbers cost a tenth of the
/// insert and a 2 MB answer, all on the way to the 202).
///
/// The recipients go in with COPY rather than `INSERT … SELECT unnest(…)`: COPY fills heap
/// pages a batch of rows at a time (one WAL record per page instead of per row), which took
/// the heap part of a 100,000-row insert from ~360 to ~190 ms (psql, docs/benchmarks.md).
pub async fn insert_message_with_recipients(
    tx: &mut PgConnection,
    user_id: i64,
    send: &NewMessage<'_>,
    phones: &[PhoneNumber],
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let message = insert_message(tx, user_id, send, phones.len()).await?;
    copy_recipients(tx, message.0, phones).await?;
    Ok(message)
}

/// A message's own fields, as every accept statement stores them.
pub struct NewMessage<'a> {
    pub body: &'a MessageBody,
    /// `hkt` or `sim.<id>`.
    pub route: &'a str,
    pub options: &'a SendOptions,
    /// The accepting request's trace context, for its jobs.
    pub traceparent: Option<String>,
}

/// Inserts the message and its row in the release queue (its recipients are the caller's).
pub async fn insert_message(
    tx: &mut PgConnection,
    user_id: i64,
    send: &NewMessage<'_>,
    recipients: usize,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let (valid_for, valid_until) = send.options.validity.as_columns();
    let status = send.options.initial_status();
    let message = sqlx::query!(
        "WITH due AS (
             SELECT COALESCE($7::timestamptz, now()) AS at,
                    (SELECT default_valid_for_secs FROM users WHERE id = $1) AS default_secs),
         m AS (
             INSERT INTO messages (user_id, content, encoding, segments, total_count, route,
                                   priority, status, send_at, valid_until)
             SELECT $1, $2, $3, $4, $5, $6, $8, $9, $7,
                    COALESCE($10::timestamptz,
                             due.at + make_interval(secs => COALESCE($11::float8, due.default_secs)))
             FROM due
             RETURNING id, created_at, user_id, route, priority, valid_until),
         o AS (
             INSERT INTO message_outbox (message_id, user_id, route, priority, due_at, unreleased,
                                         valid_until, traceparent)
             SELECT m.id, m.user_id, m.route, m.priority, due.at, $5, m.valid_until, $12
             FROM m, due)
         SELECT id, created_at FROM m",
        user_id,
        send.body.as_str(),
        send.body.encoding().as_str(),
        send.body.segments() as i32,
        recipients as i32,
        send.route,
        send.options.send_at,
        send.options.priority.as_str(),
        status.as_str(),
        valid_until,
        valid_for,
        send.traceparent
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((message.id, message.created_at))
}

/// Rows per COPY data message: PostgreSQL starts inserting while the rest is on its way.
const COPY_CHUNK_ROWS: usize = 8_192;

/// Streams `(message_id, phone)` rows into `recipients` in COPY's text format. A
/// [`PhoneNumber`] is `+` and digits, so no value needs escaping.
async fn copy_recipients(
    tx: &mut PgConnection,
    message_id: i64,
    phones: &[PhoneNumber],
) -> Result<(), sqlx::Error> {
    let mut copy = tx
        .copy_in_raw("COPY recipients (message_id, phone) FROM STDIN")
        .await?;
    let prefix = format!("{message_id}\t");
    let mut buffer = String::new();
    for chunk in phones.chunks(COPY_CHUNK_ROWS) {
        buffer.clear();
        for phone in chunk {
            buffer.push_str(&prefix);
            buffer.push_str(phone.as_str());
            buffer.push('\n');
        }
        if let Err(e) = copy.send(buffer.as_bytes()).await {
            // Leave the connection usable: it goes back to the pool after the rollback.
            let _ = copy.abort("sending recipients failed").await;
            return Err(e);
        }
    }
    copy.finish().await?;
    Ok(())
}

/// One small send of a batch, as [`insert_small_messages`] takes it.
pub struct SmallMessage<'a> {
    pub user_id: i64,
    /// The API token it came with, checked for revocation; `None` for a JWT.
    pub token_id: Option<i64>,
    pub body: &'a MessageBody,
    pub phones: Vec<&'a str>,
    /// The accepting request's trace context, for its jobs.
    pub traceparent: Option<String>,
}

/// Why the statement refused to store a small send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Disabled,
    /// The user has quotas: the send must be charged in a transaction of its own
    /// (`service::accept`), which this shared statement does not do.
    Limited,
    UnknownUser,
    RevokedToken,
}

/// What became of one small send, in the order they were given.
#[derive(Debug)]
pub enum SmallOutcome {
    Stored { message_id: i64 },
    Refused(Refusal),
}

pub struct StoredSmall {
    pub created_at: DateTime<Utc>,
    pub outcomes: Vec<SmallOutcome>,
    /// The status of each stored message that had recipients on the opt-out list.
    pub opted_out: std::collections::BTreeMap<i64, MessageStatus>,
}

/// Stores many small sends in one statement: a message per send whose sender's account is
/// active (and API token unrevoked, if it came with one), with its recipients and its
/// row in the release queue (with the sender's default validity, if any). The check is part of the write, so it sees a disable or a revocation that
/// committed before it; a refused send stores nothing.
///
/// Message ids are drawn in the first CTE so recipients can be tied to them without relying
/// on the order of `RETURNING`; the results come back as arrays in one row, which keeps the
/// statement linear in the batch size.
pub async fn insert_small_messages(
    db: &PgPool,
    sends: &[SmallMessage<'_>],
) -> Result<StoredSmall, sqlx::Error> {
    let mut user_ids = Vec::with_capacity(sends.len());
    let mut token_ids = Vec::with_capacity(sends.len());
    let mut contents = Vec::with_capacity(sends.len());
    let mut encodings = Vec::with_capacity(sends.len());
    let mut segments = Vec::with_capacity(sends.len());
    let mut totals = Vec::with_capacity(sends.len());
    let mut traceparents = Vec::with_capacity(sends.len());
    let mut phone_ords = Vec::new();
    let mut phones = Vec::new();
    for (i, send) in sends.iter().enumerate() {
        user_ids.push(send.user_id);
        token_ids.push(send.token_id);
        contents.push(send.body.as_str());
        encodings.push(send.body.encoding().as_str());
        segments.push(send.body.segments() as i32);
        totals.push(send.phones.len() as i32);
        traceparents.push(send.traceparent.as_deref());
        for phone in &send.phones {
            phone_ords.push(i as i64 + 1);
            phones.push(*phone);
        }
    }
    // The opt-out marking must commit with the messages, hence the transaction.
    let mut tx = db.begin().await?;
    let row = sqlx::query_as!(
        SmallInsertRow,
        r#"WITH input AS (
             SELECT v.*, CASE WHEN v.verdict = 'ok' THEN nextval('messages_id_seq') END AS id
             FROM (SELECT t.ord, t.user_id, t.content, t.encoding, t.segments, t.total,
                          t.traceparent,
                          now() + make_interval(secs => u.default_valid_for_secs) AS valid_until,
                          CASE WHEN u.id IS NULL THEN 'unknown'
                               WHEN t.token_id IS NOT NULL AND NOT EXISTS (
                                   SELECT 1 FROM api_tokens k
                                   WHERE k.id = t.token_id AND k.revoked_at IS NULL) THEN 'revoked'
                               WHEN NOT u.is_active THEN 'disabled'
                               WHEN u.daily_recipient_limit IS NOT NULL
                                    OR u.requests_per_second IS NOT NULL THEN 'limited'
                               ELSE 'ok' END AS verdict
                   FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::int[], $9::text[])
                        WITH ORDINALITY AS t(user_id, token_id, content, encoding, segments, total, traceparent, ord)
                   LEFT JOIN users u ON u.id = t.user_id) v),
         m AS (
             INSERT INTO messages (id, user_id, content, encoding, segments, total_count, valid_until)
             SELECT id, user_id, content, encoding, segments, total, valid_until
             FROM input WHERE id IS NOT NULL),
         o AS (
             INSERT INTO message_outbox (message_id, user_id, unreleased, valid_until, traceparent)
             SELECT id, user_id, total, valid_until, traceparent FROM input WHERE id IS NOT NULL),
         r AS (
             INSERT INTO recipients (message_id, phone)
             SELECT i.id, p.phone
             FROM unnest($7::bigint[], $8::text[]) WITH ORDINALITY AS p(ord, phone, n)
             JOIN input i ON i.ord = p.ord
             WHERE i.id IS NOT NULL
             ORDER BY p.n)
         SELECT now() AS "created_at!",
                (SELECT array_agg(verdict ORDER BY ord) FROM input) AS "verdicts!",
                (SELECT array_agg(id ORDER BY ord) FROM input) AS "message_ids!: Vec<Option<i64>>""#,
        &user_ids,
        &token_ids as &[Option<i64>],
        &contents as &[&str],
        &encodings as &[&str],
        &segments,
        &totals,
        &phone_ords,
        &phones as &[&str],
        &traceparents as &[Option<&str>]
    )
    .fetch_one(&mut *tx)
    .await?;
    let stored: Vec<i64> = row.message_ids.iter().flatten().copied().collect();
    let opted_out = crate::optout::mark_accepted_small(&mut tx, &stored).await?;
    tx.commit().await?;
    let mut stored = row.into_outcomes();
    stored.opted_out = opted_out;
    Ok(stored)
}

struct SmallInsertRow {
    created_at: DateTime<Utc>,
    verdicts: Vec<String>,
    message_ids: Vec<Option<i64>>,
}

impl SmallInsertRow {
    fn into_outcomes(self) -> StoredSmall {
        let outcomes = self
            .verdicts
            .iter()
            .zip(self.message_ids)
            .map(|(verdict, id)| match (verdict.as_str(), id) {
                ("ok", Some(message_id)) => SmallOutcome::Stored { message_id },
                ("disabled", _) => SmallOutcome::Refused(Refusal::Disabled),
                ("limited", _) => SmallOutcome::Refused(Refusal::Limited),
                ("revoked", _) => SmallOutcome::Refused(Refusal::RevokedToken),
                _ => SmallOutcome::Refused(Refusal::UnknownUser),
            })
            .collect();
        StoredSmall {
            created_at: self.created_at,
            outcomes,
            opted_out: Default::default(),
        }
    }
}

/// The user's message total, kept per user by triggers (see the bulk_insert_speed
/// migration): a sum over at most 16 rows instead of a count over millions.
pub async fn count_messages(db: &PgPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(messages), 0)::bigint AS "messages!"
         FROM user_message_counts WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(db)
    .await
}

/// The message if it exists and belongs to `user_id`; another user's message is `None`.
pub async fn find_own_message(
    db: &PgPool,
    user_id: i64,
    id: i64,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id, user_id, content, encoding, segments, status AS "status: MessageStatus",
                total_count, sent_count, failed_count, cancelled_count, expired_count, opted_out_count,
                priority AS "priority: Priority", route, send_at, valid_until, created_at,
                completed_at
         FROM messages WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

pub async fn list_recipients(
    db: &PgPool,
    message_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<RecipientRow>, sqlx::Error> {
    sqlx::query_as!(
        RecipientRow,
        r#"SELECT id, phone, status AS "status: RecipientStatus", attempts, last_error, updated_at,
                sent_at, delivered_at
         FROM recipients WHERE message_id = $1 ORDER BY id LIMIT $2 OFFSET $3"#,
        message_id,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}
