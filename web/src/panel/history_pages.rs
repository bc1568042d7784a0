//! `/history` (and `/admin/messages`), `/history/{id}` with its progress bar, ETA and live
//! event stream, and "retry failed recipients".

use std::convert::Infallible;

use crate::view::{preview, DisplayTz};
use crate::{Flash, Page, WebError};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::{MessageStatus, PhoneNumber, Priority};

use super::errors::{db_error, history_error, user_error};
use super::forms::{CsrfForm, NoFields};
use super::session::{AdminUser, PanelUser, Session, SignedIn};
use super::PanelId;
use crate::state::WebState;
use smsgate_core::admin::users;
use smsgate_core::history::export::{self, Bom, CsvExport, ExportError};
use smsgate_core::history::repo::HistoryRow;
use smsgate_core::history::service::{self, Cursor, HistoryFilter, PageRequest};
use smsgate_core::live;

/// Messages per history page.
const PAGE_SIZE: i64 = 25;
/// Recipients per page of the detail table.
const RECIPIENTS_PAGE: i64 = 50;

/// A message row as the history and dashboard tables show it.
#[derive(Serialize)]
pub struct MessageItem {
    id: i64,
    username: String,
    preview: String,
    status: MessageStatus,
    total: i32,
    sent: i32,
    failed: i32,
    created: String,
    created_iso: String,
}

impl MessageItem {
    pub fn new(row: HistoryRow, tz: &DisplayTz) -> MessageItem {
        MessageItem {
            id: row.id,
            username: row.username,
            preview: preview(&row.preview, 80),
            status: row.status,
            total: row.total_count,
            sent: row.sent_count,
            failed: row.failed_count,
            created: tz.format(row.created_at),
            created_iso: tz.machine(row.created_at),
        }
    }
}

/// The query string as typed; parsed leniently (a bad date is ignored, a bad number is
/// shown beside its field) so a filter form never ends in an error page.
#[derive(Deserialize, Serialize, Default, Clone)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    phone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    after: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    before: String,
}

impl HistoryQuery {
    fn filter(&self, tz: &DisplayTz) -> (HistoryFilter, Option<String>) {
        let date = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok();
        let (phone, phone_error) = match self.phone.trim() {
            "" => (None, None),
            raw => match PhoneNumber::parse(raw) {
                Ok(number) => (Some(number), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        let filter = HistoryFilter {
            user: self.user.parse().ok(),
            text: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            phone,
            status: self.status.parse().ok(),
            from: date(&self.from).map(|d| tz.start_of_day(d)),
            until: date(&self.to)
                .and_then(|d| d.succ_opt())
                .map(|d| tz.start_of_day(d)),
        };
        (filter, phone_error)
    }

    fn page(&self) -> PageRequest<Cursor> {
        match (Cursor::parse(&self.after), Cursor::parse(&self.before)) {
            (Some(c), _) => PageRequest::After(c),
            (None, Some(c)) => PageRequest::Before(c),
            _ => PageRequest::First,
        }
    }

    /// The same filters at another page.
    fn url(&self, action: &str, after: Option<Cursor>, before: Option<Cursor>) -> String {
        let query = HistoryQuery {
            after: after.map(|c| c.encode()).unwrap_or_default(),
            before: before.map(|c| c.encode()).unwrap_or_default(),
            ..self.clone()
        };
        format!(
            "{action}?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    }
}

#[derive(Serialize)]
struct UserOption {
    id: i64,
    username: String,
}

struct Listing {
    title: &'static str,
    action: &'static str,
    nav: &'static str,
}

async fn render_history(
    app: &WebState,
    user: &impl SignedIn,
    query: HistoryQuery,
    listing: Listing,
) -> Result<Page, WebError> {
    let session: &Session = user.session();
    let viewer = session.viewer();
    let tz = app.panel.display_tz;
    let (filter, phone_error) = query.filter(&tz);
    let page = if phone_error.is_some() {
        None
    } else {
        Some(
            service::search(&app.core.db, viewer, &filter, query.page(), PAGE_SIZE)
                .await
                .map_err(db_error)?,
        )
    };
    let users: Vec<UserOption> = if viewer.is_admin {
        users::list_users(&app.core.db)
            .await
            .map_err(|e| user_error(e, "/"))?
            .into_iter()
            .map(|u| UserOption {
                id: u.id,
                username: u.username,
            })
            .collect()
    } else {
        Vec::new()
    };
    let (items, newer_url, older_url) = match page {
        Some(page) => (
            page.items
                .into_iter()
                .map(|row| MessageItem::new(row, &tz))
                .collect::<Vec<_>>(),
            page.newer.map(|c| query.url(listing.action, None, Some(c))),
            page.older.map(|c| query.url(listing.action, Some(c), None)),
        ),
        None => (Vec::new(), None, None),
    };
    let statuses: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    Ok(Page::new("history.html", user.layout(app, listing.nav))
        .with("title", listing.title)
        .with("action", listing.action)
        // Every field, empty ones included: the form shows them all.
        .with(
            "filters",
            serde_json::json!({
                "q": query.q, "phone": query.phone, "status": query.status,
                "from": query.from, "to": query.to,
            }),
        )
        .with("filter_user", filter.user)
        .with("phone_error", phone_error)
        .with("statuses", statuses)
        .with("users", users)
        .with("show_user", viewer.is_admin)
        .with("messages", items)
        .with("export_url", query.url(EXPORT_PATH, None, None))
        .with("newer_url", newer_url)
        .with("older_url", older_url))
}

/// Staff see their own messages; admins everyone's, with a user filter.
pub async fn list_messages(
    State(app): State<WebState>,
    user: PanelUser,
    Query(query): Query<HistoryQuery>,
) -> Result<Page, WebError> {
    let listing = Listing {
        title: "History",
        action: "/history",
        nav: "history",
    };
    render_history(&app, &user, query, listing).await
}

pub async fn list_all_messages(
    State(app): State<WebState>,
    user: AdminUser,
    Query(query): Query<HistoryQuery>,
) -> Result<Page, WebError> {
    let listing = Listing {
        title: "All messages",
        action: "/admin/messages",
        nav: "messages",
    };
    render_history(&app, &user, query, listing).await
}

/// The history export: the filters of the page it is linked from.
const EXPORT_PATH: &str = "/history/export.csv";

/// `200 text/csv` as an attachment, its body the export's chunks as they are produced
/// (the JSON API's exports answer the same way). A failure after the first chunk can only
/// cut the response short: see docs/exports.md.
pub fn csv_attachment(export: CsvExport) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", export.filename),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(export.chunks),
    )
        .into_response()
}

/// "Export CSV": the messages the history page's filters match (staff: their own; admins:
/// everyone's or the chosen user's), all of them, with a byte-order mark for Excel.
pub async fn export_messages(
    State(app): State<WebState>,
    user: PanelUser,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, WebError> {
    let (filter, phone_error) = query.filter(&app.panel.display_tz);
    if let Some(error) = phone_error {
        return Err(WebError::BadRequest(error));
    }
    let export = export::messages_csv(&app.core.db, user.session.viewer(), &filter, Bom::With)
        .await
        .map_err(export_error)?;
    Ok(csv_attachment(export))
}

/// "Download recipients (CSV)" on a message the user may see.
pub async fn export_recipients(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
) -> Result<Response, WebError> {
    service::find_message(&app.core.db, user.session.viewer(), id)
        .await
        .map_err(db_error)?
        .ok_or(WebError::NotFound("Message"))?;
    let export = export::recipients_csv(&app.core.db, id, Bom::With)
        .await
        .map_err(export_error)?;
    Ok(csv_attachment(export))
}

fn export_error(e: ExportError) -> WebError {
    match e {
        ExportError::Database(e) => db_error(e),
        ExportError::Csv(e) => WebError::Internal(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct RecipientQuery {
    after: Option<i64>,
    before: Option<i64>,
}

impl RecipientQuery {
    fn page(&self) -> PageRequest<i64> {
        match (self.after, self.before) {
            (Some(id), _) => PageRequest::After(id),
            (None, Some(id)) => PageRequest::Before(id),
            _ => PageRequest::First,
        }
    }

    fn suffix(&self) -> String {
        match (self.after, self.before) {
            (Some(id), _) => format!("?after={id}"),
            (None, Some(id)) => format!("?before={id}"),
            _ => String::new(),
        }
    }
}

#[derive(Serialize)]
struct MessageView {
    id: i64,
    username: Option<String>,
    content: String,
    encoding: String,
    segments: i32,
    status: MessageStatus,
    total: i32,
    sent: i32,
    failed: i32,
    cancelled: i32,
    expired: i32,
    pending: i32,
    priority: Priority,
    send_at: Option<String>,
    send_at_iso: Option<String>,
    valid_until: Option<String>,
    eta: Option<String>,
    eta_iso: Option<String>,
    created: String,
    created_iso: String,
    completed: Option<String>,
}

/// Width of the progress bar's `viewBox`; segments are laid out in these units.
const BAR_WIDTH: i64 = 1000;

/// One coloured run of the progress bar.
#[derive(Debug, Serialize, PartialEq)]
pub struct BarSegment {
    kind: &'static str,
    count: i64,
    x: i64,
    width: i64,
}

/// The progress bar's runs, in the order results are drawn (sent, failed, cancelled,
/// expired); what is left of the bar is pending. Widths are rounded down and a non-empty
/// run is at least one unit, so a single failure among 100,000 still shows.
pub fn bar_segments(total: i64, counts: [(&'static str, i64); 4]) -> Vec<BarSegment> {
    let mut x = 0;
    counts
        .into_iter()
        .map(|(kind, count)| {
            let width = if total <= 0 || count <= 0 {
                0
            } else {
                (count * BAR_WIDTH / total).max(1).min(BAR_WIDTH - x)
            };
            let segment = BarSegment {
                kind,
                count,
                x,
                width,
            };
            x += width;
            segment
        })
        .collect()
}

#[derive(Serialize)]
struct RecipientView {
    id: i64,
    phone: String,
    status: String,
    attempts: i32,
    error: Option<String>,
    updated: String,
    updated_iso: String,
}

pub async fn show_message(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
    Query(query): Query<RecipientQuery>,
) -> Result<Page, WebError> {
    let viewer = user.session.viewer();
    let tz = app.panel.display_tz;
    let message = service::find_message(&app.core.db, viewer, id)
        .await
        .map_err(db_error)?
        .ok_or(WebError::NotFound("Message"))?;
    let recipients = service::list_recipients(&app.core.db, id, query.page(), RECIPIENTS_PAGE)
        .await
        .map_err(db_error)?;
    let can_retry = message.failed_count > 0
        && message.status.is_final()
        && message.status != MessageStatus::Cancelled;
    // Whoever may see the message may cancel it: its owner, or an admin.
    let can_cancel = !message.status.is_final();
    let eta = service::message_eta(&app.core.db, &app.core.settings, &message)
        .await
        .map_err(db_error)?;
    let bar = bar_segments(
        i64::from(message.total_count),
        [
            ("sent", i64::from(message.sent_count)),
            ("failed", i64::from(message.failed_count)),
            ("cancelled", i64::from(message.cancelled_count)),
            ("expired", i64::from(message.expired_count)),
        ],
    );
    let pending = message.pending();
    let view = MessageView {
        id: message.id,
        // Staff only ever see their own messages; admins are told whose it is.
        username: viewer.is_admin.then_some(message.username),
        content: message.content,
        encoding: message
            .encoding
            .to_uppercase()
            .replace("GSM7", "GSM-7")
            .replace("UCS2", "UCS-2"),
        segments: message.segments,
        status: message.status,
        total: message.total_count,
        sent: message.sent_count,
        failed: message.failed_count,
        cancelled: message.cancelled_count,
        expired: message.expired_count,
        pending,
        priority: message.priority,
        send_at: message.send_at.map(|t| tz.format(t)),
        send_at_iso: message.send_at.map(|t| tz.machine(t)),
        valid_until: message.valid_until.map(|t| tz.format(t)),
        eta: eta.map(|t| tz.format(t)),
        eta_iso: eta.map(|t| tz.machine(t)),
        created: tz.format(message.created_at),
        created_iso: tz.machine(message.created_at),
        completed: message.completed_at.map(|t| tz.format(t)),
    };
    let rows: Vec<RecipientView> = recipients
        .items
        .into_iter()
        .map(|r| RecipientView {
            id: r.id,
            phone: r.phone,
            status: r.status.to_string(),
            attempts: r.attempts,
            error: r.last_error,
            updated: tz.format(r.updated_at),
            updated_iso: tz.machine(r.updated_at),
        })
        .collect();
    Ok(Page::new("message.html", user.layout(&app, "history"))
        .with("msg", view)
        .with("recipients", rows)
        .with("can_retry", can_retry)
        .with("can_cancel", can_cancel)
        .with("bar", bar)
        .with("bar_width", BAR_WIDTH)
        .with(
            "live_url",
            format!("/history/{id}/events{}", query.suffix()),
        )
        .with(
            "prev_url",
            recipients.prev.map(|c| format!("/history/{id}?before={c}")),
        )
        .with(
            "next_url",
            recipients.next.map(|c| format!("/history/{id}?after={c}")),
        ))
}

/// Server-sent events: `progress` events with the message's figures and the recipients of
/// the open page, as they change.
pub async fn stream_events(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
    Query(query): Query<RecipientQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WebError> {
    service::find_message(&app.core.db, user.session.viewer(), id)
        .await
        .map_err(db_error)?
        .ok_or(WebError::NotFound("Message"))?;
    let progress = live::watch(&app.core.live, app.core.db.clone(), id, query.page())
        .await
        .map_err(db_error)?;
    let events = progress.map(|progress| {
        Ok(Event::default()
            .event("progress")
            .json_data(&progress)
            .unwrap_or_else(|_| Event::default().comment("unserializable")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

pub async fn retry_failed(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let back = format!("/history/{id}");
    match service::retry_failed(&app.core.db, &app.core.outbox, user.session.viewer(), id).await {
        Ok(requeued) => Ok(Flash::success(format!(
            "{} failed recipient{} queued again.",
            requeued.recipients,
            if requeued.recipients == 1 { "" } else { "s" }
        ))
        .redirect(&back)),
        Err(e) => Err(history_error(e, &back)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_segments_follow_each_other_and_leave_pending_empty() {
        let bar = bar_segments(
            10,
            [("sent", 5), ("failed", 1), ("cancelled", 2), ("expired", 0)],
        );
        let runs: Vec<(i64, i64)> = bar.iter().map(|s| (s.x, s.width)).collect();
        assert_eq!(runs, vec![(0, 500), (500, 100), (600, 200), (800, 0)]);
    }

    #[test]
    fn a_tiny_share_still_shows_and_nothing_overflows() {
        let bar = bar_segments(
            100_000,
            [
                ("sent", 99_999),
                ("failed", 1),
                ("cancelled", 0),
                ("expired", 0),
            ],
        );
        assert_eq!(bar[1].width, 1);
        assert!(bar.iter().map(|s| s.width).sum::<i64>() <= BAR_WIDTH);
        assert!(bar_segments(
            0,
            [("sent", 0), ("failed", 0), ("cancelled", 0), ("expired", 0)]
        )
        .iter()
        .all(|s| s.width == 0));
    }
}
