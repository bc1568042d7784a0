//! Received SMS: joining concatenated parts, giving up on parts whose siblings never come,
//! and the key that makes a re-published SMS land once.
//!
//! Anyone can text a SIM, so what arrives is hostile input: a flood of fragments that never
//! complete must not grow memory or fill the SIM. The [`Reassembler`] therefore holds at
//! most [`Limits::max_parts`] parts and waits at most [`Limits::max_age`] for a group; past
//! either bound it publishes what it has, with a visible marker for each missing part, so
//! nothing a person sent is silently lost, and the parts leave the SIM like any published
//! SMS.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// How long and how much the reassembler waits for missing parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A group still incomplete this long after its first part arrived is given up. Parts
    /// of one SMS arrive seconds apart, rarely hours; a day rides out a network backlog.
    pub max_age: Duration,
    /// Most parts waiting at once, over all groups (duplicates included: each holds a SIM
    /// slot). Past it the oldest group is given up. Below the SIM's capacity, so that
    /// incomplete parts alone can never fill it and block every later SMS.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_age: Duration::from_secs(24 * 3600),
            max_parts: 16,
        }
    }
}

/// Why an incomplete SMS was published without its missing parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// Older than [`Limits::max_age`].
    Aged,
    /// The oldest group when more than [`Limits::max_parts`] parts waited.
    Crowded,
}

impl GaveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::Aged => "aged",
            GaveUp::Crowded => "crowded",
        }
    }
}

/// What an incomplete SMS was missing when it was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomplete {
    pub reason: GaveUp,
    /// Distinct parts received.
    pub received: usize,
    /// Parts the SMS announced.
    pub total: u8,
}

/// A whole SMS (or what was received of one that was given up), ready to publish, with the
/// places its parts are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub event: EdgeEvent,
    pub sources: Vec<PartSource>,
    /// `Some` when parts are missing; the text then shows where.
    pub incomplete: Option<Incomplete>,
}

/// Sender, concatenation reference and part count: what makes parts siblings.
type PartKey = (String, u16, u8);

/// The parts of one concatenated SMS received so far.
#[derive(Debug)]
struct Group {
    first_seen: Instant,
    /// Arrival order of groups, to evict the oldest whatever the clock says.
    order: u64,
    parts: BTreeMap<u8, (PartSource, Deliver)>,
    /// Places of parts that a later copy of the same part replaced (a sender repeating a
    /// fragment): they are deleted with the group, or they would stay on the SIM for ever.
    replaced: Vec<PartSource>,
}

impl Group {
    fn held(&self) -> usize {
        self.parts.len() + self.replaced.len()
    }
}

/// Collects parts until every part of a message arrived, within [`Limits`]. Parts only live
/// here in memory; they stay on the SIM (or in the spool) meanwhile, so a restart rebuilds
/// this from there (and the age of a group starts again).
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: Limits,
    pending: HashMap<PartKey, Group>,
    /// Parts held over all groups, duplicates included: what `max_parts` bounds.
    held: usize,
    next_order: u64,
    given_up: u64,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            ..Reassembler::default()
        }
    }

    /// Adds one part; returns the SMS it completed (at once for a single-part SMS) and any
    /// group given up to stay within [`Limits::max_parts`].
    pub fn add(
        &mut self,
        sim_id: i64,
        source: PartSource,
        part: Deliver,
        received_at: DateTime<Utc>,
        now: Instant,
    ) -> Vec<Assembled> {
        // TS 23.040 §9.2.3.24.1: a sequence number of 0 or above the total means the
        // element is to be ignored, so such a part is an SMS of its own.
        let Some(concat) = part
            .concat
            .filter(|c| c.total > 1 && c.seq >= 1 && c.seq <= c.total)
        else {
            return vec![assemble(
                sim_id,
                vec![(source, part)],
                Vec::new(),
                received_at,
            )];
        };
        let key = (part.sender.clone(), concat.reference, concat.total);
        let order = self.next_order;
        let group = self.pending.entry(key.clone()).or_insert_with(|| Group {
            first_seen: now,
            order,
            parts: BTreeMap::new(),
            replaced: Vec::new(),
        });
        if group.order == order {
            self.next_order += 1;
        }
        // The same part listed twice (a sweep after a reset) replaces itself; a copy kept
        // elsewhere is held (and later deleted) beside it.
        match group.parts.insert(concat.seq, (source.clone(), part)) {
            Some((old, _)) if old != source => {
                group.replaced.push(old);
                self.held += 1;
            }
            Some(_) => {}
            None => self.held += 1,
        }
        let mut released = Vec::new();
        if group.parts.len() == usize::from(concat.total) {
            if let Some(group) = self.pending.remove(&key) {
                self.held -= group.held();
                released.push(assemble(
                    sim_id,
                    group.parts.into_values().collect(),
                    group.replaced,
                    received_at,
                ));
            }
        }
        while self.held > self.limits.max_parts {
            let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, g)| g.order)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            released.push(self.give_up(sim_id, &oldest, GaveUp::Crowded, received_at));
        }
        released
    }

    /// Gives up every group older than [`Limits::max_age`] at `now`, oldest first.
    pub fn expire(
        &mut self,
        sim_id: i64,
        received_at: DateTime<Utc>,
        now: Instant,
    ) -> Vec<Assembled> {
        let mut aged: Vec<(u64, PartKey)> = self
            .pending
            .iter()
            .filter(|(_, g)| now.saturating_duration_since(g.first_seen) >= self.limits.max_age)
            .map(|(k, g)| (g.order, k.clone()))
            .collect();
        aged.sort_unstable_by_key(|(order, _)| *order);
        aged.into_iter()
            .map(|(_, key)| self.give_up(sim_id, &key, GaveUp::Aged, received_at))
            .collect()
    }

    /// When the oldest group will be due for [`Reassembler::expire`]; `None` with nothing
    /// waiting.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|g| g.first_seen + self.limits.max_age)
            .min()
    }

    fn give_up(
        &mut self,
        sim_id: i64,
        key: &PartKey,
        reason: GaveUp,
        received_at: DateTime<Utc>,
    ) -> Assembled {
        let group = self
            .pending
            .remove(key)
            .expect("only keys of pending groups are given up");
        self.held -= group.held();
        self.given_up += 1;
        let incomplete = Incomplete {
            reason,
            received: group.parts.len(),
            total: key.2,
        };
        let parts = group.parts.into_iter().collect();
        assemble_incomplete(sim_id, parts, group.replaced, incomplete, received_at)
    }

    /// Parts waiting for their siblings (duplicates included).
    pub fn waiting(&self) -> usize {
        self.held
    }

    /// Incomplete groups waiting.
    pub fn groups(&self) -> usize {
        self.pending.len()
    }

    /// Groups given up since start.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
}

/// Joins the parts in order with a marker where parts are missing, e.g.
/// `[parts 2-3 of 4 missing]`: the reader sees that something is, and where.
fn assemble_incomplete(
    sim_id: i64,
    parts: Vec<(u8, (PartSource, Deliver))>,
    replaced: Vec<PartSource>,
    incomplete: Incomplete,
    received_at: DateTime<Utc>,
) -> Assembled {
    let total = u16::from(incomplete.total);
    // Missing parts `from..until`, as one marker.
    let mark = |text: &mut String, from: u16, until: u16| match until.saturating_sub(from) {
        0 => {}
        1 => text.push_str(&format!("[part {from} of {total} missing]")),
        _ => text.push_str(&format!("[parts {from}-{} of {total} missing]", until - 1)),
    };
    let mut text = String::new();
    let mut next = 1u16;
    for (seq, (_, part)) in &parts {
        mark(&mut text, next, u16::from(*seq));
        text.push_str(&part.text);
        next = u16::from(*seq) + 1;
    }
    mark(&mut text, next, total + 1);
    let parts = parts.into_iter().map(|(_, p)| p).collect();
    assemble_text(sim_id, parts, replaced, Some(incomplete), text, received_at)
}

fn assemble(
    sim_id: i64,
    parts: Vec<(PartSource, Deliver)>,
    replaced: Vec<PartSource>,
    received_at: DateTime<Utc>,
) -> Assembled {
    let text = parts.iter().map(|(_, p)| p.text.as_str()).collect();
    assemble_text(sim_id, parts, replaced, None, text, received_at)
}

fn assemble_text(
    sim_id: i64,
    parts: Vec<(PartSource, Deliver)>,
    replaced: Vec<PartSource>,
    incomplete: Option<Incomplete>,
    text: String,
    received_at: DateTime<Utc>,
) -> Assembled {
    let first = &parts[0].1;
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
    let mut sources: Vec<PartSource> = parts.into_iter().map(|(s, _)| s).collect();
    sources.extend(replaced);
    Assembled {
        event,
        sources,
        incomplete,
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
    use crate::pdu::{decode_deliver, encode_deliver, Concat};

    fn parts_of(text: &str) -> Vec<Deliver> {
        parts_from("+85298765432", text, 5)
    }

    fn parts_from(sender: &str, text: &str, reference: u8) -> Vec<Deliver> {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        encode_deliver(sender, text, at, reference)
            .iter()
            .map(|p| decode_deliver(p).unwrap())
            .collect()
    }

    /// One part `seq` of `total` from `sender`, as an attacker can send it.
    fn fragment(sender: &str, reference: u16, total: u8, seq: u8, text: &str) -> Deliver {
        Deliver {
            sender: sender.to_owned(),
            text: text.to_owned(),
            sent_at: None,
            concat: Some(Concat {
                reference,
                total,
                seq,
            }),
        }
    }

    fn text_of(done: &Assembled) -> &str {
        match &done.event {
            EdgeEvent::InboundSmsV1 { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    fn parts_field(done: &Assembled) -> u16 {
        match &done.event {
            EdgeEvent::InboundSmsV1 { parts, .. } => *parts,
            other => panic!("{other:?}"),
        }
    }

    fn limits(max_parts: usize) -> Limits {
        Limits {
            max_age: Duration::from_secs(24 * 3600),
            max_parts,
        }
    }

    #[test]
    fn a_single_part_sms_is_complete_at_once() {
        let mut r = Reassembler::default();
        let done = r.add(
            1,
            PartSource::Sim(3),
            parts_of("hi").remove(0),
            Utc::now(),
            Instant::now(),
        );
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].sources, vec![PartSource::Sim(3)]);
        assert_eq!(done[0].incomplete, None);
        assert_eq!(parts_field(&done[0]), 1);
    }

    #[test]
    fn concatenated_parts_join_in_order_whatever_order_they_arrive_in() {
        let text = "長訊息測試".repeat(30); // 150 units → 3 UCS-2 parts
        let mut parts = parts_of(&text);
        assert_eq!(parts.len(), 3);
        let mut r = Reassembler::default();
        let now = Instant::now();
        let third = parts.pop().unwrap();
        let second = parts.pop().unwrap();
        let first = parts.pop().unwrap();
        assert!(r
            .add(1, PartSource::Sim(9), third, Utc::now(), now)
            .is_empty());
        assert!(r
            .add(1, PartSource::Sim(2), first.clone(), Utc::now(), now)
            .is_empty());
        // A re-listed part does not count twice.
        assert!(r
            .add(1, PartSource::Sim(2), first, Utc::now(), now)
            .is_empty());
        assert_eq!(r.waiting(), 2);
        let done = r.add(1, PartSource::Sim(5), second, Utc::now(), now);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (text_of(&done[0]), parts_field(&done[0])),
            (text.as_str(), 3)
        );
        assert_eq!(done[0].incomplete, None);
        assert_eq!(
            done[0].sources,
            vec![PartSource::Sim(2), PartSource::Sim(5), PartSource::Sim(9)]
        );
        assert_eq!((r.waiting(), r.groups(), r.given_up()), (0, 0, 0));
    }

    #[test]
    fn the_same_sms_read_twice_has_the_same_key() {
        let key = |received| match &Reassembler::default().add(
            1,
            PartSource::Sim(1),
            parts_of("same").remove(0),
            received,
            Instant::now(),
        )[0]
        .event
        {
            EdgeEvent::InboundSmsV1 { key, .. } => key.clone(),
            _ => unreachable!(),
        };
        assert_eq!(
            key(Utc::now()),
            key(Utc::now() + chrono::Duration::hours(1))
        );
    }

    #[test]
    fn a_flood_of_ten_thousand_distinct_fragments_stays_within_the_cap() {
        let cap = 16;
        let mut r = Reassembler::new(limits(cap));
        let start = Instant::now();
        let mut released = Vec::new();
        for i in 0..10_000u32 {
            let sender = format!("+8529{:07}", i % 5_000);
            let part = fragment(&sender, (i / 5_000) as u16, 3, 1 + (i % 2) as u8, "x");
            let now = start + Duration::from_millis(u64::from(i));
            released.extend(r.add(1, PartSource::Sim(i), part, Utc::now(), now));
            assert!(r.waiting() <= cap, "{} parts held after {i}", r.waiting());
            assert!(r.groups() <= cap);
        }
        assert_eq!(r.waiting(), cap);
        assert_eq!(released.len(), 10_000 - cap);
        assert_eq!(r.given_up(), (10_000 - cap) as u64);
        // The oldest went first, and every part given up is handed on for deletion.
        assert_eq!(released[0].sources, vec![PartSource::Sim(0)]);
        let mut indices: Vec<u32> = released
            .iter()
            .flat_map(|a| &a.sources)
            .map(|s| match s {
                PartSource::Sim(i) => *i,
                PartSource::Spool(_) => unreachable!(),
            })
            .collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..10_000 - cap as u32).collect::<Vec<_>>());
        for a in &released {
            assert_eq!(
                a.incomplete,
                Some(Incomplete {
                    reason: GaveUp::Crowded,
                    received: 1,
                    total: 3
                })
            );
        }
        assert!(text_of(&released[0]).starts_with("x[parts 2-3 of 3 missing]"));
    }

    #[test]
    fn a_group_past_its_age_is_published_with_markers_for_the_missing_parts() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let sender = "+85291112222";
        assert!(r
            .add(
                1,
                PartSource::Sim(4),
                fragment(sender, 7, 5, 3, "three"),
                Utc::now(),
                t0
            )
            .is_empty());
        let later = t0 + Duration::from_secs(3600);
        assert!(r
            .add(
                1,
                PartSource::Sim(2),
                fragment(sender, 7, 5, 1, "one "),
                Utc::now(),
                later
            )
            .is_empty());
        assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(24 * 3600)));
        assert!(r
            .expire(1, Utc::now(), t0 + Duration::from_secs(24 * 3600 - 1))
            .is_empty());
        let done = r.expire(1, Utc::now(), t0 + Duration::from_secs(24 * 3600));
        assert_eq!(done.len(), 1);
        assert_eq!(
            text_of(&done[0]),
            "one [part 2 of 5 missing]three[parts 4-5 of 5 missing]"
        );
        assert_eq!(parts_field(&done[0]), 2);
        assert_eq!(
            done[0].sources,
            vec![PartSource::Sim(2), PartSource::Sim(4)]
        );
        assert_eq!(
            done[0].incomplete,
            Some(Incomplete {
                reason: GaveUp::Aged,
                received: 2,
                total: 5
            })
        );
        assert_eq!((r.waiting(), r.groups(), r.given_up()), (0, 0, 1));
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn only_the_aged_groups_are_released_and_younger_ones_keep_waiting() {
        let mut r = Reassembler::new(Limits {
            max_age: Duration::from_secs(60),
            max_parts: 16,
        });
        let t0 = Instant::now();
        r.add(
            1,
            PartSource::Sim(1),
            fragment("A", 1, 2, 1, "a"),
            Utc::now(),
            t0,
        );
        let t1 = t0 + Duration::from_secs(50);
        r.add(
            1,
            PartSource::Sim(2),
            fragment("B", 1, 2, 2, "b"),
            Utc::now(),
            t1,
        );
        let done = r.expire(1, Utc::now(), t0 + Duration::from_secs(60));
        assert_eq!(done.len(), 1);
        assert_eq!(text_of(&done[0]), "a[part 2 of 2 missing]");
        assert_eq!(r.groups(), 1);
        assert_eq!(r.next_expiry(), Some(t1 + Duration::from_secs(60)));
        // Its sibling still completes the younger group.
        let done = r.add(
            1,
            PartSource::Sim(3),
            fragment("B", 1, 2, 1, "a"),
            Utc::now(),
            t1,
        );
        assert_eq!(text_of(&done[0]), "ab");
        assert_eq!(done[0].incomplete, None);
    }

    #[test]
    fn interleaved_groups_each_complete() {
        let long_a = "a".repeat(400); // 3 GSM-7 parts
        let long_b = "長".repeat(100); // 2 UCS-2 parts
        let long_c = "c".repeat(200); // same sender as a, other reference: 2 parts
        let a = parts_from("+85291110000", &long_a, 1);
        let b = parts_from("+85291110001", &long_b, 1);
        let c = parts_from("+85291110000", &long_c, 2);
        // Small cap, yet never exceeded: completed groups leave at once.
        let mut r = Reassembler::new(limits(4));
        let now = Instant::now();
        let order = [
            (&a, 2),
            (&b, 1),
            (&c, 0),
            (&a, 0),
            (&c, 1),
            (&b, 0),
            (&a, 1),
        ];
        let mut done = Vec::new();
        for (i, (parts, n)) in order.into_iter().enumerate() {
            let source = PartSource::Sim(i as u32);
            done.extend(r.add(1, source, parts[n].clone(), Utc::now(), now));
        }
        let texts: Vec<&str> = done.iter().map(text_of).collect();
        assert_eq!(texts, [long_c.as_str(), long_b.as_str(), long_a.as_str()]);
        assert!(done.iter().all(|d| d.incomplete.is_none()));
        assert_eq!((r.waiting(), r.given_up()), (0, 0));
    }

    #[test]
    fn a_repeated_fragment_is_held_and_deleted_with_its_group() {
        let mut r = Reassembler::new(limits(3));
        let now = Instant::now();
        for index in 0..3 {
            let part = fragment("+85291234567", 9, 2, 1, "dup");
            assert!(r
                .add(1, PartSource::Sim(index), part, Utc::now(), now)
                .is_empty());
        }
        assert_eq!(r.waiting(), 3, "every copy holds a SIM slot");
        // One copy more is past the cap: the group is given up with all its copies.
        let done = r.add(
            1,
            PartSource::Sim(3),
            fragment("+85291234567", 9, 2, 1, "dup"),
            Utc::now(),
            now,
        );
        assert_eq!(done.len(), 1);
        let mut sources = done[0].sources.clone();
        sources.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(sources, (0..4).map(PartSource::Sim).collect::<Vec<_>>());
        assert_eq!(text_of(&done[0]), "dup[part 2 of 2 missing]");
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn a_sequence_number_out_of_range_makes_an_sms_of_its_own() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        for seq in [0, 4] {
            let done = r.add(
                1,
                PartSource::Sim(u32::from(seq)),
                fragment("+85291234567", 1, 3, seq, "odd"),
                Utc::now(),
                now,
            );
            assert_eq!(done.len(), 1);
            assert_eq!((text_of(&done[0]), done[0].incomplete), ("odd", None));
        }
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn the_marker_names_every_missing_part_up_to_255() {
        let mut r = Reassembler::new(limits(1));
        let now = Instant::now();
        r.add(
            1,
            PartSource::Sim(0),
            fragment("A", 1, 255, 255, "z"),
            Utc::now(),
            now,
        );
        let done = r.add(
            1,
            PartSource::Sim(1),
            fragment("B", 1, 255, 1, "a"),
            Utc::now(),
            now,
        );
        assert_eq!(text_of(&done[0]), "[parts 1-254 of 255 missing]z");
        let done = r.expire(1, Utc::now(), now + Duration::from_secs(24 * 3600));
        assert_eq!(text_of(&done[0]), "a[parts 2-255 of 255 missing]");
    }
}
