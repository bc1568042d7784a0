//! `/inbox`: SMS received by the edge gateway's SIM cards, newest first, optionally of one
//! SIM. Each user sees what the SIMs assigned to them (or to all) received, as in
//! `/api/sms/inbox`; admins see everything. Received SMS are often one-time codes.

use crate::{Page, WebError};
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::errors::sim_error;
use super::session::{PanelUser, SignedIn};
use crate::state::WebState;
use smsgate_core::params::PageNumber;
use smsgate_core::sims::service;

/// Received SMS per page.
const PAGE_SIZE: i64 = 25;

/// The query string as typed; parsed leniently, so a stale link shows the first page of
/// everything instead of an error.
#[derive(Deserialize, Default)]
pub struct InboxQuery {
    #[serde(default)]
    sim: String,
    #[serde(default)]
    page: String,
}

#[derive(Serialize)]
struct InboundItem {
    id: i64,
    sender: String,
    sim_number: String,
    /// The SIM's label, when it is still registered.
    sim_label: Option<String>,
    content: String,
    parts: i16,
    received: String,
    received_iso: String,
}

#[derive(Serialize)]
struct SimOption {
    id: i64,
    number: String,
    label: String,
}

pub async fn list_inbox(
    State(app): State<WebState>,
    user: PanelUser,
    Query(query): Query<InboxQuery>,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let sim_id: Option<i64> = query.sim.trim().parse().ok().filter(|id| *id > 0);
    // Clamped to the API's PageNumber range, so no page number can overflow the row offset.
    let page: i64 = query
        .page
        .trim()
        .parse()
        .unwrap_or(1)
        .clamp(1, PageNumber::MAX);
    let viewer = user.session.user_id;
    let (sims, listed) = tokio::try_join!(
        service::list_usable_by(&app.core.db, viewer),
        service::inbox(&app.core.db, viewer, sim_id, page, PAGE_SIZE),
    )
    .map_err(|e| sim_error(e, "/"))?;
    let label_of = |id: Option<i64>| {
        sims.iter()
            .find(|s| Some(s.id) == id)
            .map(|s| s.label.clone())
            .filter(|l| !l.is_empty())
    };
    let (total, pages) = (listed.total, listed.pages().max(1));
    let items: Vec<InboundItem> = listed
        .items
        .into_iter()
        .map(|row| InboundItem {
            sim_label: label_of(row.sim_card_id),
            id: row.id,
            sender: row.sender,
            sim_number: row.sim_number,
            content: row.content,
            parts: row.parts,
            received: tz.format(row.received_at),
            received_iso: tz.machine(row.received_at),
        })
        .collect();
    let url = |p: i64| match sim_id {
        Some(id) => format!("/inbox?sim={id}&page={p}"),
        None => format!("/inbox?page={p}"),
    };
    let options: Vec<SimOption> = sims
        .into_iter()
        .map(|s| SimOption {
            id: s.id,
            number: s.number,
            label: s.label,
        })
        .collect();
    Ok(Page::new("inbox.html", user.layout(&app, "inbox"))
        .with("messages", items)
        .with("sims", options)
        .with("filter_sim", sim_id)
        .with("total", total)
        .with("page", page.min(pages))
        .with("pages", pages)
        .with("newer_url", (page > 1).then(|| url((page - 1).min(pages))))
        .with("older_url", (page < pages).then(|| url(page + 1))))
}
