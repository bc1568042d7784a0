//! Received SMS: joining concatenated parts, and the key that makes a re-published SMS
//! land once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use smsgate_shared::queue::edge::EdgeEvent;

use crate::pdu::Deliver;

/// Where a part is kept until the broker confirmed the SMS it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartSource {
    /// A SIM storage index: deleted with `AT+CMGD` after the confirm.
    Sim(u32),
    /// A spool file (an SMS the modem delivered with `+CMT`, never stored on the SIM).
    Spool(PathBuf),
}

/// A whole SMS, ready to publish, with the places its parts are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub event: EdgeEvent,
    pub sources: Vec<PartSource>,
}

type PartKey = (String, u16, u8);

/// Collects parts until every part of a message arrived. Parts only live here in memory;
/// they stay on the SIM (or in the spool) meanwhile, so a restart rebuilds this from there.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<PartKey, BTreeMap<u8, (PartSource, Deliver)>>,
}

impl Reassembler {
    /// Adds one part; returns the SMS when it is complete (at once for a single-part SMS).
    pub fn add(
        &mut self,
        sim_id: i64,
        source: PartSource,
        part: Deliver,
        received_at: DateTime<Utc>,
    ) -> Option<Assembled> {
        let Some(concat) = part.concat.filter(|c| c.total > 1) else {
            return Some(assemble(sim_id, vec![(source, part)], received_at));
        };
        let key = (part.sender.clone(), concat.reference, concat.total);
        let parts = self.pending.entry(key.clone()).or_default();
        // The same part listed twice (a sweep after a reset) replaces itself.
        parts.insert(concat.seq, (source, part));
        if parts.len() < usize::from(concat.total) {
            return None;
        }
        let parts = self.pending.remove(&key)?;
        Some(assemble(sim_id, parts.into_values().collect(), received_at))
    }

    /// Parts waiting for their siblings.
    pub fn waiting(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }
}

fn assemble(
    sim_id: i64,
    parts: Vec<(PartSource, Deliver)>,
    received_at: DateTime<Utc>,
) -> Assembled {
    let first = &parts[0].1;
    let text: String = parts.iter().map(|(_, p)| p.text.as_str()).collect();
    let key = dedupe_key(sim_id, first, &text);
    let event = EdgeEvent::InboundSmsV1 {
        sim_id,
        key,
        sender: first.sender.clone(),
        text,
        parts: parts.len() as u16,
        sent_at: first.sent_at,
        received_at,
    };
    Assembled {
        event,
        sources: parts.into_iter().map(|(s, _)| s).collect(),
    }
}

/// Derived only from what the network sent (sender, service centre time, concatenation
/// reference, text), so the same SMS read again after a restart gets the same key.
fn dedupe_key(sim_id: i64, first: &Deliver, text: &str) -> String {
    let stamp = first.sent_at.map_or(0, |t| t.timestamp());
    let reference = first.concat.map_or(-1, |c| i32::from(c.reference));
    let digest = fnv1a(first.sender.as_bytes().iter().chain(text.as_bytes()));
    format!("sim{sim_id}-{stamp}-{reference}-{digest:016x}")
}

/// FNV-1a: stable across Rust releases and platforms, unlike `DefaultHasher`.
fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::pdu::{decode_deliver, encode_deliver};

    fn parts_of(text: &str) -> Vec<Deliver> {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        encode_deliver("+85298765432", text, at, 5)
            .iter()
            .map(|p| decode_deliver(p).unwrap())
            .collect()
    }

    #[test]
    fn a_single_part_sms_is_complete_at_once() {
        let mut r = Reassembler::default();
        let done = r
            .add(1, PartSource::Sim(3), parts_of("hi").remove(0), Utc::now())
            .unwrap();
        assert_eq!(done.sources, vec![PartSource::Sim(3)]);
        assert!(matches!(
            done.event,
            EdgeEvent::InboundSmsV1 { parts: 1, .. }
        ));
    }

    #[test]
    fn concatenated_parts_join_in_order_whatever_order_they_arrive_in() {
        let text = "長訊息測試".repeat(30); // 150 units → 3 UCS-2 parts
        let mut parts = parts_of(&text);
        assert_eq!(parts.len(), 3);
        let mut r = Reassembler::default();
        let third = parts.pop().unwrap();
        let second = parts.pop().unwrap();
        let first = parts.pop().unwrap();
        assert!(r.add(1, PartSource::Sim(9), third, Utc::now()).is_none());
        assert!(r
            .add(1, PartSource::Sim(2), first.clone(), Utc::now())
            .is_none());
        // A re-listed part does not count twice.
        assert!(r.add(1, PartSource::Sim(2), first, Utc::now()).is_none());
        assert_eq!(r.waiting(), 2);
        let done = r.add(1, PartSource::Sim(5), second, Utc::now()).unwrap();
        let EdgeEvent::InboundSmsV1 {
            text: joined,
            parts,
            ..
        } = &done.event
        else {
            panic!()
        };
        assert_eq!((joined.as_str(), *parts), (text.as_str(), 3));
        assert_eq!(
            done.sources,
            vec![PartSource::Sim(2), PartSource::Sim(5), PartSource::Sim(9)]
        );
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn the_same_sms_read_twice_has_the_same_key() {
        let key = |received| match Reassembler::default()
            .add(1, PartSource::Sim(1), parts_of("same").remove(0), received)
            .unwrap()
            .event
        {
            EdgeEvent::InboundSmsV1 { key, .. } => key,
            _ => unreachable!(),
        };
        assert_eq!(
            key(Utc::now()),
            key(Utc::now() + chrono::Duration::hours(1))
        );
    }
}
