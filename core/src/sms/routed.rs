//! One send path for the JSON API and the panel: a send on the route asked for (the HKT
//! gateway, one SIM card, or any online SIM), at most once per idempotency key.

use smsgate_shared::domain::PhoneNumber;
use smsgate_shared::queue::{current_traceparent, routing};
use sqlx::PgPool;

use super::metrics::SendRoute;
use super::repo::NewMessage;
use super::service::{accept, AcceptError, Accepted, NewSend};
use crate::idempotency::{KeyClaim, PriorSend};
use crate::outbox::Outbox;
use crate::quota::QuotaError;
use crate::sims::repo;
use crate::sims::service::{SimStatus, OFFLINE_AFTER};

/// Why a routing request is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("sim_card_id cannot be combined with route `hkt`")]
    SimWithHkt,
    #[error("route must be `hkt` or `sim`")]
    Unknown,
}

/// Why a send was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The SIM asked for is missing or not usable by the sender (alike, so a SIM's
    /// existence is not revealed).
    #[error("no SIM card with id {0}")]
    UnknownSim(i64),
    #[error("SIM card {0} is inactive")]
    SimInactive(i64),
    /// Another request with the same idempotency key committed first and its message can
    /// no longer be read (it is normally replayed instead).
    #[error("another request with this idempotency key was accepted first")]
    KeyTaken,
    /// The idempotency key was used before, for `message_id`, with a different request.
    #[error("this idempotency key was already used with a different request")]
    KeyReused { message_id: i64 },
    /// A quota or allowance refused it; nothing was stored or counted.
    #[error(transparent)]
    Quota(QuotaError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl From<AcceptError> for SendError {
    fn from(err: AcceptError) -> SendError {
        match err {
            AcceptError::Database(e) => SendError::Database(e),
            AcceptError::KeyTaken => SendError::KeyTaken,
            AcceptError::Quota(e) => SendError::Quota(e),
        }
    }
}

/// Where a send goes, as the request asked for it.
pub enum RouteRequest {
    /// No routing given: the HKT gateway, as before.
    Hkt,
    /// Through this SIM card.
    Sim(i64),
    /// Through any active, online SIM, round-robin; HKT when none is online.
    AnySim,
}

impl RouteRequest {
    pub fn parse(
        sim_card_id: Option<i64>,
        route: Option<&str>,
    ) -> Result<RouteRequest, RouteError> {
        match (sim_card_id, route.map(str::trim)) {
            (Some(id), None | Some("sim")) => Ok(RouteRequest::Sim(id)),
            (None, None | Some("") | Some("hkt")) => Ok(RouteRequest::Hkt),
            (None, Some("sim")) => Ok(RouteRequest::AnySim),
            (Some(_), Some("hkt")) => Err(RouteError::SimWithHkt),
            _ => Err(RouteError::Unknown),
        }
    }

    /// The routing asked for, as an idempotency fingerprint records it.
    pub fn label(&self) -> String {
        match self {
            RouteRequest::Hkt => "hkt".to_owned(),
            RouteRequest::Sim(id) => format!("sim:{id}"),
            RouteRequest::AnySim => "sim:any".to_owned(),
        }
    }
}

/// A message accepted, with the SIM it goes out through (`None`: HKT).
pub struct RoutedAccepted {
    pub accepted: Accepted,
    pub sender_sim: Option<String>,
}

/// Whether a send with an idempotency key was stored now or answered from the earlier
/// request that used the key.
pub enum SendOnce {
    Stored(RoutedAccepted),
    Replayed(RoutedAccepted),
}

impl SendOnce {
    /// The acceptance, and whether it is a replay.
    pub fn into_parts(self) -> (RoutedAccepted, bool) {
        match self {
            SendOnce::Stored(accepted) => (accepted, false),
            SendOnce::Replayed(accepted) => (accepted, true),
        }
    }
}

impl RoutedAccepted {
    /// The route it was accepted for, as the metrics label it.
    pub fn route(&self) -> SendRoute {
        match self.sender_sim {
            Some(_) => SendRoute::Sim,
            None => SendRoute::Hkt,
        }
    }
}

/// Accepts a send on the route asked for: HKT through [`accept`] as before, a SIM through
/// its own queue. [`SendError::UnknownSim`] for a SIM that is missing or not usable by the
/// user (alike, so a SIM's existence is not revealed), [`SendError::SimInactive`] for an
/// inactive one; any online SIM means one of those usable by the user. With a `claim`, its
/// key is recorded in the message's transaction ([`SendError::KeyTaken`] if another request
/// recorded it first; [`accept_send_once`] turns that into a replay).
pub async fn accept_send(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    route: RouteRequest,
    claim: Option<&KeyClaim>,
) -> Result<RoutedAccepted, SendError> {
    let sim = match route {
        RouteRequest::Hkt => None,
        RouteRequest::Sim(id) => {
            let sim = repo::find_sim_usable_by(db, id, user_id)
                .await?
                .ok_or(SendError::UnknownSim(id))?;
            if sim.status != SimStatus::Active.as_str() {
                return Err(SendError::SimInactive(id));
            }
            repo::touch_sim(db, id).await?;
            Some((sim.id, sim.number))
        }
        RouteRequest::AnySim => {
            repo::take_next_online_sim(db, OFFLINE_AFTER.as_secs_f64(), user_id).await?
        }
    };
    let Some((sim_id, number)) = sim else {
        let accepted = accept(db, outbox, user_id, send, claim).await?;
        return Ok(RoutedAccepted {
            accepted,
            sender_sim: None,
        });
    };
    let accepted = accept_via_sim(db, outbox, user_id, send, sim_id, claim).await?;
    Ok(RoutedAccepted {
        accepted,
        sender_sim: Some(number),
    })
}

/// [`accept_send`] at most once per idempotency key: a key this user already sent with is
/// answered with that message ([`SendError::KeyReused`] if the request differs), and of two
/// requests racing with one key, the one that commits second is answered with the first
/// one's message. The JSON API and the panel's compose form both send through here.
#[tracing::instrument(name = "sms.accept_once", skip_all, fields(user.id = user_id, replayed))]
pub async fn accept_send_once(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    route: RouteRequest,
    claim: &KeyClaim,
) -> Result<SendOnce, SendError> {
    if let Some(prior) = claim.prior(db, user_id).await? {
        return replay(prior);
    }
    match accept_send(db, outbox, user_id, send, route, Some(claim)).await {
        Ok(stored) => Ok(SendOnce::Stored(stored)),
        Err(SendError::KeyTaken) => match claim.prior(db, user_id).await? {
            Some(prior) => replay(prior),
            None => Err(SendError::KeyTaken),
        },
        Err(e) => Err(e),
    }
}

fn replay(prior: PriorSend) -> Result<SendOnce, SendError> {
    tracing::Span::current().record("replayed", true);
    if !prior.same_request {
        return Err(SendError::KeyReused {
            message_id: prior.message_id,
        });
    }
    Ok(SendOnce::Replayed(RoutedAccepted {
        accepted: Accepted::from(&prior),
        sender_sim: prior.sender_sim,
    }))
}

/// Stores the message with route `sim.<id>` and wakes the releaser, which publishes its
/// jobs to that SIM's queue a few at a time. Kept apart from the HKT path on purpose: that
/// path is tuned for 100,000-recipient bulks, a modem sends a few SMS a minute.
#[tracing::instrument(name = "sms.accept_via_sim", skip_all, fields(user.id = user_id, sim.id = sim_id, message.id))]
async fn accept_via_sim(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    sim_id: i64,
    claim: Option<&KeyClaim>,
) -> Result<Accepted, AcceptError> {
    let route = routing::sim(sim_id);
    let total = send.recipients.len();
    let phones: Vec<&str> = send.recipients.iter().map(PhoneNumber::as_str).collect();
    let message = NewMessage {
        body: &send.body,
        route: &route,
        options: &send.options,
        traceparent: current_traceparent(),
    };
    let mut tx = db.begin().await?;
    let (id, created_at) = super::repo::insert_message(&mut tx, user_id, &message, total).await?;
    repo::insert_sim_recipients(&mut tx, id, &phones).await?;
    let opted_out = crate::optout::mark_accepted(&mut tx, id, user_id, total).await?;
    if let Some(claim) = claim {
        if !claim.record(&mut tx, user_id, id).await? {
            return Err(AcceptError::KeyTaken); // dropping `tx` rolls the message back
        }
    }
    super::service::charge_quotas(&mut tx, user_id, &send).await?;
    tx.commit().await?;
    tracing::Span::current().record("message.id", id);
    outbox.wake();
    Ok(Accepted {
        id,
        status: opted_out.unwrap_or_else(|| send.options.initial_status()),
        total,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_requests_parse_as_the_edge_gateway_clients_send_them() {
        assert!(matches!(
            RouteRequest::parse(None, None),
            Ok(RouteRequest::Hkt)
        ));
        assert!(matches!(
            RouteRequest::parse(Some(3), None),
            Ok(RouteRequest::Sim(3))
        ));
        assert!(matches!(
            RouteRequest::parse(None, Some("sim")),
            Ok(RouteRequest::AnySim)
        ));
        assert!(RouteRequest::parse(Some(3), Some("hkt")).is_err());
        assert!(RouteRequest::parse(None, Some("carrier-pigeon")).is_err());
    }
}
