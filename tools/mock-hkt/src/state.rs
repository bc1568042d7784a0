//! The mock's shared state: current config, what it received, and the shutdown signal that
//! releases requests held by `hang`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::config::{ConfigError, MockConfig};
use crate::store::{lock, Incoming, MockStats, ReceivedSms, Store, MAX_RECORDS};

/// How one gateway request is to be answered, decided as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Ok,
    /// The text contains "error": the replaced panel's mock answered 401, and clients rely on it.
    Unauthorized,
    /// A configured failure (burst, fail number, fail share).
    Fail {
        status: u16,
        retry_after_secs: Option<u32>,
    },
    Hang,
}

impl Answer {
    pub fn status(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Unauthorized => 401,
            Self::Fail { status, .. } => status,
            Self::Hang => crate::store::STATUS_HUNG,
        }
    }
}

/// The config plus a set for O(1) `fail_numbers` look-ups on the hot path.
struct Live {
    config: MockConfig,
    fail_numbers: HashSet<String>,
}

impl Live {
    fn new(config: MockConfig) -> Self {
        let fail_numbers = config.fail_numbers.iter().cloned().collect();
        Self {
            config,
            fail_numbers,
        }
    }
}

/// Everything the mock's handlers share. Build one with [`MockState::new`] to mount
/// [`crate::router`] yourself; [`crate::MockHkt`] does that for you.
pub struct MockState {
    live: Mutex<Live>,
    store: Store,
    // Hung requests wait on this; it flips to true once, when the server stops.
    shutdown: watch::Sender<bool>,
}

impl Default for MockState {
    fn default() -> Self {
        Self::new()
    }
}

impl MockState {
    /// A state with the default config, keeping up to [`MAX_RECORDS`] records.
    pub fn new() -> Self {
        Self::with_capacity(MAX_RECORDS)
    }

    /// A state keeping at most `max_records` records (the oldest are dropped first).
    pub fn with_capacity(max_records: usize) -> Self {
        Self {
            live: Mutex::new(Live::new(MockConfig::default())),
            store: Store::new(max_records),
            shutdown: watch::channel(false).0,
        }
    }

    /// Replaces the whole config; a running burst is replaced by the new `burst_5xx`.
    pub fn set_config(&self, config: MockConfig) -> Result<(), ConfigError> {
        config.validate()?;
        *lock(&self.live) = Live::new(config);
        Ok(())
    }

    /// The current config, with `burst_5xx` showing how many burst answers remain.
    pub fn config(&self) -> MockConfig {
        lock(&self.live).config.clone()
    }

    /// Default config, no records, zeroed counters.
    pub fn reset(&self) {
        *lock(&self.live) = Live::new(MockConfig::default());
        self.store.clear();
    }

    /// Every kept record, in arrival order; `Some(mrt)` keeps only that recipient's.
    pub fn received(&self, mrt: Option<&str>) -> Vec<ReceivedSms> {
        self.store.received(mrt)
    }

    /// Counters since start or the last clear.
    pub fn stats(&self) -> MockStats {
        self.store.stats()
    }

    /// Forgets records and counters; the config stays.
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Answers every request held by `hang` and makes later ones return at once; called when the
    /// server stops, so a graceful shutdown never waits on a hung client.
    pub fn release_hung(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`Self::release_hung`] was called.
    pub(crate) async fn released(&self) {
        let mut rx = self.shutdown.subscribe();
        // Err only if the sender is gone, and `self` owns it, so this cannot end early.
        let _ = rx.wait_for(|released| *released).await;
    }

    /// Records a post answered 400 before any config applies (unparsable or missing a field).
    pub(crate) fn record_rejected(&self, sms: Incoming) {
        self.store.record(sms, 400);
    }

    /// Decides the answer and records the request, returning the answer and the latency to add.
    ///
    /// The config lock covers only the decision (including the burst count-down, so two
    /// concurrent requests never both take the last burst slot); recording takes its own lock.
    pub(crate) fn admit(&self, sms: Incoming) -> (Answer, Duration) {
        let (answer, latency_ms) = {
            let mut live = lock(&self.live);
            let answer = decide(&mut live, &sms);
            (answer, live.config.latency_ms)
        };
        self.store.record(sms, answer.status());
        (answer, Duration::from_millis(latency_ms))
    }
}

/// Precedence: hang, then the burst (an outage answers before looking at the message), then
/// per-number and random failures, then the content check of the real gateway's mock.
fn decide(live: &mut Live, sms: &Incoming) -> Answer {
    let cfg = &mut live.config;
    if cfg.hang {
        return Answer::Hang;
    }
    let retry_after_secs = cfg.retry_after_secs;
    let fail = |status| Answer::Fail {
        status,
        retry_after_secs,
    };
    if cfg.burst_5xx > 0 {
        let answer = fail(cfg.burst_status);
        cfg.burst_5xx -= 1;
        return answer;
    }
    if live.fail_numbers.contains(&sms.mrt) {
        return fail(cfg.fail_status);
    }
    if cfg.fail_share > 0.0 && rand::thread_rng().gen::<f64>() < cfg.fail_share {
        return fail(cfg.fail_status);
    }
    if contains_error(&sms.msg_utf8) {
        return Answer::Unauthorized;
    }
    Answer::Ok
}

/// Case-insensitive search for "error" without allocating a lowercased copy of the text.
fn contains_error(text: &str) -> bool {
    text.as_bytes()
        .windows(5)
        .any(|w| w.eq_ignore_ascii_case(b"error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_found_in_any_case() {
        assert!(contains_error("ERROR"));
        assert!(contains_error("an Error happened"));
        assert!(contains_error("中文error"));
        assert!(!contains_error("err or"));
        assert!(!contains_error("erro"));
    }

    #[test]
    fn burst_counts_down_then_normal_answers_resume() {
        let state = MockState::with_capacity(10);
        state
            .set_config(MockConfig {
                burst_5xx: 2,
                ..MockConfig::default()
            })
            .unwrap();
        let post = || Incoming {
            application: "a".into(),
            mrt: "85212345678".into(),
            sender: "s".into(),
            msg_utf8: "hello".into(),
        };
        let statuses: Vec<u16> = (0..3).map(|_| state.admit(post()).0.status()).collect();
        assert_eq!(statuses, [503, 503, 200]);
        assert_eq!(state.config().burst_5xx, 0);
    }
}
