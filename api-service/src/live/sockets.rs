//! Socket.IO for the edge gateway's clients: an `sms_status_update` event per recipient
//! whose status changed, as the replaced gateway pushed them (Flask-SocketIO there,
//! socketioxide here: the maintained Socket.IO server for tower/axum; protocol v5, what
//! socket.io-client 3/4 and python-socketio 5 speak).
//!
//! Unlike the replaced gateway, a socket must authenticate: with `auth: {token}` (or
//! `{api_key}`) in the connect packet, `?token=`/`?api_key=` on the handshake URL, or the
//! usual `Authorization: Bearer` / `X-API-Key` handshake headers. Anything else gets a
//! connect error. A user receives the updates of their own messages, an admin everyone's.
//! The events carry phone numbers, which an open socket would hand to anyone on the network.
//!
//! Fed by the same [`LiveHub`] as the panel's SSE pages: a live view, not a record (an
//! update missed while disconnected is in `GET /api/sms-status`).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smsgate_shared::queue::StatusEvent;
use socketioxide::extract::{Extension, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::auth::bearer_token;
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::auth::service::{authenticate, AuthError};
use smsgate_core::live::{repo, Progress};

/// The event name the replaced gateway's clients listen for.
pub const STATUS_EVENT: &str = "sms_status_update";
/// Room of every admin's socket.
const ADMINS: &str = "admins";

fn user_room(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// How often every socket's credential is checked again: a disabled user, a revoked key,
/// an expired JWT or a demoted admin stops receiving updates within this time.
const RECHECK_EVERY: Duration = Duration::from_secs(10);
/// A handshake that has not joined the namespace by then is closed (socketioxide's default
/// is 45 s), so refused or stalled sessions can't hold the API's graceful shutdown long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a socket belongs to, and the credential it came with (checked again every
/// [`RECHECK_EVERY`]).
#[derive(Debug, Clone)]
struct Viewer {
    user_id: i64,
    is_admin: bool,
    credential: String,
}

/// The Socket.IO layer for the API's router, and the handle that closes every socket at
/// shutdown. Starts the task that turns status events into socket events.
pub fn status_sockets(app: AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build_layer();
    let authenticating = app.clone();
    io.ns(
        "/",
        on_connect.with(move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let app = authenticating.clone();
            async move { admit(&app, &socket, auth.ok().as_ref()).await }
        }),
    );
    tokio::spawn(fan_out(app.clone(), io.clone()));
    (layer, io)
}

async fn on_connect(socket: SocketRef, Extension(viewer): Extension<Viewer>) {
    socket.join(user_room(viewer.user_id));
    if viewer.is_admin {
        socket.join(ADMINS);
    }
    debug!(user.id = viewer.user_id, socket = %socket.id, "status socket connected");
}

/// What a client may put in the connect packet's `auth`.
#[derive(Deserialize)]
struct ConnectAuth {
    token: Option<String>,
    api_key: Option<String>,
}

/// Why a socket was refused; the client sees the text in its connect error.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("authentication required: connect with auth {{token}} or {{api_key}}, ?api_key=, or an X-API-Key header")]
    NoCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("account is disabled")]
    Disabled,
    #[error("temporarily unavailable, try again")]
    Unavailable,
}

/// Checks the socket's credentials (the same ones as any API call) and remembers its owner.
async fn admit(app: &AppState, socket: &SocketRef, auth: Option<&Value>) -> Result<(), Refused> {
    let token = credential(socket, auth).ok_or(Refused::NoCredentials)?;
    let caller = authenticate(&app.core.db, &app.core.jwt, &token)
        .await
        .map_err(|e| match e {
            AuthError::Disabled => Refused::Disabled,
            AuthError::InvalidCredentials | AuthError::InvalidToken => Refused::InvalidToken,
            other => {
                warn!(error = %other, "a status socket could not be authenticated");
                Refused::Unavailable
            }
        })?;
    socket.extensions.insert(Viewer {
        user_id: caller.id,
        is_admin: caller.is_admin,
        credential: token,
    });
    Ok(())
}

/// The first credential found: connect packet, then handshake query, then headers.
fn credential(socket: &SocketRef, auth: Option<&Value>) -> Option<String> {
    let from_auth = auth
        .and_then(|v| serde_json::from_value::<ConnectAuth>(v.clone()).ok())
        .and_then(|a| a.token.or(a.api_key));
    let parts = socket.req_parts();
    let from_query = || {
        let query = parts.uri.query()?;
        serde_urlencoded::from_str::<ConnectAuth>(query)
            .ok()
            .and_then(|a| a.token.or(a.api_key))
    };
    let from_headers = || bearer_token(parts).map(str::to_owned);
    from_auth
        .or_else(from_query)
        .or_else(from_headers)
        .filter(|t| !t.trim().is_empty())
}

/// One `sms_status_update`: the fields of a `GET /api/sms-status` entry, plus what the
/// event knows beyond the row (attempts, error, the message's own state).
#[derive(Debug, Serialize)]
struct StatusUpdate<'a> {
    /// The recipient's id, as `id` in `/api/sms-status`.
    id: i64,
    message_id: i64,
    /// The SIM's number for SIM-routed messages, `null` for HKT.
    sender_number: Option<&'a str>,
    receiver_number: &'a str,
    status: &'a str,
    attempts: i32,
    error: Option<&'a str>,
    timestamp: String,
    /// The whole message's status and counters after this update.
    message_status: &'a str,
    total: i64,
    sent: i64,
    failed: i64,
}

/// Turns each status event into one socket event per recipient, sent to its owner's room
/// and the admins'; nothing is looked up while no socket is connected. Every
/// [`RECHECK_EVERY`] it also checks each socket's credential again.
async fn fan_out(app: AppState, io: SocketIo) {
    let mut events = app.core.live.subscribe();
    let closed = app.core.live.closed();
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Shutdown first: `SocketIo::close` removes the namespace, which `io` must not be
        // asked about afterwards.
        let event = tokio::select! {
            biased;
            _ = closed.cancelled() => return,
            _ = recheck.tick() => {
                recheck_all(&app, &io).await;
                continue;
            }
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "status sockets fell behind; those updates were not pushed"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(sockets) = io.of("/") else { return };
        if sockets.sockets().is_empty() {
            continue;
        }
        if let Err(e) = push(&app.core.db, &io, &event).await {
            warn!(error = %e, "status updates could not be pushed to sockets");
        }
    }
}

/// Disconnects the sockets whose credential no longer holds, and moves a socket out of
/// or into the admins' room when its user's role changed.
async fn recheck_all(app: &AppState, io: &SocketIo) {
    let Some(sockets) = io.of("/") else { return };
    for socket in sockets.sockets() {
        let Some(viewer) = socket.extensions.get::<Viewer>() else {
            continue;
        };
        match authenticate(&app.core.db, &app.core.jwt, &viewer.credential).await {
            Ok(caller) if caller.id == viewer.user_id => {
                if caller.is_admin != viewer.is_admin {
                    if caller.is_admin {
                        socket.join(ADMINS);
                    } else {
                        socket.leave(ADMINS);
                    }
                    socket.extensions.insert(Viewer {
                        is_admin: caller.is_admin,
                        ..viewer
                    });
                }
            }
            Ok(_)
            | Err(AuthError::InvalidToken | AuthError::InvalidCredentials | AuthError::Disabled) => {
                debug!(user.id = viewer.user_id, socket = %socket.id, "status socket's credential no longer valid");
                let _ = socket.disconnect();
            }
            // The database is away: keep the socket rather than drop every client at once.
            Err(e) => debug!(error = %e, "status socket credentials not rechecked"),
        }
    }
}

async fn push(db: &PgPool, io: &SocketIo, event: &StatusEvent) -> Result<(), sqlx::Error> {
    let progress = Progress::from(event);
    let ids: Vec<i64> = progress.recipients.iter().map(|r| r.recipient_id).collect();
    let mut context: HashMap<i64, repo::RecipientContext> = repo::recipient_context(db, &ids)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    for update in &progress.recipients {
        // Taken out, so a recipient listed twice in one event is pushed once; missing when
        // deleted with its message since.
        let Some(row) = context.remove(&update.recipient_id) else {
            continue;
        };
        let payload = StatusUpdate {
            id: row.id,
            message_id: progress.message_id,
            sender_number: row.sender_sim.as_deref(),
            receiver_number: &row.phone,
            status: update.status.as_str(),
            attempts: update.attempts,
            error: update.error.as_deref(),
            timestamp: rfc3339(row.updated_at),
            message_status: progress.status.as_str(),
            total: progress.total,
            sent: progress.sent,
            failed: progress.failed,
        };
        let rooms = [user_room(row.user_id), ADMINS.to_owned()];
        // `None` once shutdown closed the namespace.
        let Some(namespace) = io.of("/") else {
            return Ok(());
        };
        if let Err(e) = namespace.to(rooms).emit(STATUS_EVENT, &payload).await {
            debug!(error = %e, "a status update reached no socket");
        }
    }
    Ok(())
}
