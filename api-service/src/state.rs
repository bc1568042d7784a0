//! Shared state handed to every handler of the JSON API.

use std::sync::Arc;

use smsgate_core::Core;

use crate::metrics::ApiMetrics;
use crate::settings::Settings;
use crate::system::StatisticsCache;

/// What every handler can reach; `state.core` and the like read through to [`Services`].
/// One `Arc`, so the per-request clone axum makes is a single reference count.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    /// The domain's handles, shared with the panel.
    pub core: Arc<Core>,
    pub settings: Arc<Settings>,
    /// `GET /api/statistics`'s recent answers.
    pub statistics: StatisticsCache,
    /// What `GET /metrics` shows.
    pub metrics: ApiMetrics,
}
