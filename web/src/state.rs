//! What every panel handler can reach: the domain's handles and the panel's settings.

use std::sync::Arc;

use smsgate_core::Core;

use crate::panel::PanelSettings;

/// The panel's state. One `Arc`, so the per-request clone axum makes is a single
/// reference count.
#[derive(Clone)]
pub struct WebState(Arc<Parts>);

/// The inside of [`WebState`].
pub struct Parts {
    /// The domain's handles, shared with the JSON API.
    pub core: Arc<Core>,
    /// DISPLAY_TZ, sessions, cookies.
    pub panel: PanelSettings,
}

impl WebState {
    pub fn new(core: Arc<Core>, panel: PanelSettings) -> WebState {
        WebState(Arc::new(Parts { core, panel }))
    }
}

impl std::ops::Deref for WebState {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}
