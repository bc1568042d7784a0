//! The agent's four tasks and how they hand work to each other:
//!
//! - the **modem task** owns the AT session: it serves sends and status queries, reads
//!   received SMS and status reports, and resets the modem when it stops answering;
//! - the **consumer** takes the SIM's jobs from RabbitMQ (prefetch 1), has the modem task
//!   send them, publishes the result and only then acks;
//! - the **publisher** publishes received SMS and delivery reports, retrying while the
//!   broker is away, and has the modem task delete an SMS from the SIM only once the broker
//!   confirmed it;
//! - the **heartbeat** asks the modem for its state every interval and publishes it.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use smsgate_shared::queue::edge::ingest_queue;
use smsgate_shared::queue::edge::{EdgeEvent, SimSendOutcome};
use smsgate_shared::queue::{attempt_of, Broker, BrokerError, Names, OutboundJob, OutgoingMessage};
use smsgate_shared::telemetry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::at::{AtError, Urc};
use crate::inbound::{Assembled, PartSource, Reassembler};
use crate::job::{self, Outcome, SmsSender};
use crate::modem::{Modem, ModemStatus, Timeouts};
use crate::pdu::{self, PduError};
use crate::port::ModemPort;
use crate::settings::Settings;
use crate::spool::Spool;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the spool directory {0}")]
    Spool(PathBuf, #[source] std::io::Error),
    #[error("AMQP_URL must name this SIM's broker user (amqp://<user>:<password>@host/vhost; the API shows the login when the SIM is registered)")]
    NoBrokerUser,
}

/// Longest a publish may wait for the broker's confirm: a half-open connection (a flaky
/// network) must not stall the agent; the event is retried instead.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Results of recent jobs, kept so a job redelivered after its result was published but
/// before the ack (broker lost in between) is not sent twice.
const RECENT_RESULTS: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running agent.
pub struct RunningAgent {
    shutdown: CancellationToken,
    broker: Broker,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// Stops consuming, lets a send in progress finish, closes the broker connection.
    /// Unacked jobs return to the queue; unpublished SMS stay on the SIM or in the spool.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.broker.close().await;
    }
}

struct Ctx {
    settings: Settings,
    names: Names,
    broker: Broker,
    /// The broker user this agent connects as: every event carries it as `user_id`, which
    /// RabbitMQ checks and the ingest compares with the SIM the event names.
    broker_user: String,
    /// Cleared after a failed publish so the next one checks again: the broker may have
    /// come back without our queues.
    topology_ready: AtomicBool,
}

impl Ctx {
    /// Checks that the SIM's queue, the edge exchange and the ingest queue exist. Passive
    /// declares only: the agent's broker user may configure nothing (the API declares
    /// them when the SIM is registered, the dispatchers at every start), and an event
    /// published before the ingest queue is bound would be confirmed and lost.
    async fn ensure_topology(&self) -> Result<(), BrokerError> {
        if !self.topology_ready.load(Ordering::Relaxed) {
            let channel = self.broker.channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            for queue in [
                self.names.sim_queue(self.settings.sim_id),
                ingest_queue(&self.names),
            ] {
                channel
                    .queue_declare(&queue, passive, FieldTable::default())
                    .await?;
            }
            channel
                .exchange_declare(
                    &self.names.edge_exchange(),
                    lapin::ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let _ = channel.close(200, "topology checked").await;
            self.topology_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Publishes one event and waits for the broker's confirm.
    async fn publish_event(&self, event: &EdgeEvent) -> Result<(), BrokerError> {
        let publish = async {
            self.ensure_topology().await?;
            let mut headers = FieldTable::default();
            telemetry::inject_current_context(&mut headers);
            self.broker
                .publisher(self.names.edge_exchange())
                .with_user_id(self.broker_user.clone())
                .publish_one(OutgoingMessage {
                    routing_key: event.routing_key(),
                    payload: event.to_json(),
                    headers,
                })
                .await
        };
        let result = match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(result) => result,
            Err(_) => Err(BrokerError::ConnectTimeout(PUBLISH_TIMEOUT)),
        };
        if result.is_err() {
            self.topology_ready.store(false, Ordering::Relaxed);
        }
        result
    }
}

enum ModemRequest {
    Send {
        job: OutboundJob,
        reply: oneshot::Sender<Outcome>,
    },
    Status {
        reply: oneshot::Sender<ModemStatus>,
    },
    /// Delete SMS from the SIM: the broker confirmed them.
    Delete {
        indices: Vec<u32>,
    },
}

/// An event for the publisher, with the places it is kept until the broker confirmed it.
struct Pending {
    event: EdgeEvent,
    sources: Vec<PartSource>,
}

/// Starts the agent's tasks. Returns at once: the modem and the broker are (re)connected
/// in the background, with backoff, for as long as the agent runs.
pub async fn start<P: ModemPort>(settings: Settings, port: P) -> Result<RunningAgent, StartError> {
    let spool = Spool::open(&settings.spool_dir)
        .map_err(|e| StartError::Spool(settings.spool_dir.clone(), e))?;
    let spooled = spool
        .load()
        .map_err(|e| StartError::Spool(settings.spool_dir.clone(), e))?;
    let broker = Broker::new(&settings.queue.amqp_url);
    let broker_user = broker.username().ok_or(StartError::NoBrokerUser)?;
    let names = Names::new(&settings.queue.prefix);
    let expected = smsgate_shared::queue::edge::sim_broker_user(&names, settings.sim_id);
    if broker_user != expected {
        // Not fatal: a test or a migration may run with another user; the ingest refuses
        // its events, and this line says why.
        warn!(user = %broker_user, expected = %expected, "AMQP_URL's user is not this SIM's broker user: the central side will refuse every event");
    }
    let ctx = Arc::new(Ctx {
        names,
        settings,
        broker: broker.clone(),
        broker_user,
        topology_ready: AtomicBool::new(false),
    });
    let sim_id = ctx.settings.sim_id;

    // What an earlier run left in the spool is published first.
    let mut reassembler = Reassembler::new(ctx.settings.incomplete_sms);
    let mut initial: Vec<Pending> = spooled
        .events
        .into_iter()
        .map(|(path, event)| Pending {
            event,
            sources: vec![PartSource::Spool(path)],
        })
        .collect();
    for (path, raw) in spooled.pdus {
        match pdu::decode_deliver(&raw) {
            Ok(part) => {
                let now = std::time::Instant::now();
                for done in reassembler.add(sim_id, PartSource::Spool(path), part, Utc::now(), now)
                {
                    log_released(&done, &reassembler);
                    initial.push(pending_of(done));
                }
            }
            Err(e) => warn!(error = %e, "undecodable spooled SMS left in the spool"),
        }
    }

    let shutdown = CancellationToken::new();
    let spool = Arc::new(spool);
    let (requests, request_rx) = mpsc::channel(16);
    let (pending, pending_rx) = mpsc::unbounded_channel();
    let span = info_span!("modem_agent", sim.id = sim_id);
    let tasks = vec![
        tokio::spawn(
            run_modem(
                ModemTask {
                    ctx: ctx.clone(),
                    spool: spool.clone(),
                    pending,
                    reassembler,
                    handed_off: HashSet::new(),
                },
                port,
                request_rx,
                shutdown.clone(),
            )
            .instrument(span.clone()),
        ),
        tokio::spawn(
            run_publisher(
                ctx.clone(),
                spool,
                pending_rx,
                requests.clone(),
                initial,
                shutdown.clone(),
            )
            .instrument(span.clone()),
        ),
        tokio::spawn(
            run_consumer(ctx.clone(), requests.clone(), shutdown.clone()).instrument(span.clone()),
        ),
        tokio::spawn(run_heartbeat(ctx, requests, shutdown.clone()).instrument(span)),
    ];
    Ok(RunningAgent {
        shutdown,
        broker,
        tasks,
    })
}

/// An incomplete SMS given up is worth a warning (a flood of fragments shows up here);
/// complete ones are routine.
fn log_released(done: &Assembled, reassembler: &Reassembler) {
    match done.incomplete {
        None => info!(parts = done.sources.len(), "received an SMS"),
        Some(incomplete) => warn!(
            reason = incomplete.reason.as_str(),
            received = incomplete.received,
            total = incomplete.total,
            given_up_total = reassembler.given_up(),
            waiting_parts = reassembler.waiting(),
            "gave up waiting for the missing parts of an SMS; publishing what arrived"
        ),
    }
}

fn pending_of(done: Assembled) -> Pending {
    Pending {
        event: done.event,
        sources: done.sources,
    }
}

async fn sleep_or_stop(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

// ---------------------------------------------------------------------------------------
// The modem task

struct ModemTask {
    ctx: Arc<Ctx>,
    spool: Arc<Spool>,
    pending: mpsc::UnboundedSender<Pending>,
    reassembler: Reassembler,
    /// SIM indices handed to the publisher and not yet deleted: a sweep after a reset
    /// must not publish them again.
    handed_off: HashSet<u32>,
}

/// What one turn of the modem loop came to.
enum Step {
    Done,
    /// The link is in doubt: reopen the port and initialise again.
    Reset(String),
}

/// The modem's send path, remembering whether the link failed under it.
struct ModemSender<'a, L> {
    modem: &'a mut Modem<L>,
    delivery_reports: bool,
    link_failed: Option<String>,
}

impl<L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static> SmsSender
    for ModemSender<'_, L>
{
    async fn send_sms(
        &mut self,
        to: &smsgate_shared::domain::PhoneNumber,
        body: &smsgate_shared::domain::MessageBody,
    ) -> Result<Vec<u8>, AtError> {
        let result = self.modem.send_sms(to, body, self.delivery_reports).await;
        if let Err(e) = &result {
            if e.needs_reset() {
                self.link_failed = Some(e.to_string());
            }
        }
        result
    }
}

enum Wake {
    Stop,
    Request(ModemRequest),
    Urc(Result<Urc, AtError>),
    Quiet,
    /// The oldest incomplete SMS reached its age limit.
    Expire,
}

async fn run_modem<P: ModemPort>(
    mut task: ModemTask,
    port: P,
    mut requests: mpsc::Receiver<ModemRequest>,
    shutdown: CancellationToken,
) {
    let settings = &task.ctx.settings.clone();
    let timeouts = Timeouts {
        command: settings.command_timeout,
        send: settings.send_timeout,
    };
    let pin = settings.pin.as_ref().map(|p| p.expose_secret().to_owned());
    let mut backoff = Duration::from_millis(200);
    'connect: while !shutdown.is_cancelled() {
        let opened = async {
            let link = port.open().await.map_err(AtError::Io)?;
            Modem::initialise(link, pin.as_deref(), timeouts).await
        };
        let mut modem = match opened.await {
            Ok(modem) => modem,
            Err(e) => {
                warn!(error = %e, port = %port.describe(), "modem not ready; retrying in {backoff:?}");
                if !sleep_or_stop(backoff, &shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        info!(port = %port.describe(), "modem ready");
        // Whatever was received while we were away (agent stopped, modem reset) is on the SIM.
        if let Step::Reset(why) = task.sweep(&mut modem).await {
            warn!(error = %why, "modem stopped answering during the sweep; resetting it");
            continue;
        }
        let mut last_heard = Instant::now();
        loop {
            let quiet_at = last_heard + settings.silence_timeout;
            let expiry = task.reassembler.next_expiry();
            let wake = tokio::select! {
                _ = shutdown.cancelled() => Wake::Stop,
                request = requests.recv() => request.map_or(Wake::Stop, Wake::Request),
                urc = modem.next_urc() => Wake::Urc(urc),
                _ = tokio::time::sleep_until(quiet_at) => Wake::Quiet,
                _ = sleep_until_some(expiry) => Wake::Expire,
            };
            let step = match wake {
                Wake::Stop => break 'connect,
                Wake::Request(request) => task.serve(request, &mut modem).await,
                Wake::Urc(Ok(urc)) => task.on_urc(urc, &mut modem).await,
                Wake::Urc(Err(e)) => Step::Reset(e.to_string()),
                // Not the modem speaking: the silence timer runs on.
                Wake::Expire => {
                    task.release_expired();
                    continue;
                }
                // Silence is normal on a quiet SIM; a probe tells it from a hung modem.
                Wake::Quiet => match modem.probe().await {
                    Ok(()) => Step::Done,
                    Err(e) => Step::Reset(e.to_string()),
                },
            };
            match step {
                Step::Done => last_heard = Instant::now(),
                Step::Reset(why) => {
                    warn!(error = %why, "modem stopped answering; resetting it");
                    continue 'connect;
                }
            }
        }
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl ModemTask {
    async fn serve<L>(&mut self, request: ModemRequest, modem: &mut Modem<L>) -> Step
    where
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        match request {
            ModemRequest::Send { job, reply } => {
                let mut sender = ModemSender {
                    modem,
                    delivery_reports: self.ctx.settings.delivery_reports,
                    link_failed: None,
                };
                let outcome = job::handle(&job, &mut sender).await;
                let link_failed = sender.link_failed;
                let _ = reply.send(outcome);
                link_failed.map_or(Step::Done, Step::Reset)
            }
            ModemRequest::Status { reply } => {
                if reply.is_closed() {
                    return Step::Done; // asked while the modem was resetting; nobody waits
                }
                match modem.status().await {
                    Ok(status) => {
                        let _ = reply.send(status);
                        Step::Done
                    }
                    Err(e) if e.needs_reset() => Step::Reset(e.to_string()),
                    Err(e) => {
                        debug!(error = %e, "status query failed");
                        Step::Done
                    }
                }
            }
            ModemRequest::Delete { indices } => {
                for index in indices {
                    match modem.delete(index).await {
                        Ok(()) => {
                            self.handed_off.remove(&index);
                        }
                        Err(e) if e.needs_reset() => return Step::Reset(e.to_string()),
                        // Already gone (deleted by hand): nothing left to do.
                        Err(e) => {
                            debug!(error = %e, index, "delete failed");
                            self.handed_off.remove(&index);
                        }
                    }
                }
                Step::Done
            }
        }
    }

    async fn on_urc<L>(&mut self, urc: Urc, modem: &mut Modem<L>) -> Step
    where
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        match urc {
            Urc::NewMessage { index } | Urc::StoredStatusReport { index } => {
                if self.handed_off.contains(&index) {
                    return Step::Done;
                }
                match modem.read(index).await {
                    Ok(Some(pdu)) => self.take_stored(index, &pdu, modem).await,
                    Ok(None) => Step::Done,
                    Err(e) if e.needs_reset() => Step::Reset(e.to_string()),
                    Err(e) => {
                        warn!(error = %e, index, "could not read a received SMS; the next sweep retries");
                        Step::Done
                    }
                }
            }
            Urc::Deliver { pdu } => {
                // Not stored on the SIM: the spool is its only copy until the broker confirms.
                match self.spool.save_pdu(&pdu) {
                    Ok(path) => match pdu::decode_deliver(&pdu) {
                        Ok(part) => self.add_part(PartSource::Spool(path), part),
                        Err(e) => warn!(error = %e, "undecodable +CMT SMS kept in the spool"),
                    },
                    Err(e) => error!(error = %e, "could not spool a received SMS; it is lost"),
                }
                Step::Done
            }
            Urc::StatusReport { pdu } => {
                match pdu::decode_status_report(&pdu) {
                    Ok(report) if report.is_final() => {
                        let event = self.report_event(&report);
                        match self.spool.save_event(&event) {
                            Ok(path) => self.hand_off(event, vec![PartSource::Spool(path)]),
                            Err(e) => {
                                warn!(error = %e, "could not spool a delivery report; publishing it unspooled");
                                self.hand_off(event, Vec::new());
                            }
                        }
                    }
                    Ok(_) => debug!("intermediate status report ignored"),
                    Err(e) => warn!(error = %e, "undecodable status report ignored"),
                }
                Step::Done
            }
        }
    }

    /// Lists the SIM and takes every stored message not already handed off.
    async fn sweep<L>(&mut self, modem: &mut Modem<L>) -> Step
    where
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let stored = match modem.list().await {
            Ok(stored) => stored,
            Err(e) if e.needs_reset() => return Step::Reset(e.to_string()),
            Err(e) => {
                warn!(error = %e, "could not list the SIM's messages");
                return Step::Done;
            }
        };
        for message in stored {
            if self.handed_off.contains(&message.index) {
                continue;
            }
            if let Step::Reset(why) = self.take_stored(message.index, &message.pdu, modem).await {
                return Step::Reset(why);
            }
        }
        Step::Done
    }

    async fn take_stored<L>(&mut self, index: u32, raw: &str, modem: &mut Modem<L>) -> Step
    where
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        match pdu::decode_deliver(raw) {
            Ok(part) => self.add_part(PartSource::Sim(index), part),
            Err(PduError::WrongType(2, _)) => match pdu::decode_status_report(raw) {
                Ok(report) => {
                    self.handed_off.insert(index);
                    let event = self.report_event(&report);
                    self.hand_off(event, vec![PartSource::Sim(index)]);
                }
                Err(e) => return self.discard(index, &e, modem).await,
            },
            Err(e) => return self.discard(index, &e, modem).await,
        }
        Step::Done
    }

    /// An SMS no text can be made of (binary data such as an MMS notification, a corrupt
    /// PDU) is deleted: left on the SIM it would fill the storage and block every later SMS.
    async fn discard<L>(&mut self, index: u32, why: &PduError, modem: &mut Modem<L>) -> Step
    where
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        warn!(error = %why, index, "deleting an undecodable SMS from the SIM");
        match modem.delete(index).await {
            Err(e) if e.needs_reset() => Step::Reset(e.to_string()),
            _ => Step::Done,
        }
    }

    fn add_part(&mut self, source: PartSource, part: pdu::Deliver) {
        if let PartSource::Sim(index) = source {
            self.handed_off.insert(index);
        }
        let sim_id = self.ctx.settings.sim_id;
        let now = std::time::Instant::now();
        for done in self.reassembler.add(sim_id, source, part, Utc::now(), now) {
            self.release(done);
        }
    }

    fn release_expired(&mut self) {
        let sim_id = self.ctx.settings.sim_id;
        let now = std::time::Instant::now();
        for done in self.reassembler.expire(sim_id, Utc::now(), now) {
            self.release(done);
        }
    }

    /// Publishes a (possibly incomplete) SMS; its parts leave the SIM once confirmed.
    fn release(&self, done: Assembled) {
        log_released(&done, &self.reassembler);
        let pending = pending_of(done);
        self.hand_off(pending.event, pending.sources);
    }

    fn report_event(&self, report: &pdu::StatusReport) -> EdgeEvent {
        EdgeEvent::DeliveryReportV1 {
            sim_id: self.ctx.settings.sim_id,
            reference: report.reference,
            recipient: report.recipient.clone(),
            delivered: report.delivered(),
            status: report.status,
            at: Utc::now(),
        }
    }

    fn hand_off(&self, event: EdgeEvent, sources: Vec<PartSource>) {
        // The publisher outlives the modem task; if it is gone the agent is stopping and
        // the SMS stays on the SIM (or in the spool) for the next start.
        let _ = self.pending.send(Pending { event, sources });
    }
}

// ---------------------------------------------------------------------------------------
// The publisher

async fn run_publisher(
    ctx: Arc<Ctx>,
    spool: Arc<Spool>,
    mut incoming: mpsc::UnboundedReceiver<Pending>,
    requests: mpsc::Sender<ModemRequest>,
    initial: Vec<Pending>,
    shutdown: CancellationToken,
) {
    let mut queue: VecDeque<Pending> = initial.into();
    let mut backoff = Duration::from_millis(200);
    loop {
        if queue.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = incoming.recv() => match next {
                    Some(p) => queue.push_back(p),
                    None => return,
                },
            }
        }
        while let Ok(p) = incoming.try_recv() {
            queue.push_back(p);
        }
        let front = queue.front().expect("the queue is not empty here");
        match ctx.publish_event(&front.event).await {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                let done = queue.pop_front().expect("front exists");
                let mut indices = Vec::new();
                for source in done.sources {
                    match source {
                        PartSource::Sim(index) => indices.push(index),
                        PartSource::Spool(path) => spool.remove(&path),
                    }
                }
                // Only now, with the broker's confirm, may the SIM forget the SMS.
                if !indices.is_empty()
                    && requests
                        .send(ModemRequest::Delete { indices })
                        .await
                        .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, waiting = queue.len(), "broker unavailable; received SMS wait on the SIM");
                if !sleep_or_stop(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The consumer

async fn run_consumer(
    ctx: Arc<Ctx>,
    requests: mpsc::Sender<ModemRequest>,
    shutdown: CancellationToken,
) {
    let mut recent: VecDeque<(i64, EdgeEvent)> = VecDeque::with_capacity(RECENT_RESULTS);
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&ctx, &requests, &mut recent, &mut backoff, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                ctx.topology_ready.store(false, Ordering::Relaxed);
                warn!(error = %e, "lost the broker; reconnecting in {backoff:?}");
                if !sleep_or_stop(backoff, &shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("broker protocol error")]
    Lapin(#[from] lapin::Error),
    #[error("the broker closed the consumer")]
    Closed,
}

async fn consume(
    ctx: &Ctx,
    requests: &mpsc::Sender<ModemRequest>,
    recent: &mut VecDeque<(i64, EdgeEvent)>,
    backoff: &mut Duration,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    ctx.topology_ready.store(false, Ordering::Relaxed);
    ctx.ensure_topology().await?;
    let channel = ctx.broker.channel().await?;
    // Prefetch 1: a modem sends one SMS at a time, so a second job would only wait here
    // unacked; in the queue it is visible and safe if this Pi dies.
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let queue = ctx.names.sim_queue(ctx.settings.sim_id);
    let mut consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    *backoff = Duration::from_millis(200);
    info!(queue = %queue, "consuming the SIM's jobs");
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = channel.basic_cancel(consumer.tag().as_str(), Default::default()).await;
                return Ok(());
            }
            next = consumer.next() => next,
        };
        let delivery = next.ok_or(ConsumeError::Closed)??;
        process(ctx, delivery, requests, recent).await?;
    }
}

/// One job: send it (unless a recent result for its recipient exists), publish the
/// result or schedule the retry, then ack. Ack comes last: if anything before it fails the
/// job is redelivered, and the recent results keep that from sending twice.
async fn process(
    ctx: &Ctx,
    delivery: Delivery,
    requests: &mpsc::Sender<ModemRequest>,
    recent: &mut VecDeque<(i64, EdgeEvent)>,
) -> Result<(), ConsumeError> {
    let job = match OutboundJob::from_json(&delivery.data) {
        Ok(job) => job,
        Err(e) => {
            // Jobs come from the releaser only, so this is a version mismatch. The agent
            // may write nowhere but the edge exchange, so the job is dropped, not buried;
            // its recipient stays pending, where `GET /api/sms/{id}` shows it.
            error!(error = %e, "unparseable job dropped; is this agent older than the servers?");
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await?;
            return Ok(());
        }
    };
    let span = info_span!(
        "modem.job",
        message.id = job.message_id(),
        recipient.id = job.recipient_id()
    );
    telemetry::set_parent_from_headers(&span, delivery.properties.headers().as_ref());
    async {
        let attempt = attempt_of(delivery.properties.headers().as_ref());
        let known = recent
            .iter()
            .find(|(id, _)| *id == job.recipient_id())
            .map(|(_, event)| event.clone());
        let event = match known {
            Some(event) => {
                info!("job already handled; publishing its result again");
                event
            }
            None => {
                let (reply, outcome) = oneshot::channel();
                if requests
                    .send(ModemRequest::Send {
                        job: job.clone(),
                        reply,
                    })
                    .await
                    .is_err()
                {
                    return Ok(()); // stopping: the job returns to the queue unacked
                }
                let Ok(outcome) = outcome.await else {
                    return Ok(());
                };
                let event = result_event(ctx, &job, attempt, outcome);
                // Only final results: the retry of a transient failure comes back as the
                // same recipient's job and must be sent, not answered from here.
                if !matches!(
                    event,
                    EdgeEvent::SimSendResultV1 {
                        outcome: SimSendOutcome::Retry,
                        ..
                    }
                ) {
                    if recent.len() == RECENT_RESULTS {
                        recent.pop_front();
                    }
                    recent.push_back((job.recipient_id(), event.clone()));
                }
                event
            }
        };
        ctx.publish_event(&event).await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// The result event of an attempt. A transient failure is reported as
/// [`SimSendOutcome::Retry`]: the central side schedules the next attempt (the agent may
/// not publish to the retry queues, which lead to every route).
fn result_event(ctx: &Ctx, job: &OutboundJob, attempt: u32, outcome: Outcome) -> EdgeEvent {
    let (outcome, references, error) = match outcome {
        Outcome::Sent { references } => {
            info!(parts = references.len(), "sent");
            (SimSendOutcome::Sent, references, None)
        }
        Outcome::Permanent { error } => {
            warn!(error = %error, "send failed permanently");
            (SimSendOutcome::Failed, Vec::new(), Some(error))
        }
        Outcome::Transient { error } => {
            warn!(error = %error, attempt, "send failed; reporting it for a retry");
            (SimSendOutcome::Retry, Vec::new(), Some(error))
        }
    };
    EdgeEvent::SimSendResultV1 {
        sim_id: ctx.settings.sim_id,
        recipient_id: job.recipient_id(),
        message_id: job.message_id(),
        outcome,
        references,
        error,
        attempts: attempt,
        at: Utc::now(),
    }
}

// ---------------------------------------------------------------------------------------
// The heartbeat

async fn run_heartbeat(
    ctx: Arc<Ctx>,
    requests: mpsc::Sender<ModemRequest>,
    shutdown: CancellationToken,
) {
    let interval = ctx.settings.heartbeat_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (reply, status) = oneshot::channel();
        if requests.send(ModemRequest::Status { reply }).await.is_err() {
            return;
        }
        // No answer within the interval: the modem is busy or resetting. Skipping the
        // heartbeat is the truth: the panel shows the SIM offline after three.
        let Ok(Ok(status)) = tokio::time::timeout(interval, status).await else {
            debug!("no heartbeat this interval: the modem did not answer");
            continue;
        };
        let event = EdgeEvent::HeartbeatV1 {
            sim_id: ctx.settings.sim_id,
            number: Some(ctx.settings.sim_number.as_str().to_owned()),
            signal: status.signal,
            registration: status.registration,
            operator: status.operator,
            at: Utc::now(),
        };
        if let Err(e) = ctx.publish_event(&event).await {
            debug!(error = %e, "heartbeat not published");
        }
    }
}
