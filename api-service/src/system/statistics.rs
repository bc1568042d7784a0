//! `GET /api/statistics`: what the edge gateway's monitoring read (memory, database size,
//! message counts, SIM card usage, daily counts), plus the dispatch queue's depth.
//! Admins see every user's messages; everyone else their own. Host figures are the same for
//! all callers; SIM usage lists the SIMs the caller may use (every SIM for an admin). Figures are computed at most every 10 s per scope
//! (`generated_at` says when).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use smsgate_shared::queue::{routing, Names};
use utoipa::{OpenApi, ToSchema};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::history;
use smsgate_core::live::hkt_queue_depth;
use smsgate_core::sims::service as sims;
use smsgate_core::system::memory::{self, MemoryFigures};
use smsgate_core::system::repo;

#[derive(OpenApi)]
#[openapi(paths(show))]
pub(crate) struct Api;

/// Days in `daily`, today included.
const DAYS: i32 = 7;
/// How long one caller scope's figures are served again. Monitoring polls; each
/// computation reads per-SIM totals and a week of messages and holds several pool
/// connections, which pollers must not take from sends.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// Recently computed statistics, as JSON, per scope (`None`: an admin's, everyone's
/// messages; `Some(user)`: that user's). Cheap to clone.
#[derive(Clone)]
pub struct StatisticsCache {
    cache: moka::sync::Cache<Option<i64>, Bytes>,
}

impl Default for StatisticsCache {
    fn default() -> Self {
        StatisticsCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FRESH_FOR)
                .build(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Statistics {
    generated_at: String,
    /// `null` where the host's memory can't be read.
    memory: Option<MemoryFigures>,
    database: DatabaseFigures,
    messages: MessageFigures,
    queue: QueueFigures,
    sim_cards: SimFigures,
    daily: Vec<DayFigures>,
}

#[derive(Serialize, ToSchema)]
struct DatabaseFigures {
    size_bytes: i64,
}

#[derive(Serialize, ToSchema)]
struct MessageFigures {
    /// Outgoing and incoming together, as the edge gateway counted them.
    total: i64,
    outgoing: i64,
    incoming: i64,
    /// Recipients of messages created since 00:00 UTC, by where they stand.
    today: TodayFigures,
}

#[derive(Serialize, ToSchema)]
struct TodayFigures {
    sent: i64,
    failed: i64,
    pending: i64,
}

#[derive(Serialize, ToSchema)]
struct QueueFigures {
    /// Jobs waiting for a dispatcher; `null` while the broker can't be asked.
    hkt_depth: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct SimFigures {
    total: usize,
    active: usize,
    online: usize,
    cards: Vec<SimUsage>,
}

#[derive(Serialize, ToSchema)]
struct SimUsage {
    id: i64,
    number: String,
    status: String,
    online: bool,
    /// Recipients sent and failed through this SIM, SMS received on it; all time.
    sent: i64,
    failed: i64,
    received: i64,
}

#[derive(Serialize, ToSchema)]
struct DayFigures {
    date: String,
    outgoing: i64,
    recipients: i64,
    incoming: i64,
}

/// Host, database, message, queue and SIM figures, and the last 7 days (admins:
/// everyone's messages; others: their own). Recomputed at most every 10 s.
#[utoipa::path(
    get,
    path = "/api/statistics",
    tag = "system",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The figures", body = Statistics)),
)]
pub async fn show(State(app): State<AppState>, user: AuthUser) -> Result<Response, ApiError> {
    let owner = (!user.is_admin).then_some(user.id);
    let json = match app.statistics.cache.get(&owner) {
        Some(json) => json,
        None => {
            let json = Bytes::from(
                serde_json::to_vec(&compute(&app, owner).await?)
                    .map_err(|e| ApiError::Internal(e.into()))?,
            );
            app.statistics.cache.insert(owner, json.clone());
            json
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn compute(app: &AppState, owner: Option<i64>) -> Result<Statistics, ApiError> {
    let now = Utc::now();
    let names = Names::new(&app.core.settings.queue.prefix);
    let (memory, totals, today, daily, sims, depth) = tokio::join!(
        memory::read(),
        repo::totals(&app.core.db, owner),
        history::repo::counts_since(&app.core.db, repo::start_of_utc_day(now), owner),
        repo::daily(&app.core.db, owner, DAYS),
        sim_figures(app, owner),
        hkt_queue_depth(&app.core.broker, &names),
    );
    let totals = totals?;
    let (sent, failed, pending) = today?;
    Ok(Statistics {
        generated_at: rfc3339(now),
        memory,
        database: DatabaseFigures {
            size_bytes: totals.database_bytes,
        },
        messages: MessageFigures {
            total: totals.outgoing + totals.incoming,
            outgoing: totals.outgoing,
            incoming: totals.incoming,
            today: TodayFigures {
                sent,
                failed,
                pending,
            },
        },
        queue: QueueFigures { hkt_depth: depth },
        sim_cards: sims?,
        daily: daily?
            .into_iter()
            .map(|d| DayFigures {
                date: d.day.to_string(),
                outgoing: d.outgoing,
                recipients: d.recipients,
                incoming: d.incoming,
            })
            .collect(),
    })
}

/// Usage of the SIMs user `owner` may use (assigned to them or to all), or of every SIM.
async fn sim_figures(app: &AppState, owner: Option<i64>) -> Result<SimFigures, ApiError> {
    let (cards, sent, pooled, received) = tokio::try_join!(
        async {
            match owner {
                Some(user) => sims::list_usable_by(&app.core.db, user).await,
                None => sims::list(&app.core.db).await,
            }
        },
        async { Ok(repo::sent_per_sim_route(&app.core.db).await?) },
        async { Ok(repo::sent_per_sim_in_pool(&app.core.db).await?) },
        async { Ok(repo::received_per_sim(&app.core.db).await?) },
    )?;
    let sent: HashMap<String, (i64, i64)> = sent
        .into_iter()
        .map(|(route, sent, failed)| (route, (sent, failed)))
        .collect();
    let pooled: HashMap<i64, (i64, i64)> = pooled
        .into_iter()
        .map(|(sim, sent, failed)| (sim, (sent, failed)))
        .collect();
    let received: HashMap<i64, i64> = received.into_iter().collect();
    let offline_after = app.core.settings.release.sim_offline_after;
    let cards: Vec<SimUsage> = cards
        .into_iter()
        .map(|sim| {
            let (sent, failed) = sent.get(&routing::sim(sim.id)).copied().unwrap_or((0, 0));
            let (pool_sent, pool_failed) = pooled.get(&sim.id).copied().unwrap_or((0, 0));
            let (sent, failed) = (sent + pool_sent, failed + pool_failed);
            SimUsage {
                online: sims::is_online(&sim, offline_after),
                received: received.get(&sim.id).copied().unwrap_or(0),
                id: sim.id,
                number: sim.number,
                status: sim.status,
                sent,
                failed,
            }
        })
        .collect();
    Ok(SimFigures {
        total: cards.len(),
        active: cards
            .iter()
            .filter(|c| c.status == sims::SimStatus::Active.as_str())
            .count(),
        online: cards.iter().filter(|c| c.online).count(),
        cards,
    })
}
