//! CSV exports of a message's recipients and of a history search, streamed: rows are read
//! from PostgreSQL in keyset batches of [`BATCH`] and each batch is written as one chunk,
//! so memory holds a batch, whatever the row count (docs/exports.md). The panel and the
//! API serve the same bytes, apart from the panel's byte-order mark.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, Stream, StreamExt};
use sqlx::PgPool;

use super::repo::{self, ExportedRecipient, Filter, MessageDetailRow};
use super::service::{HistoryFilter, Viewer};

/// Rows read and written per chunk: large enough that a 100,000-row export is a hundred
/// index range reads, small enough that a chunk is some 100 KB.
pub const BATCH: i64 = 1_000;

/// What an export stream yields: CSV bytes, or the error that ended it early.
pub type CsvChunks = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ExportError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("writing CSV")]
    Csv(#[from] csv::Error),
}

/// Whether the file starts with a UTF-8 byte-order mark. Excel reads a CSV without one in
/// the machine's ANSI code page (Chinese text comes out garbled), so the panel's
/// downloads, which people open in Excel, carry one; the API's, which programs read, do
/// not (the `charset=utf-8` of the content type says it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bom {
    With,
    Without,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An export ready to be sent: its file name and its chunks.
pub struct CsvExport {
    pub filename: String,
    pub chunks: CsvChunks,
}

/// Rows read a batch at a time in a keyset order; an empty batch ends the export.
trait Source: Send + 'static {
    type Row: Send;
    const HEADER: &'static [&'static str];
    fn next_batch(&mut self) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
    fn write(out: &mut csv::Writer<Vec<u8>>, row: &Self::Row) -> csv::Result<()>;
}

fn encode<S: Source>(
    start: Vec<u8>,
    header: bool,
    rows: &[S::Row],
) -> Result<Vec<u8>, ExportError> {
    let mut out = csv::Writer::from_writer(start);
    if header {
        out.write_record(S::HEADER)?;
    }
    for row in rows {
        S::write(&mut out, row)?;
    }
    out.into_inner()
        .map_err(|e| ExportError::Csv(csv::Error::from(e.into_error())))
}

/// Reads the first batch before anything is sent, so that an unreachable database is an
/// error answer rather than a `200` cut short; later failures can only end the stream.
async fn start<S: Source>(mut source: S, bom: Bom) -> Result<CsvChunks, ExportError> {
    let first = source.next_batch().await?;
    let more = first.len() as i64 == BATCH;
    let start = match bom {
        Bom::With => UTF8_BOM.to_vec(),
        Bom::Without => Vec::new(),
    };
    let head = encode::<S>(start, true, &first)?;
    let rest = stream::try_unfold((source, more), |(mut source, more)| async move {
        if !more {
            return Ok(None);
        }
        let rows = source.next_batch().await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let more = rows.len() as i64 == BATCH;
        Ok(Some((
            encode::<S>(Vec::new(), false, &rows)?,
            (source, more),
        )))
    });
    let chunks = stream::once(async { Ok(head) })
        .chain(rest)
        .inspect(|chunk| {
            if let Err(e) = chunk {
                tracing::error!(error = %e, "CSV export ended early");
            }
        });
    Ok(Box::pin(chunks))
}

/// Free text a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a tab or
/// carriage return before one) is written with a leading `'`, which spreadsheets show as
/// text (OWASP's "CSV injection" advice). Numbers are not free text: they are stored in
/// E.164, so `+85291234567` is written as it is (a spreadsheet may show it as a number,
/// never run it) and the file can be fed back to a bulk send or an opt-out import.
fn text(value: &str) -> Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{value}")),
        _ => Cow::Borrowed(value),
    }
}

fn write_cells(out: &mut csv::Writer<Vec<u8>>, cells: &[Cow<'_, str>]) -> csv::Result<()> {
    out.write_record(cells.iter().map(|c| c.as_bytes()))
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn maybe_time(at: Option<DateTime<Utc>>) -> String {
    at.map(time).unwrap_or_default()
}

struct Recipients {
    db: PgPool,
    message_id: i64,
    after: i64,
}

impl Source for Recipients {
    type Row = ExportedRecipient;
    const HEADER: &'static [&'static str] = &[
        "id",
        "number",
        "status",
        "attempts",
        "error",
        "gateway_response",
        "sim_card_id",
        "created_at",
        "sent_at",
        "delivered_at",
        "updated_at",
    ];

    async fn next_batch(&mut self) -> Result<Vec<ExportedRecipient>, sqlx::Error> {
        let rows = repo::recipients_after(&self.db, self.message_id, self.after, BATCH).await?;
        if let Some(last) = rows.last() {
            self.after = last.id;
        }
        Ok(rows)
    }

    fn write(out: &mut csv::Writer<Vec<u8>>, r: &ExportedRecipient) -> csv::Result<()> {
        write_cells(
            out,
            &[
                Cow::Owned(r.id.to_string()),
                Cow::Borrowed(r.phone.as_str()),
                Cow::Borrowed(r.status.as_str()),
                Cow::Owned(r.attempts.to_string()),
                text(r.last_error.as_deref().unwrap_or_default()),
                text(r.gateway_response.as_deref().unwrap_or_default()),
                Cow::Owned(r.sim_card_id.map(|id| id.to_string()).unwrap_or_default()),
                Cow::Owned(time(r.created_at)),
                Cow::Owned(maybe_time(r.sent_at)),
                Cow::Owned(maybe_time(r.delivered_at)),
                Cow::Owned(time(r.updated_at)),
            ],
        )
    }
}

/// Every recipient of message `message_id` in id order. The caller has checked that its
/// user may see the message (the API: its owner; the panel: its owner or an admin).
pub async fn recipients_csv(
    db: &PgPool,
    message_id: i64,
    bom: Bom,
) -> Result<CsvExport, ExportError> {
    let source = Recipients {
        db: db.clone(),
        message_id,
        after: 0,
    };
    Ok(CsvExport {
        filename: format!("message-{message_id}-recipients.csv"),
        chunks: start(source, bom).await?,
    })
}

struct Messages {
    db: PgPool,
    filter: Filter,
    before: (DateTime<Utc>, i64),
}

impl Source for Messages {
    type Row = MessageDetailRow;
    const HEADER: &'static [&'static str] = &[
        "id",
        "created_at",
        "username",
        "status",
        "priority",
        "route",
        "content",
        "encoding",
        "segments",
        "recipients",
        "sent",
        "failed",
        "cancelled",
        "expired",
        "opted_out",
        "pending",
        "send_at",
        "valid_until",
        "completed_at",
    ];

    async fn next_batch(&mut self) -> Result<Vec<MessageDetailRow>, sqlx::Error> {
        let rows = repo::list_matching(&self.db, &self.filter, self.before, BATCH, 0).await?;
        if let Some(last) = rows.last() {
            self.before = (last.created_at, last.id);
        }
        Ok(rows)
    }

    fn write(out: &mut csv::Writer<Vec<u8>>, m: &MessageDetailRow) -> csv::Result<()> {
        let count = |n: i32| Cow::Owned(n.to_string());
        write_cells(
            out,
            &[
                Cow::Owned(m.id.to_string()),
                Cow::Owned(time(m.created_at)),
                text(&m.username),
                Cow::Borrowed(m.status.as_str()),
                Cow::Borrowed(m.priority.as_str()),
                Cow::Borrowed(m.route.as_str()),
                text(&m.content),
                Cow::Borrowed(m.encoding.as_str()),
                count(m.segments),
                count(m.total_count),
                count(m.sent_count),
                count(m.failed_count),
                count(m.cancelled_count),
                count(m.expired_count),
                count(m.opted_out_count),
                count(m.pending()),
                Cow::Owned(maybe_time(m.send_at)),
                Cow::Owned(maybe_time(m.valid_until)),
                Cow::Owned(maybe_time(m.completed_at)),
            ],
        )
    }
}

/// The messages `viewer` may see that match `filter`, newest first, as the history list
/// shows them (the API passes [`Viewer::own`]: a caller's own messages).
pub async fn messages_csv(
    db: &PgPool,
    viewer: Viewer,
    filter: &HistoryFilter,
    bom: Bom,
) -> Result<CsvExport, ExportError> {
    let source = Messages {
        db: db.clone(),
        filter: filter.to_sql(viewer),
        before: repo::START,
    };
    Ok(CsvExport {
        filename: "messages.csv".to_owned(),
        chunks: start(source, bom).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_in_free_text_are_neutralised_and_other_text_is_not() {
        for formula in ["=1+1", "+SUM(A1)", "-2", "@cmd", "\t=x", "\r=x"] {
            assert_eq!(text(formula), format!("'{formula}"));
        }
        for plain in ["", "Hello", "1+1=2", "颱風 signal 8", "'quoted"] {
            assert_eq!(text(plain), plain);
        }
    }

    struct Fake;

    impl Source for Fake {
        type Row = (&'static str, &'static str);
        const HEADER: &'static [&'static str] = &["number", "content"];

        async fn next_batch(&mut self) -> Result<Vec<Self::Row>, sqlx::Error> {
            Ok(Vec::new())
        }

        fn write(out: &mut csv::Writer<Vec<u8>>, row: &Self::Row) -> csv::Result<()> {
            out.write_record([row.0, &text(row.1)])
        }
    }

    #[test]
    fn commas_quotes_newlines_and_cjk_survive_a_round_trip() {
        let content = "Dear \"client\", typhoon 颱風\nsignal 8, =stay home";
        let bytes = encode::<Fake>(
            UTF8_BOM.to_vec(),
            true,
            &[("+85291234567", content), ("+85261234567", "ok")],
        )
        .unwrap();
        assert!(bytes.starts_with(UTF8_BOM));
        let text = std::str::from_utf8(&bytes[UTF8_BOM.len()..]).unwrap();
        assert!(text.starts_with("number,content\n+85291234567,\"Dear \"\"client\"\""));
        let mut reader = csv::Reader::from_reader(&bytes[UTF8_BOM.len()..]);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "+85291234567");
        assert_eq!(&rows[0][1], content);
        assert_eq!(&rows[1][1], "ok");
    }
}
