//! `/`: today's figures, the dispatch queue's depth, the latest messages and, once SIM
//! cards are registered, how many are online, offline and inactive.

use crate::{Page, WebError};
use axum::extract::State;
use serde::Serialize;
use smsgate_shared::queue::Names;

use super::errors::{db_error, sim_error};
use super::history_pages::MessageItem;
use super::session::{PanelUser, SignedIn};
use crate::state::WebState;
use smsgate_core::history::service::{self, HistoryFilter, PageRequest};
use smsgate_core::live::hkt_queue_depth;
use smsgate_core::sims::service as sims;

#[derive(Serialize)]
struct Today {
    sent: i64,
    failed: i64,
    pending: i64,
}

const RECENT: i64 = 10;

pub async fn show_dashboard(
    State(app): State<WebState>,
    user: PanelUser,
) -> Result<Page, WebError> {
    let viewer = user.session.viewer();
    let tz = app.panel.display_tz;
    let since = tz.start_of_day(tz.today());
    let names = Names::new(&app.core.settings.queue.prefix);
    let no_filter = HistoryFilter::default();
    let (counts, recent, depth, sim_summary) = tokio::join!(
        service::counts_since(&app.core.db, viewer, since),
        service::search(&app.core.db, viewer, &no_filter, PageRequest::First, RECENT),
        hkt_queue_depth(&app.core.broker, &names),
        sims::summary(&app.core.db, user.session.user_id),
    );
    let sim_summary = sim_summary.map_err(|e| sim_error(e, "/"))?;
    let (sent, failed, pending) = counts.map_err(db_error)?;
    let recent: Vec<MessageItem> = recent
        .map_err(db_error)?
        .items
        .into_iter()
        .map(|row| MessageItem::new(row, &tz))
        .collect();
    Ok(Page::new("dashboard.html", user.layout(&app, "dashboard"))
        .with(
            "today",
            Today {
                sent,
                failed,
                pending,
            },
        )
        .with("queue_depth", depth)
        .with("sims", (sim_summary.total() > 0).then_some(sim_summary))
        .with("recent", recent)
        .with("show_user", viewer.is_admin))
}
