//! One send path for the JSON API and the panel: a send on the route asked for (the HKT
//! gateway, one SIM card, or the pool of SIMs), at most once per idempotency key.

use smsgate_shared::domain::PhoneNumber;
use smsgate_shared::queue::{current_traceparent, routing};
use sqlx::PgPool;

use super::metrics::SendRoute;
use super::repo::NewMessage;
use super::service::{accept, AcceptError, Accepted, NewSend};
use crate::idempotency::{KeyClaim, PriorSend};
use crate::outbox::pool::POOL_ROUTE;
use crate::outbox::Outbox;
use crate::quota::QuotaError;
use crate::sims::repo;
use crate::sims::service::SimStatus;

/// Why a routing request is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("sim_card_id cannot be combined with route `hkt`")]
    SimWithHkt,
    #[error("route must be `hkt` or `sim`")]
    Unknown,
    #[error("fallback must be `hkt` or `none`")]
    UnknownFallback,
    #[error("fallback applies to SIM routes only, not to route `hkt`")]
    FallbackWithHkt,
}

impl RouteError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            RouteError::UnknownFallback | RouteError::FallbackWithHkt => "fallback",
            RouteError::SimWithHkt | RouteError::Unknown => "route",
        }
    }
}

/// What happens to SIM work no SIM can take, as the request's `fallback` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Not given: a pool send goes to HKT when no usable SIM is online as it is accepted
    /// (the old gateway's behaviour), and otherwise waits for a SIM.
    Unset,
    /// `"hkt"`: as `Unset`, and work left when every usable SIM goes offline later moves
    /// to HKT too.
    Hkt,
    /// `"none"`: always waits for a SIM.
    None,
}

impl Fallback {
    pub fn parse(raw: Option<&str>) -> Result<Fallback, RouteError> {
        match raw.map(str::trim) {
            None => Ok(Fallback::Unset),
            Some("hkt") => Ok(Fallback::Hkt),
            Some("none") => Ok(Fallback::None),
            Some(_) => Err(RouteError::UnknownFallback),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Fallback::Unset => "",
            Fallback::Hkt => ":hkt",
            Fallback::None => ":none",
        }
    }
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
    /// Through this SIM card; with [`Fallback::Hkt`], to HKT while that SIM is unavailable.
    Sim(i64, Fallback),
    /// Spread over every active, online SIM the sender may use (the pool, released within
    /// each SIM's caps); see [`Fallback`] for when none is online.
    AnySim(Fallback),
}

impl RouteRequest {
    pub fn parse(
        sim_card_id: Option<i64>,
        route: Option<&str>,
        fallback: Option<&str>,
    ) -> Result<RouteRequest, RouteError> {
        let fallback = Fallback::parse(fallback)?;
        match (sim_card_id, route.map(str::trim)) {
            (Some(id), None | Some("sim")) => Ok(RouteRequest::Sim(id, fallback)),
            (None, None | Some("") | Some("hkt")) if fallback != Fallback::Unset => {
                Err(RouteError::FallbackWithHkt)
            }
            (None, None | Some("") | Some("hkt")) => Ok(RouteRequest::Hkt),
            (None, Some("sim")) => Ok(RouteRequest::AnySim(fallback)),
            (Some(_), Some("hkt")) => Err(RouteError::SimWithHkt),
            _ => Err(RouteError::Unknown),
        }
    }

    /// The routing asked for, as an idempotency fingerprint records it.
    pub fn label(&self) -> String {
        match self {
            RouteRequest::Hkt => "hkt".to_owned(),
            RouteRequest::Sim(id, fallback) => format!("sim:{id}{}", fallback.label()),
            RouteRequest::AnySim(fallback) => format!("sim:any{}", fallback.label()),
        }
    }
}

/// A message accepted, with the SIM it goes out through (`None`: HKT, or the pool, which
/// chooses a SIM per recipient as it releases them).
pub struct RoutedAccepted {
    pub accepted: Accepted,
    pub sender_sim: Option<String>,
    /// Whether it goes out through SIMs (one, or the pool) rather than HKT.
    pub via_sim: bool,
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
        if self.via_sim {
            SendRoute::Sim
        } else {
            SendRoute::Hkt
        }
    }
}

/// Accepts a send on the route asked for: HKT through [`accept`] as before, a SIM through
/// its own queue. [`SendError::UnknownSim`] for a SIM that is missing or not usable by the
/// user (alike, so a SIM's existence is not revealed), [`SendError::SimInactive`] for an
/// inactive one. A pool send is stored for the releaser to spread over the SIMs usable by
/// the user; when none of them is online now, it goes to HKT unless its fallback is
/// [`Fallback::None`]. With a `claim`, its
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
    let (route, sender_sim, fallback) = match route {
        RouteRequest::Hkt => (None, None, Fallback::Unset),
        RouteRequest::Sim(id, fallback) => {
            let sim = repo::find_sim_usable_by(db, id, user_id)
                .await?
                .ok_or(SendError::UnknownSim(id))?;
            if sim.status != SimStatus::Active.as_str() {
                return Err(SendError::SimInactive(id));
            }
            (Some(routing::sim(id)), Some(sim.number), fallback)
        }
        RouteRequest::AnySim(fallback) => {
            let offline_after = outbox.settings().sim_offline_after.as_secs_f64();
            let waits = fallback == Fallback::None
                || repo::any_online_sim_usable_by(db, offline_after, user_id).await?;
            (waits.then(|| POOL_ROUTE.to_owned()), None, fallback)
        }
    };
    let Some(route) = route else {
        let accepted = accept(db, outbox, user_id, send, claim).await?;
        return Ok(RoutedAccepted {
            accepted,
            sender_sim: None,
            via_sim: false,
        });
    };
    let accepted = accept_via_sim(db, outbox, user_id, send, &route, fallback, claim).await?;
    Ok(RoutedAccepted {
        accepted,
        sender_sim,
        via_sim: true,
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
        via_sim: prior.route.starts_with("sim"),
    }))
}

/// Stores the message with route `route` (`sim.<id>`, or `sim` for the pool) and wakes
/// the releaser, which publishes its jobs to SIM queues a few at a time. Kept apart from
/// the HKT path on purpose: that path is tuned for 100,000-recipient bulks, a modem sends
/// a few SMS a minute.
#[tracing::instrument(name = "sms.accept_via_sim", skip_all, fields(user.id = user_id, route = route, message.id))]
async fn accept_via_sim(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    route: &str,
    fallback: Fallback,
    claim: Option<&KeyClaim>,
) -> Result<Accepted, AcceptError> {
    let total = send.recipients.len();
    let phones: Vec<&str> = send.recipients.iter().map(PhoneNumber::as_str).collect();
    let message = NewMessage {
        body: &send.body,
        route,
        options: &send.options,
        traceparent: current_traceparent(),
    };
    let mut tx = db.begin().await?;
    let (id, created_at) = super::repo::insert_message(&mut tx, user_id, &message, total).await?;
    repo::insert_sim_recipients(&mut tx, id, &phones).await?;
    let opted_out = crate::optout::mark_accepted(&mut tx, id, user_id, total).await?;
    if fallback == Fallback::Hkt {
        repo::allow_hkt_fallback(&mut tx, id).await?;
    }
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
            RouteRequest::parse(None, None, None),
            Ok(RouteRequest::Hkt)
        ));
        assert!(matches!(
            RouteRequest::parse(Some(3), None, None),
            Ok(RouteRequest::Sim(3, Fallback::Unset))
        ));
        assert!(matches!(
            RouteRequest::parse(None, Some("sim"), None),
            Ok(RouteRequest::AnySim(Fallback::Unset))
        ));
        assert!(RouteRequest::parse(Some(3), Some("hkt"), None).is_err());
        assert!(RouteRequest::parse(None, Some("carrier-pigeon"), None).is_err());
    }

    #[test]
    fn fallback_is_hkt_or_none_and_only_for_sim_routes() {
        assert!(matches!(
            RouteRequest::parse(None, Some("sim"), Some("hkt")),
            Ok(RouteRequest::AnySim(Fallback::Hkt))
        ));
        assert!(matches!(
            RouteRequest::parse(Some(2), None, Some("none")),
            Ok(RouteRequest::Sim(2, Fallback::None))
        ));
        for (route, fallback, err) in [
            (Some("sim"), "HKT!", RouteError::UnknownFallback),
            (Some("sim"), "", RouteError::UnknownFallback),
            (Some("hkt"), "hkt", RouteError::FallbackWithHkt),
            (None, "none", RouteError::FallbackWithHkt),
        ] {
            let got = RouteRequest::parse(None, route, Some(fallback)).err();
            assert_eq!(got, Some(err), "{route:?} {fallback}");
            assert_eq!(err.field(), "fallback");
        }
        assert_ne!(
            RouteRequest::AnySim(Fallback::Hkt).label(),
            RouteRequest::AnySim(Fallback::Unset).label()
        );
    }
}
