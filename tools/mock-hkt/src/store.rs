//! What the mock received: a bounded record list and per-status counters.
//!
//! Benchmarks push 100,000-recipient bulks through the mock at thousands of requests per
//! second, so recording is one short mutex section and counters are plain atomics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Records kept before the oldest are dropped: enough for ten 100k bulks, bounded in memory
/// (about 100 bytes a record, since the repeated fields are shared).
pub const MAX_RECORDS: usize = 1_000_000;

/// Status recorded for a request the mock is holding without answering (`hang`).
pub const STATUS_HUNG: u16 = 0;

/// One form post as the gateway received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedSms {
    pub application: String,
    pub mrt: String,
    pub sender: String,
    pub msg_utf8: String,
    pub received_at: DateTime<Utc>,
    /// The status answered, or [`STATUS_HUNG`] (0) for a request held by `hang`.
    pub status: u16,
}

/// Counters over every gateway request since start or the last clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Every gateway request, whatever its answer.
    pub total: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered anything else (401, 400, configured failures).
    pub failed: u64,
    /// Held by `hang`, never answered.
    pub hung: u64,
    /// Records dropped, oldest first, to stay within [`MAX_RECORDS`]; the counters still count them.
    pub evicted: u64,
    /// Requests per answered status; key `0` counts the hung ones.
    pub by_status: BTreeMap<u16, u64>,
}

/// The stored form of a [`ReceivedSms`]. A bulk repeats application, sender and text across
/// every recipient, so those are shared with the previous record when equal.
struct Record {
    application: Arc<str>,
    sender: Arc<str>,
    msg_utf8: Arc<str>,
    mrt: Box<str>,
    received_at: DateTime<Utc>,
    status: u16,
}

impl Record {
    fn to_public(&self) -> ReceivedSms {
        ReceivedSms {
            application: self.application.to_string(),
            mrt: self.mrt.to_string(),
            sender: self.sender.to_string(),
            msg_utf8: self.msg_utf8.to_string(),
            received_at: self.received_at,
            status: self.status,
        }
    }
}

/// Fields of an incoming post, owned so the handler can move them in without copying.
#[derive(Default)]
pub(crate) struct Incoming {
    pub application: String,
    pub mrt: String,
    pub sender: String,
    pub msg_utf8: String,
}

#[derive(Default)]
struct Records {
    list: VecDeque<Record>,
    last: Option<(Arc<str>, Arc<str>, Arc<str>)>,
}

impl Records {
    fn push(&mut self, sms: Incoming, status: u16, received_at: DateTime<Utc>, max: usize) -> bool {
        let (application, sender, msg_utf8) = match self.last.take() {
            Some((a, s, m)) => (
                share(a, sms.application),
                share(s, sms.sender),
                share(m, sms.msg_utf8),
            ),
            None => (
                sms.application.into(),
                sms.sender.into(),
                sms.msg_utf8.into(),
            ),
        };
        self.last = Some((application.clone(), sender.clone(), msg_utf8.clone()));
        let evicted = self.list.len() >= max;
        if evicted {
            self.list.pop_front();
        }
        self.list.push_back(Record {
            application,
            sender,
            msg_utf8,
            mrt: sms.mrt.into_boxed_str(),
            received_at,
            status,
        });
        evicted
    }
}

/// Reuses `prev` when it holds the same text, otherwise allocates a new shared string.
fn share(prev: Arc<str>, new: String) -> Arc<str> {
    if *prev == *new {
        prev
    } else {
        new.into()
    }
}

/// Records and counters behind one handle; cheap to call from every request.
pub(crate) struct Store {
    records: Mutex<Records>,
    max_records: usize,
    total: AtomicU64,
    evicted: AtomicU64,
    // Indexed by status code (0 = hung); an array of atomics needs no lock and no hashing.
    by_status: Box<[AtomicU64]>,
}

impl Store {
    pub fn new(max_records: usize) -> Self {
        Self {
            records: Mutex::default(),
            max_records: max_records.max(1),
            total: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, sms: Incoming, status: u16) {
        let received_at = Utc::now();
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = self.by_status.get(usize::from(status)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let evicted = lock(&self.records).push(sms, status, received_at, self.max_records);
        if evicted {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Copies out the matching records; the lock is held only for the copy, never for I/O.
    pub fn received(&self, mrt: Option<&str>) -> Vec<ReceivedSms> {
        let records = lock(&self.records);
        records
            .list
            .iter()
            .filter(|r| mrt.is_none_or(|m| *r.mrt == *m))
            .map(Record::to_public)
            .collect()
    }

    pub fn stats(&self) -> MockStats {
        let by_status: BTreeMap<u16, u64> = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(status, n)| {
                let n = n.load(Ordering::Relaxed);
                // The array has 600 slots, so the index always fits a u16.
                (n > 0).then_some((status as u16, n))
            })
            .collect();
        let ok = by_status.get(&200).copied().unwrap_or(0);
        let hung = by_status.get(&STATUS_HUNG).copied().unwrap_or(0);
        let answered: u64 = by_status.values().sum::<u64>() - hung;
        MockStats {
            total: self.total.load(Ordering::Relaxed),
            ok,
            failed: answered - ok,
            hung,
            evicted: self.evicted.load(Ordering::Relaxed),
            by_status,
        }
    }

    /// Forgets records and counters, so a test or benchmark run starts from zero.
    pub fn clear(&self) {
        *lock(&self.records) = Records::default();
        self.total.store(0, Ordering::Relaxed);
        self.evicted.store(0, Ordering::Relaxed);
        for counter in self.by_status.iter() {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Locks, ignoring poisoning: a panicking test thread must not take the mock down with it, and
/// the protected data stays consistent because no section can panic half-way.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(mrt: &str, text: &str) -> Incoming {
        Incoming {
            application: "app".into(),
            mrt: mrt.into(),
            sender: "SENDER".into(),
            msg_utf8: text.into(),
        }
    }

    #[test]
    fn oldest_records_are_evicted_beyond_the_bound() {
        let store = Store::new(2);
        for mrt in ["1", "2", "3"] {
            store.record(sms(mrt, "hi"), 200);
        }
        let mrts: Vec<_> = store.received(None).into_iter().map(|r| r.mrt).collect();
        assert_eq!(mrts, ["2", "3"]);
        let stats = store.stats();
        assert_eq!((stats.total, stats.ok, stats.evicted), (3, 3, 1));
    }

    #[test]
    fn repeated_bulk_text_is_stored_once() {
        let store = Store::new(10);
        store.record(sms("1", "same text"), 200);
        store.record(sms("2", "same text"), 200);
        let records = lock(&store.records);
        assert!(Arc::ptr_eq(
            &records.list[0].msg_utf8,
            &records.list[1].msg_utf8
        ));
    }

    #[test]
    fn stats_split_ok_failed_and_hung() {
        let store = Store::new(10);
        store.record(sms("1", "a"), 200);
        store.record(sms("2", "b"), 503);
        store.record(sms("3", "c"), 401);
        store.record(sms("4", "d"), STATUS_HUNG);
        let stats = store.stats();
        assert_eq!(
            (stats.total, stats.ok, stats.failed, stats.hung),
            (4, 1, 2, 1)
        );
        assert_eq!(stats.by_status.get(&503), Some(&1));
        store.clear();
        assert_eq!(store.stats(), MockStats::default());
        assert!(store.received(None).is_empty());
    }
}
