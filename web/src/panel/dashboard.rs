//! `/`: today's figures, the dispatch queue's depth, the last 24 hours' traffic as a chart,
//! the latest messages and, once SIM cards are registered, how many are online, offline and
//! inactive.

use crate::{Page, WebError};
use axum::extract::State;
use chrono::{Duration, Utc};
use serde::Serialize;
use smsgate_shared::queue::Names;

use super::chart::{self, TrafficSeries};
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
/// The chart's window: a day, a point a minute.
const CHART_MINUTES: usize = 24 * 60;

pub async fn show_dashboard(
    State(app): State<WebState>,
    user: PanelUser,
) -> Result<Page, WebError> {
    let viewer = user.session.viewer();
    let tz = app.panel.display_tz;
    let since = tz.start_of_day(tz.today());
    let names = Names::new(&app.core.settings.queue.prefix);
    let no_filter = HistoryFilter::default();
    let now = Utc::now();
    let chart_since = now - Duration::minutes(CHART_MINUTES as i64);
    let (counts, recent, depth, sim_summary, traffic) = tokio::join!(
        service::counts_since(&app.core.db, viewer, since),
        service::search(&app.core.db, viewer, &no_filter, PageRequest::First, RECENT),
        hkt_queue_depth(&app.core.broker, &names),
        sims::summary(
            &app.core.db,
            user.session.user_id,
            app.core.settings.release.sim_offline_after
        ),
        service::traffic_since(&app.core.db, chart_since),
    );
    let traffic = traffic.map_err(db_error)?;
    let series = TrafficSeries::from_rows(now, CHART_MINUTES, &traffic.results, &traffic.backlog);
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
        .with("traffic_chart", chart::render(&series, &tz))
        .with("traffic_empty", series.is_empty())
        .with("sims", (sim_summary.total() > 0).then_some(sim_summary))
        .with("recent", recent)
        .with("show_user", viewer.is_admin))
}
