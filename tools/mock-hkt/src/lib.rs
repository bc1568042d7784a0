//! A mock of the HKT HTTP SMS gateway, for the dev stack (`mock-hkt` binary) and for tests
//! (in-process on port 0 through [`MockHkt::spawn`]).
//!
//! It answers `POST /gateway/gateway.jsp` like the replaced SMS panel's mock did (`200 OK`, or
//! `401 Unauthorized` when the text contains "error"), records every post, and can be told at
//! run time to be slow, fail, burst 5xx or hang. The HTTP control API is documented in
//! `docs/mock-hkt.md`.

mod cli;
mod config;
mod routes;
mod state;
mod store;
#[cfg(test)]
mod tests;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use cli::{Settings, DEFAULT_BIND, USAGE};
pub use config::{ConfigError, MockConfig};
pub use routes::{router, GATEWAY_PATH};
pub use state::MockState;
pub use store::{MockStats, ReceivedSms, MAX_RECORDS, STATUS_HUNG};

/// A running mock gateway. Dropping it stops the server: requests held by `hang` are answered
/// 503 and the listener closes, without waiting for clients to time out.
pub struct MockHkt {
    addr: SocketAddr,
    state: Arc<MockState>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockHkt {
    /// Binds `bind` (use `"127.0.0.1:0"` in tests for a free port) and serves in a background task
    /// of the current tokio runtime, with the default config.
    pub async fn spawn(bind: &str) -> anyhow::Result<MockHkt> {
        Self::spawn_with_state(bind, Arc::new(MockState::new())).await
    }

    /// Like [`Self::spawn`], over a state built by the caller (for instance with a smaller
    /// record bound, or a config set before the first request).
    pub async fn spawn_with_state(bind: &str, state: Arc<MockState>) -> anyhow::Result<MockHkt> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("mock HKT: cannot bind {bind}"))?;
        let addr = listener
            .local_addr()
            .context("mock HKT: no local address")?;
        let stopping = Arc::clone(&state);
        let server = axum::serve(listener, router(Arc::clone(&state)))
            .with_graceful_shutdown(async move { stopping.released().await })
            .into_future();
        Ok(MockHkt {
            addr,
            state,
            server: Some(tokio::spawn(server)),
        })
    }

    /// The address actually bound (the real port when spawned on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the root of the control API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL to configure as the HKT gateway URL.
    pub fn gateway_url(&self) -> String {
        format!("http://{}{GATEWAY_PATH}", self.addr)
    }

    /// The shared state, to mount [`router`] elsewhere or reach it from another task.
    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    /// Replaces the config, as `POST /mock/config` does.
    ///
    /// # Panics
    /// If the config is invalid (see [`MockConfig::validate`]): a test asking for an impossible
    /// gateway behaviour is a bug in the test. Use [`Self::try_set_config`] to handle it instead.
    pub fn set_config(&self, cfg: MockConfig) {
        if let Err(err) = self.try_set_config(cfg) {
            panic!("invalid mock HKT config: {err}");
        }
    }

    /// Replaces the config, or says why it is invalid and keeps the current one.
    pub fn try_set_config(&self, cfg: MockConfig) -> Result<(), ConfigError> {
        self.state.set_config(cfg)
    }

    /// The current config; `burst_5xx` shows the burst answers still to come.
    pub fn config(&self) -> MockConfig {
        self.state.config()
    }

    /// Every kept post, in arrival order.
    pub fn received(&self) -> Vec<ReceivedSms> {
        self.state.received(None)
    }

    /// The posts for one recipient (`mrt` exactly as sent, e.g. `85212345678`).
    pub fn received_for(&self, mrt: &str) -> Vec<ReceivedSms> {
        self.state.received(Some(mrt))
    }

    /// Counters since start or the last [`Self::clear`].
    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Forgets records and counters; the config stays (see [`Self::reset`]).
    pub fn clear(&self) {
        self.state.clear();
    }

    /// Default config, no records, zeroed counters.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.state.release_hung();
        if let Some(server) = self.server.take() {
            server
                .await
                .context("mock HKT server task panicked")?
                .context("mock HKT server failed")?;
        }
        Ok(())
    }
}

impl Drop for MockHkt {
    fn drop(&mut self) {
        // Triggers the graceful shutdown; held requests return at once, so it completes on its
        // own in the background without anyone awaiting the task.
        self.state.release_hung();
    }
}
