//! The smsgate API service: the JSON API (routes, extractors, `ApiError`), Socket.IO,
//! `/metrics` and health, and the composition root: [`start`] builds the domain's
//! [`smsgate_core::Core`] (pool, broker, outbox and its reconciler, live hub) and serves the
//! JSON routes and `smsgate_web::router` on one listener.
//!
//! `main.rs` reads settings and calls [`start`]; tests call [`start`] with their own
//! settings (port 0, their own database and queue prefix).

pub mod admin;
pub mod auth;
pub mod error;
mod extract;
mod health;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod optouts;
pub mod settings;
pub mod sims;
pub mod sms;
pub mod state;
pub mod system;
pub mod webhooks;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use axum::Router;
use secrecy::ExposeSecret;
use smsgate_shared::queue::{declare_central, Broker, Names};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::{AppState, Services};
use smsgate_core::auth::service::{ensure_default_admin, DefaultAdmin};
use smsgate_core::auth::{JwtKeys, PasswordGate, TokenOwners};
use smsgate_core::outbox::Outbox;
use smsgate_core::sims::broker_users::SimBrokerUsers;
use smsgate_core::sms::AcceptBatcher;
use smsgate_core::Core;
use smsgate_web::WebState;

/// Cuts off a request whose response has not started within `limit`, with a 503 in our
/// error format: never a hang. Only the response head is timed, so live streams (SSE)
/// keep flowing.
async fn enforce_timeout(
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::Unavailable(anyhow::anyhow!("no response within {limit:?}")).into_response()
        }
    }
}

/// The whole HTTP surface with its middleware.
pub fn build_app(state: AppState) -> Router {
    let body_limit = state.settings.body_limit_bytes;
    let request_timeout = state.settings.request_timeout;
    Router::new()
        .merge(auth::router())
        .merge(sms::router())
        .merge(sims::router())
        .merge(system::router())
        .merge(webhooks::router())
        .merge(optouts::router())
        .merge(health::router())
        .merge(admin::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .with_state(state.clone())
        // The staff panel, on the same listener and under the same middleware.
        .merge(smsgate_web::router(WebState::new(
            state.core.clone(),
            state.settings.panel.clone(),
        )))
        .fallback(|| async { ApiError::NotFound("Route") })
        // axum answers a known path with the wrong method itself, with an empty body.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            enforce_timeout(request_timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let route = req.extensions().get::<MatchedPath>().map_or(metrics::UNMATCHED, MatchedPath::as_str);
            tracing::info_span!("http.request", method = %req.method(), http.route = route, path = %req.uri().path(), user.id = tracing::field::Empty)
        }))
        // Outermost of the route layers: it sees every answer, timeouts and panics included.
        .layer(state.metrics.http.layer())
}

/// Every `(method, path)` a router serves, sorted; `HEAD` is left out (axum answers it
/// wherever there is a `GET`). The authorization matrix test compares this with its table,
/// so a route added without access rules fails that test.
///
/// axum 0.8 has no public route listing, so this reads the router's `Debug` output: each
/// path (`RouteId(n): "/path"` in the path router's node) and the `Allow` header value its
/// method router built (`allow_header: Bytes(b"GET,HEAD,POST")`), matched by route id.
/// Only the path router is read; the fallback router's catch-all is not a route. The unit
/// test below pins the format, so an axum upgrade that changes it fails loudly here rather
/// than the matrix silently checking nothing.
pub fn route_list(router: &Router) -> Vec<(axum::http::Method, String)> {
    let debug = format!("{router:?}");
    // The path router comes first; the fallback router has route ids of its own.
    let path_router = debug
        .split_once("fallback_router:")
        .map_or(debug.as_str(), |(head, _)| head);
    let (routes, node) = path_router
        .split_once("node: Node")
        .expect("axum's Router Debug output has a `node: Node` (see route_list)");
    let route_ids = |text: &str| -> Vec<(String, usize)> {
        text.match_indices("RouteId(")
            .map(|(at, _)| {
                let rest = &text[at + "RouteId(".len()..];
                let id = rest[..rest.find(')').unwrap_or(0)].to_owned();
                (id, at)
            })
            .collect()
    };
    // Each route's method router runs from its `RouteId(n):` to the next one.
    let mut allowed = std::collections::HashMap::new();
    let ids = route_ids(routes);
    for (i, (id, at)) in ids.iter().enumerate() {
        let end = ids.get(i + 1).map_or(routes.len(), |(_, next)| *next);
        let endpoint = &routes[*at..end];
        let methods = endpoint
            .split_once("allow_header: Bytes(b\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(methods, _)| methods.to_owned())
            .unwrap_or_else(|| panic!("route {id} has no Allow header in {endpoint}"));
        allowed.insert(id.clone(), methods);
    }
    let mut listed = Vec::new();
    for (id, at) in route_ids(node) {
        let path = node[at..]
            .split_once(": \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(path, _)| path.to_owned())
            .unwrap_or_else(|| panic!("route {id} has no path in the router's Debug output"));
        let methods = allowed
            .get(&id)
            .unwrap_or_else(|| panic!("route {id} ({path}) has no method router"));
        for method in methods.split(',').filter(|m| *m != "HEAD") {
            let method = axum::http::Method::from_bytes(method.as_bytes())
                .unwrap_or_else(|_| panic!("route {path}: unknown method {method}"));
            listed.push((method, path.clone()));
        }
    }
    listed.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    listed
}

/// Connects a pool whose acquire timeout turns a dead database into quick 503s.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = settings
        .database_url
        .expose_secret()
        .parse()
        .context("DATABASE_URL is not a valid URL")?;
    PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(settings.db_acquire_timeout)
        // sqlx pings every connection it hands out by default: a round trip per query.
        // A broken connection fails its query instead (503 via ApiError) and is replaced.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

pub use smsgate_core::db::{migrate, MIGRATOR};

/// A running API: its address, and a way to stop it.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    releaser: tokio::task::JoinHandle<()>,
}

impl RunningApi {
    /// Stops accepting requests, finishes in-flight ones and background publishes.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        let _ = self.releaser.await;
        self.state.core.broker.close().await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stops (after `shutdown_token().cancel()`).
    pub async fn wait(self) {
        let _ = (&mut { self.server }).await;
    }
}

/// Migrates, seals webhook secrets left in plain text or under an older key, provisions
/// the default admin, declares the topology (if the broker is up),
/// binds and serves. Returns once the listener is bound.
pub async fn start(settings: Settings) -> anyhow::Result<RunningApi> {
    let db = connect_database(&settings).await?;
    migrate(&db).await?;
    smsgate_core::webhooks::reseal_secrets(&db, &settings.core.webhook_secret_keys)
        .await
        .context("sealing webhook secrets under WEBHOOK_SECRET_KEYS")?;
    let admin_password = settings
        .admin_password
        .as_ref()
        .map(|p| p.expose_secret().to_owned());
    match ensure_default_admin(&db, admin_password.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        DefaultAdmin::CreatedWithGeneratedPassword(password) => {
            // Printed once, on purpose: this is the only way the operator learns it.
            warn!(
                "created admin `{}` with generated password `{password}`; change it at first login",
                smsgate_core::auth::service::DEFAULT_ADMIN
            );
        }
        DefaultAdmin::CreatedWithConfiguredPassword => info!(
            "created admin `{}` with ADMIN_PASSWORD",
            smsgate_core::auth::service::DEFAULT_ADMIN
        ),
        DefaultAdmin::AlreadyProvisioned => {}
    }

    let broker = Broker::new(&settings.core.queue.amqp_url);
    match broker.channel().await {
        // A queue setting changed since the queues were declared fails the start here,
        // with one line saying what to do, rather than later in a background task.
        Ok(channel) => declare_central(&channel, &settings.core.queue).await?,
        Err(e) => {
            warn!(error = %e, "broker unreachable at start; sends are stored and published once it is back")
        }
    }

    let metrics = metrics::ApiMetrics::new();
    let outbox = Outbox::new(
        db.clone(),
        broker.clone(),
        settings.core.queue.clone(),
        settings.core.release.clone(),
        metrics.outbox.clone(),
    );
    let jwt = JwtKeys::new(
        settings.jwt_secret.expose_secret().as_bytes(),
        chrono::Duration::hours(24),
    );
    let settings = Arc::new(settings);
    let core_settings = Arc::new(settings.core.clone());
    let shutdown = CancellationToken::new();
    let live =
        smsgate_core::live::LiveHub::new(shutdown.child_token(), metrics.live_streams.clone());
    live.spawn_consumer(broker.clone(), Names::new(&core_settings.queue.prefix));
    let small_sends = AcceptBatcher::start(db.clone(), outbox.clone());
    let core = Arc::new(Core {
        small_sends,
        db,
        broker,
        jwt,
        token_owners: TokenOwners::default(),
        passwords: PasswordGate::new(
            core_settings.login.password_hash_concurrency,
            core_settings.login.password_hash_wait,
        ),
        outbox: outbox.clone(),
        live,
        sends: metrics.sends.clone(),
        sim_users: SimBrokerUsers::new(
            core_settings.broker_admin.clone(),
            Names::new(&core_settings.queue.prefix),
        ),
        settings: core_settings.clone(),
    });
    if !core.sim_users.is_configured() {
        warn!("BROKER_ADMIN_URL is not set: registering a SIM creates no broker user for its agent (deploy/rabbitmq/sim-user.sh does it by hand)");
    }
    let state = AppState::new(Services {
        core,
        settings: settings.clone(),
        statistics: Default::default(),
        metrics,
    });

    let releaser = outbox.spawn_releaser(shutdown.clone());
    smsgate_core::idempotency::spawn_sweeper(
        state.core.db.clone(),
        core_settings.idempotency_key_ttl,
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let addr = listener.local_addr()?;
    // Responses go out as soon as they are written, not held back by Nagle's algorithm
    // waiting for the client's delayed ACK of an earlier segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    // Outermost, so Socket.IO's long-polling requests (held up to its ping interval) are
    // answered before the request timeout could cut them off.
    let (sockets_layer, sockets) = live::status_sockets(state.clone());
    state.metrics.count_sockets(sockets.clone());
    let app = build_app(state.clone()).layer(sockets_layer);
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        // The peer address feeds the panel's per-address login throttle.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            token.cancelled().await;
            // An open socket would otherwise hold graceful shutdown for ever.
            sockets.close().await;
        })
        .await
    });
    info!(%addr, "API listening");
    Ok(RunningApi {
        addr,
        state,
        shutdown,
        server,
        releaser,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use axum::routing::{get, post, put};

    use super::*;

    #[test]
    fn route_list_reads_every_path_and_method_of_a_merged_layered_router() {
        let api = Router::new()
            .route("/api/things", get(|| async {}).post(|| async {}))
            .route("/api/things/{id}", put(|| async {}).delete(|| async {}));
        let panel = Router::new()
            .route("/", get(|| async {}))
            .route("/things/{id}/toggle", post(|| async {}))
            .layer(axum::middleware::from_fn(
                |request: axum::extract::Request, next: axum::middleware::Next| async move {
                    next.run(request).await
                },
            ));
        let router = Router::new()
            .merge(api)
            .merge(panel)
            .fallback(|| async { "fallback" })
            .layer(axum::extract::DefaultBodyLimit::max(1024));
        let listed = route_list(&router);
        let expected: Vec<(Method, String)> = [
            (Method::GET, "/"),
            (Method::GET, "/api/things"),
            (Method::POST, "/api/things"),
            (Method::DELETE, "/api/things/{id}"),
            (Method::PUT, "/api/things/{id}"),
            (Method::POST, "/things/{id}/toggle"),
        ]
        .into_iter()
        .map(|(m, p)| (m, p.to_owned()))
        .collect();
        assert_eq!(listed, expected);
    }
}
