//! The panel side of traffic control: `/scheduled` (messages waiting for their send time)
//! and cancelling a message (`/history/{id}/cancel`: a confirmation page, then the POST).
//! The cancel itself is `traffic::cancel_message`, the same as the API's.

use crate::view::{preview, DisplayTz};
use crate::{Flash, FlashKind, Page, WebError};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::Priority;

use super::errors::db_error;
use super::forms::{CsrfForm, NoFields};
use super::session::{PanelUser, SignedIn};
use super::PanelId;
use crate::state::WebState;
use smsgate_core::history::repo::ScheduledRow;
use smsgate_core::history::service::{self, Cursor, PageRequest};
use smsgate_core::traffic::{cancel_message, CancelError};

/// Scheduled messages per page.
const PAGE_SIZE: i64 = 25;

#[derive(Serialize)]
struct ScheduledItem {
    id: i64,
    username: String,
    preview: String,
    priority: Priority,
    total: i32,
    send_at: String,
    send_at_iso: String,
}

impl ScheduledItem {
    fn new(row: ScheduledRow, tz: &DisplayTz) -> ScheduledItem {
        ScheduledItem {
            id: row.id,
            username: row.username,
            preview: preview(&row.preview, 80),
            priority: row.priority,
            total: row.total_count,
            send_at: tz.format(row.send_at),
            send_at_iso: tz.machine(row.send_at),
        }
    }
}

/// `?after=` / `?before=` cursors; a malformed one shows the first page.
#[derive(Deserialize, Default)]
pub struct ScheduledQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
}

impl ScheduledQuery {
    fn page(&self) -> PageRequest<Cursor> {
        match (Cursor::parse(&self.after), Cursor::parse(&self.before)) {
            (Some(c), _) => PageRequest::After(c),
            (None, Some(c)) => PageRequest::Before(c),
            _ => PageRequest::First,
        }
    }
}

/// Staff see their own scheduled messages, admins everyone's with the owner; soonest first.
pub async fn list_scheduled(
    State(app): State<WebState>,
    user: PanelUser,
    Query(query): Query<ScheduledQuery>,
) -> Result<Page, WebError> {
    let viewer = user.session.viewer();
    let tz = app.panel.display_tz;
    let page = service::list_scheduled(&app.core.db, viewer, query.page(), PAGE_SIZE)
        .await
        .map_err(db_error)?;
    let items: Vec<ScheduledItem> = page
        .items
        .into_iter()
        .map(|row| ScheduledItem::new(row, &tz))
        .collect();
    Ok(Page::new("scheduled.html", user.layout(&app, "scheduled"))
        .with("messages", items)
        .with("show_user", viewer.is_admin)
        .with(
            "sooner_url",
            page.sooner
                .map(|c| format!("/scheduled?before={}", c.encode())),
        )
        .with(
            "later_url",
            page.later
                .map(|c| format!("/scheduled?after={}", c.encode())),
        ))
}

/// `GET /history/{id}/cancel`: what a cancel stops, and the button that does it. A message
/// that is already final goes back to its page with the reason.
pub async fn confirm_cancel(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let message = service::find_message(&app.core.db, user.session.viewer(), id)
        .await
        .map_err(db_error)?
        .ok_or(WebError::NotFound("Message"))?;
    if message.status.is_final() {
        return Err(WebError::refused(
            format!("/history/{id}"),
            format!(
                "Message #{id} already finished ({}); there is nothing left to cancel.",
                message.status
            ),
        ));
    }
    let tz = app.panel.display_tz;
    Ok(
        Page::new("message_cancel.html", user.layout(&app, "history"))
            .with("id", id)
            .with("preview", preview(&message.content, 160))
            .with("status", message.status)
            .with("pending", message.pending())
            .with("total", message.total_count)
            .with("send_at", message.send_at.map(|t| tz.format(t))),
    )
}

/// `POST /history/{id}/cancel`: cancels the message's pending recipients. The owner or an
/// admin only; anyone else gets the same 404 as for a missing message.
pub async fn cancel(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let back = format!("/history/{id}");
    let viewer = user.session.viewer();
    match cancel_message(
        &app.core.db,
        &app.core.outbox,
        viewer.user_id,
        viewer.is_admin,
        id,
    )
    .await
    {
        Ok(done) if done.recipients == 0 => Ok(Flash::new(
            FlashKind::Info,
            format!("Message #{id} was already cancelled; nothing changed."),
        )
        .redirect(&back)),
        Ok(done) => Ok(Flash::success(format!(
            "Cancelled {} recipient{} of message #{id}.",
            done.recipients,
            if done.recipients == 1 { "" } else { "s" }
        ))
        .redirect(&back)),
        Err(CancelError::NotFound) => Err(WebError::NotFound("Message")),
        Err(CancelError::Finished(status)) => Err(WebError::refused(
            &back,
            format!("Message #{id} already finished ({status}); there is nothing left to cancel."),
        )),
        Err(CancelError::Database(e)) => Err(db_error(e)),
    }
}
