//! The releaser: leadership, pacing and one release round (see the module above).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use smsgate_shared::domain::{MessageBody, PhoneNumber};
use smsgate_shared::queue::{
    declare_sim_queue, declare_topology, job_headers_for, routing, ConfirmedPublisher, Names,
    OutboundJob, OutgoingMessage,
};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::plan::{FairShare, Group, Pending, Take};
use super::pool::{self, SimRooms};
use super::{pool_repo, repo, Outbox};
use crate::progress::{self, MessageTally};

/// How the releaser paces itself.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// HKT_RATE_LIMIT, requests a second across all dispatchers; `None`: unlimited.
    pub hkt_rate_limit: Option<f64>,
    /// How much of the HKT rate is kept ready in the queue.
    pub hkt_lead: Duration,
    /// Jobs kept ready in each SIM's queue: a modem sends a few a minute.
    pub sim_depth: u32,
    /// Between rounds while there is work, and while there is none.
    pub busy_tick: Duration,
    pub idle_tick: Duration,
    /// A SIM whose agent has not sent a heartbeat for this long is offline
    /// (SIM_OFFLINE_AFTER_SECS): it takes no jobs, and those in its queue move.
    pub sim_offline_after: Duration,
}

/// The HKT queue's depth when the gateway is not rate-limited: enough to keep every
/// dispatcher busy while the next round is published.
const UNLIMITED_HKT_DEPTH: u32 = 20_000;
/// Jobs one round publishes at most. A job costs the API a few KiB while it is built,
/// published and awaiting its confirm, so the first round of an unlimited bulk (the whole
/// 20,000-job depth at once) took ~35 MB more than rounds of this size; the queue still
/// fills in a few rounds of [`ReleaseSettings::busy_tick`].
const MAX_JOBS_PER_ROUND: u32 = 4_000;
/// How often the backlog is sampled for the dashboard's chart (a row per minute) and the
/// backlog gauges.
const BACKLOG_SAMPLE_EVERY: Duration = Duration::from_secs(20);
/// Messages per (route, priority, user) considered in a round.
const MESSAGES_PER_GROUP: i64 = 32;
/// An agent heartbeats every 30 s; by default a SIM is offline after three missed ones.
pub const DEFAULT_SIM_OFFLINE_AFTER: Duration = Duration::from_secs(90);
/// How often the queues of offline SIMs are looked at (each look asks the broker once per
/// such SIM).
const FAILOVER_EVERY: Duration = Duration::from_secs(1);

impl ReleaseSettings {
    pub fn for_rate(hkt_rate_limit: Option<f64>) -> ReleaseSettings {
        ReleaseSettings {
            hkt_rate_limit,
            hkt_lead: Duration::from_millis(500),
            sim_depth: 5,
            busy_tick: Duration::from_millis(20),
            idle_tick: Duration::from_millis(200),
            sim_offline_after: DEFAULT_SIM_OFFLINE_AFTER,
        }
    }

    /// Jobs to keep ready in the HKT queue.
    pub fn hkt_depth(&self) -> u32 {
        match self.hkt_rate_limit {
            Some(rate) => ((rate * self.hkt_lead.as_secs_f64()).ceil() as u32).max(1),
            None => UNLIMITED_HKT_DEPTH,
        }
    }
}

/// Leads when it can, stands by when another process does, until `shutdown`.
pub(super) async fn run(outbox: Outbox, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&outbox, &shutdown).await {
            warn!(error = %e, "releaser stopped; standing by");
        }
        outbox.inner.metrics.stood_down();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Waits for the lead, then releases until an error (which gives the lead up: the
/// session ends with the connection) or `shutdown`.
async fn lead(outbox: &Outbox, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let inner = &outbox.inner;
    // A connection of its own, outside the pool: the lock lives as long as its session.
    let mut conn = inner.db.acquire().await?.detach();
    while !repo::try_lead(&mut conn).await? {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    info!("this process is the releaser");
    inner.metrics.leading.set(1);
    let channel = inner.broker.channel().await?;
    declare_topology(&channel, &inner.queue).await?;
    let names = Names::new(&inner.queue.prefix);
    let mut round = Round {
        conn,
        channel,
        publisher: inner.broker.publisher(names.outbound_exchange()),
        events: inner.broker.publisher(names.events_exchange()),
        names,
        fair: FairShare::default(),
        templates: HashMap::new(),
        sim_queues: HashSet::new(),
        sampled_at: None,
        failover_at: None,
    };
    round
        .publish_unconfirmed(outbox)
        .instrument(info_span!("outbox.republish_unconfirmed"))
        .await?;
    let mut busy = true;
    loop {
        let tick = if busy {
            inner.settings.busy_tick
        } else {
            inner.settings.idle_tick
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        busy = round
            .run(outbox)
            .instrument(info_span!("outbox.release"))
            .await?;
    }
}

/// What a message's jobs carry besides their recipient.
struct Template {
    body: Option<MessageBody>,
    valid_until: Option<DateTime<Utc>>,
    traceparent: Option<String>,
}

struct Round {
    conn: PgConnection,
    channel: Channel,
    publisher: ConfirmedPublisher,
    events: ConfirmedPublisher,
    names: Names,
    fair: FairShare,
    templates: HashMap<i64, Template>,
    /// SIM queues declared during this lead.
    sim_queues: HashSet<i64>,
    /// When the backlog was last sampled for the dashboard.
    sampled_at: Option<tokio::time::Instant>,
    /// When the queues of offline SIMs were last looked at.
    failover_at: Option<tokio::time::Instant>,
}

impl Round {
    /// One round; true while there is work waiting (the next round comes sooner).
    async fn run(&mut self, outbox: &Outbox) -> anyhow::Result<bool> {
        let metrics = &outbox.inner.metrics;
        if self
            .sampled_at
            .is_none_or(|at| at.elapsed() >= BACKLOG_SAMPLE_EVERY)
        {
            let waiting = repo::waiting(&mut self.conn).await?;
            repo::sample_backlog(&mut self.conn, &waiting).await?;
            metrics.backlog(&waiting);
            self.sampled_at = Some(tokio::time::Instant::now());
        }
        let due = self.change(Change::ReleaseDueScheduled).await?;
        metrics.scheduled_released.inc_by(due as u64);
        let expired = self.change(Change::ExpireUnreleased).await?;
        if expired > 0 {
            info!(messages = expired, "expired unreleased recipients");
        }

        self.failover(outbox).await?;

        let candidates = repo::candidates(&mut self.conn, MESSAGES_PER_GROUP).await?;
        if candidates.is_empty() {
            self.templates.clear();
            return Ok(false);
        }
        let mut sims = if candidates.iter().any(|c| c.route.starts_with("sim")) {
            self.sim_rooms(outbox, &candidates).await?
        } else {
            SimRooms::default()
        };
        let pool_users: Vec<i64> = candidates
            .iter()
            .filter(|c| c.route == pool::POOL_ROUTE)
            .map(|c| c.user_id)
            .collect();
        let owners: HashMap<i64, i64> = candidates
            .iter()
            .map(|c| (c.message_id, c.user_id))
            .collect();
        let mut rooms = HashMap::new();
        for route in candidates.iter().map(|c| c.route.as_str()) {
            if !rooms.contains_key(route) {
                let room = match sims.route_room(route, &pool_users) {
                    Some(room) => room,
                    None => self.room(outbox, route).await?,
                };
                rooms.insert(route.to_owned(), room);
            }
        }
        let takes = self.fair.allot(&rooms, groups_of(candidates));
        if takes.is_empty() {
            return Ok(true);
        }
        self.publish(outbox, &takes, &mut sims, &owners).await?;
        Ok(true)
    }

    /// Runs a statement that changes messages, with their webhook deliveries in the same
    /// transaction, then publishes their status events. Returns how many changed.
    async fn change(&mut self, change: Change) -> anyhow::Result<usize> {
        let mut tx = self.conn.begin().await?;
        let changed: Vec<MessageTally> = match change {
            Change::ReleaseDueScheduled => repo::release_due_scheduled(&mut tx).await?,
            Change::ExpireUnreleased => repo::expire_unreleased(&mut tx).await?,
        };
        progress::enqueue_webhooks(&mut tx, &changed).await?;
        tx.commit().await?;
        progress::publish_events(&self.events, &changed).await;
        Ok(changed.len())
    }

    /// How many jobs the HKT queue can take now: its target depth minus what is ready.
    /// (SIM routes are weighed by [`Round::sim_rooms`].)
    async fn room(&mut self, outbox: &Outbox, route: &str) -> anyhow::Result<u32> {
        if route != routing::HKT {
            warn!(route, "messages with an unknown route are not released");
            return Ok(0);
        }
        let ready = self.ready(&self.names.hkt_queue()).await?;
        let room = outbox.inner.settings.hkt_depth().saturating_sub(ready);
        Ok(room.min(MAX_JOBS_PER_ROUND))
    }

    /// Jobs ready in `queue` (declared already).
    async fn ready(&self, queue: &str) -> anyhow::Result<u32> {
        let declared = self
            .channel
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(declared.message_count())
    }

    /// Declares SIM `sim_id`'s queue once per lead (a job routed to a missing queue would
    /// be confirmed and dropped) and returns its name.
    async fn sim_queue(&mut self, outbox: &Outbox, sim_id: i64) -> anyhow::Result<String> {
        if self.sim_queues.insert(sim_id) {
            declare_sim_queue(&self.channel, &outbox.inner.queue, sim_id).await?;
        }
        Ok(self.names.sim_queue(sim_id))
    }

    /// What every SIM can take this round: its state and caps from the database, its ready
    /// jobs from the broker (online, active SIMs only: the others take nothing), and which
    /// SIMs the owners of pool messages may use.
    async fn sim_rooms(
        &mut self,
        outbox: &Outbox,
        candidates: &[repo::Candidate],
    ) -> anyhow::Result<SimRooms> {
        let settings = &outbox.inner.settings;
        let offline = settings.sim_offline_after.as_secs_f64();
        let states = pool_repo::sim_states(&mut self.conn, offline).await?;
        let mut ready = HashMap::new();
        for sim in states.iter().filter(|s| s.active && s.online) {
            let queue = self.sim_queue(outbox, sim.id).await?;
            ready.insert(sim.id, self.ready(&queue).await?);
        }
        let mut users: Vec<i64> = candidates
            .iter()
            .filter(|c| c.route == pool::POOL_ROUTE)
            .map(|c| c.user_id)
            .collect();
        users.sort_unstable();
        users.dedup();
        let usable = if users.is_empty() {
            Vec::new()
        } else {
            pool_repo::usable_sims(&mut self.conn, &users).await?
        };
        Ok(SimRooms::new(&states, &ready, usable, settings.sim_depth))
    }

    /// At most every [`FAILOVER_EVERY`]: empties the queues of SIMs that are offline or
    /// inactive back into the release queue, and moves work no SIM can take to HKT where
    /// its message allows it.
    async fn failover(&mut self, outbox: &Outbox) -> anyhow::Result<()> {
        if self
            .failover_at
            .is_some_and(|at| at.elapsed() < FAILOVER_EVERY)
        {
            return Ok(());
        }
        self.failover_at = Some(tokio::time::Instant::now());
        let metrics = &outbox.inner.metrics;
        let offline = outbox.inner.settings.sim_offline_after.as_secs_f64();
        let states = pool_repo::sim_states(&mut self.conn, offline).await?;
        metrics.sims(&states);
        for sim in states.iter().filter(|s| !s.active || !s.online) {
            let queue = self.sim_queue(outbox, sim.id).await?;
            if self.ready(&queue).await? > 0 {
                let moved = pool::drain(&self.channel, &mut self.conn, &queue, sim.id).await?;
                metrics.sim_jobs_requeued.inc_by(moved as u64);
            }
        }
        let to_hkt = pool_repo::fall_back_to_hkt(&mut self.conn, offline).await?;
        if to_hkt > 0 {
            info!(recipients = to_hkt, "SIM work with fallback moved to HKT");
            metrics.sim_jobs_to_hkt.inc_by(to_hkt as u64);
        }
        Ok(())
    }

    /// Publishes the takes' recipients and records how far each message got. A job for a
    /// SIM route is placed on a SIM first (`sims`); a message's release stops at its first
    /// recipient no SIM has room for. Placements are committed before anything is published.
    async fn publish(
        &mut self,
        outbox: &Outbox,
        takes: &[Take],
        sims: &mut SimRooms,
        owners: &HashMap<i64, i64>,
    ) -> anyhow::Result<()> {
        let ids: Vec<i64> = takes.iter().map(|t| t.message_id).collect();
        let after: Vec<i64> = takes.iter().map(|t| t.released_through).collect();
        let limits: Vec<i32> = takes.iter().map(|t| t.count as i32).collect();
        let recipients = repo::next_recipients(&mut self.conn, &ids, &after, &limits).await?;
        self.load_templates(&ids).await?;

        let mut by_message: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
        for r in recipients {
            by_message
                .entry(r.message_id)
                .or_default()
                .push((r.id, r.phone));
        }
        // Single-SIM work first: it can only go to its SIM, pool work to any.
        let mut order: Vec<usize> = (0..takes.len()).collect();
        order.sort_by_key(|i| pool::single_sim(&takes[*i].route).is_none());
        let mut outgoing = Vec::new();
        let mut assigned: Vec<(i64, i64)> = Vec::new();
        let mut through = vec![0; takes.len()];
        let mut published = vec![0; takes.len()];
        let mut exhausted = vec![false; takes.len()];
        for i in order {
            let take = &takes[i];
            let rows = by_message.remove(&take.message_id).unwrap_or_default();
            let fetched = rows.len();
            let to_sim = take.route.starts_with("sim");
            let owner = owners.get(&take.message_id).copied().unwrap_or_default();
            // A stored body that no longer parses can't be sent; its rows are passed over.
            let template = self.templates.get(&take.message_id);
            let body = template.and_then(|t| t.body.as_ref());
            let mut last = take.released_through;
            let mut taken: usize = 0;
            let mut cut = false;
            for (recipient_id, phone) in rows {
                let to = body.and_then(|_| PhoneNumber::parse(&phone).ok());
                if let (Some(body), Some(to), Some(template)) = (body, to, template) {
                    let routing_key = if to_sim {
                        let Some(sim) = sims.place(&take.route, owner) else {
                            cut = true;
                            break;
                        };
                        assigned.push((recipient_id, sim));
                        routing::sim(sim)
                    } else {
                        take.route.clone()
                    };
                    let job = OutboundJob::SendV1 {
                        recipient_id,
                        message_id: take.message_id,
                        to,
                        body: body.clone(),
                        valid_until: template.valid_until,
                    };
                    outgoing.push(OutgoingMessage {
                        routing_key,
                        payload: job.to_json(),
                        headers: job_headers_for(template.traceparent.as_deref()),
                    });
                }
                last = recipient_id;
                taken += 1;
            }
            through[i] = last;
            published[i] = taken as i32;
            exhausted[i] = !cut && fetched < take.count as usize;
            outbox.inner.metrics.released(take.priority, taken as u64);
        }
        let placed: Vec<i64> = assigned.iter().map(|(r, _)| *r).collect();
        if !assigned.is_empty() {
            let to: Vec<i64> = assigned.iter().map(|(_, s)| *s).collect();
            let (spaced, gaps) = sims.gaps(&mut rand::thread_rng());
            pool_repo::assign(&mut self.conn, &placed, &to, &spaced, &gaps).await?;
            for sim in to {
                outbox.inner.metrics.sim_released(sim);
            }
        }
        let jobs = outgoing.len() as u64;
        if let Err(e) = self.publisher.publish_all(outgoing).await {
            outbox.inner.metrics.jobs_failed.inc_by(jobs);
            // Never queued: released again next round (to whichever SIM has room then).
            if let Err(undo) = pool_repo::unassign(&mut self.conn, &placed).await {
                warn!(error = %undo, "SIM placements of unpublished jobs were not undone");
            }
            return Err(e.into());
        }
        outbox.inner.metrics.jobs_confirmed.inc_by(jobs);
        if !placed.is_empty() {
            pool_repo::confirm(&mut self.conn, &placed).await?;
        }
        repo::advance(
            &mut self.conn,
            &ids,
            &after,
            &through,
            &published,
            &exhausted,
        )
        .await?;
        Ok(())
    }

    /// Publishes again the SIM jobs whose placement an earlier releaser committed but whose
    /// publish it never saw confirmed (it died in between): otherwise their recipients stay
    /// placed on a SIM, pending and in no queue. At least once: a job that did reach its
    /// queue goes there twice, and its SIM's agent sends it once (it answers a recipient it
    /// has just handled from its recent results; the ingest takes one result).
    async fn publish_unconfirmed(&mut self, outbox: &Outbox) -> anyhow::Result<()> {
        let jobs = pool_repo::unconfirmed_jobs(&mut self.conn).await?;
        if jobs.is_empty() {
            return Ok(());
        }
        let mut outgoing = Vec::with_capacity(jobs.len());
        let mut ids = Vec::with_capacity(jobs.len());
        for job in &jobs {
            // Stored bodies passed the segment limit when they were accepted.
            let (Ok(body), Ok(to)) = (
                MessageBody::parse(&job.content, u32::MAX),
                PhoneNumber::parse(&job.phone),
            ) else {
                continue;
            };
            if self.sim_queues.insert(job.sim_card_id) {
                declare_sim_queue(&self.channel, &outbox.inner.queue, job.sim_card_id).await?;
            }
            let next = OutboundJob::SendV1 {
                recipient_id: job.recipient_id,
                message_id: job.message_id,
                to,
                body,
                valid_until: job.valid_until,
            };
            outgoing.push(OutgoingMessage {
                routing_key: routing::sim(job.sim_card_id),
                payload: next.to_json(),
                headers: job_headers_for(None),
            });
            ids.push(job.recipient_id);
        }
        let count = outgoing.len();
        self.publisher.publish_all(outgoing).await?;
        pool_repo::confirm(&mut self.conn, &ids).await?;
        warn!(
            jobs = count,
            "published again SIM jobs an earlier releaser had not seen confirmed"
        );
        Ok(())
    }

    /// Reads the job templates of messages not seen before in this lead.
    async fn load_templates(&mut self, ids: &[i64]) -> Result<(), sqlx::Error> {
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !self.templates.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.templates.len() > 10_000 {
            self.templates.clear();
        }
        for t in repo::job_templates(&mut self.conn, &missing).await? {
            self.templates.insert(
                t.id,
                Template {
                    // Bodies in the table passed the segment limit when they were accepted.
                    body: MessageBody::parse(&t.content, u32::MAX).ok(),
                    valid_until: t.valid_until,
                    traceparent: t.traceparent,
                },
            );
        }
        Ok(())
    }
}

/// The changes a round makes to whole messages.
#[derive(Clone, Copy)]
enum Change {
    /// Scheduled messages whose time came become `pending`.
    ReleaseDueScheduled,
    /// Messages whose validity ran out expire their unreleased recipients.
    ExpireUnreleased,
}

/// The candidates grouped per (route, priority, user), oldest message first.
fn groups_of(candidates: Vec<repo::Candidate>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(String, smsgate_shared::domain::Priority, i64), usize> = HashMap::new();
    for c in candidates {
        let key = (c.route.clone(), c.priority, c.user_id);
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                route: c.route.clone(),
                priority: c.priority,
                user_id: c.user_id,
                weight: c.weight.clamp(1, 100) as u32,
                messages: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].messages.push(Pending {
            message_id: c.message_id,
            released_through: c.released_through,
            unreleased: c.unreleased.max(1) as u32,
        });
    }
    for g in &mut groups {
        g.messages.sort_by_key(|m| m.message_id);
    }
    groups
}
