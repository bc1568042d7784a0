//! Releasing to SIM cards: which SIM takes each job, within its carrier caps and spacing,
//! and what happens to jobs waiting for a SIM that went offline.
//!
//! - A message on route `sim` (the pool) is served by every SIM that is active, online and
//!   usable by its owner, least loaded first (fewest jobs released in the last 24 h, then
//!   fewest ready); a message on `sim.<id>` only by that SIM, and only while it is online
//!   (jobs wait in the release queue, not in the queue of a SIM nobody is reading).
//! - A SIM's room in a round is its target depth minus the jobs ready in its queue, and no
//!   more than each cap (per minute, hour, day) still allows. With spacing, a SIM takes at
//!   most one job at a time and none before its next release time, which is drawn afresh
//!   after each job ([`draw_gap`]).
//! - Which SIM a job went to is written to `recipients.sim_card_id` and counted against the
//!   SIM's caps in one statement, committed before the job is published.
//! - Priorities and fair share between users are [`super::plan`]'s: the pool is one route
//!   to it, whose room is the sum of its SIMs' rooms; jobs are placed on SIMs afterwards.
//!
//! Failover ([`drain`]): the queue of a SIM that is offline or inactive is emptied (jobs
//! the agent holds unacknowledged stay with it, and their results still count) and their
//! recipients go back to the release queue with their SIM cleared, so other SIMs take pool
//! work; single-SIM work waits for its SIM. Work of messages that allow `fallback: hkt`
//! and that no SIM can take goes to the HKT gateway.

use std::collections::HashMap;

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::Channel;
use rand::Rng;
use smsgate_shared::queue::OutboundJob;
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

use super::pool_repo::{self, SimState};

/// The pool's route, as stored on messages and release rows.
pub const POOL_ROUTE: &str = "sim";

/// The SIM id of a single-SIM route `sim.<id>`.
pub fn single_sim(route: &str) -> Option<i64> {
    route.strip_prefix("sim.").and_then(|id| id.parse().ok())
}

/// How many jobs a SIM can take now: `depth` minus what is `ready` in its queue, within
/// what each cap still allows; with spacing, one at most, and none before it is due.
pub fn sim_room(state: &SimState, depth: u32, ready: u32) -> u32 {
    if !state.active || !state.online {
        return 0;
    }
    let depth = if state.send_interval_secs.is_some() {
        if !state.spacing_due {
            return 0;
        }
        1
    } else {
        depth
    };
    let mut room = i64::from(depth.saturating_sub(ready));
    for (cap, used) in [
        (state.max_per_minute, state.used_minute),
        (state.max_per_hour, state.used_hour),
        (state.max_per_day, state.used_day),
    ] {
        if let Some(cap) = cap {
            room = room.min(i64::from(cap) - used);
        }
    }
    room.clamp(0, i64::from(u32::MAX)) as u32
}

/// The gap before a spaced SIM's next job: uniform in [0.5, 1.5] × its interval, so the
/// sends look like a person's rather than a machine's to the carrier.
pub fn draw_gap(interval_secs: i32, rng: &mut impl Rng) -> f64 {
    f64::from(interval_secs) * rng.gen_range(0.5..=1.5)
}

/// One SIM's standing during a round.
#[derive(Debug, Clone)]
struct Slot {
    room: u32,
    /// Released in the last 24 h, plus what this round placed.
    day_load: i64,
    ready: u32,
    interval: Option<i32>,
    placed: u32,
}

/// The SIMs of one release round: what each can take, and who may use which.
#[derive(Debug, Default)]
pub struct SimRooms {
    slots: HashMap<i64, Slot>,
    /// User → the active SIMs they may use (online or not; rooms decide).
    usable: HashMap<i64, Vec<i64>>,
}

impl SimRooms {
    /// `ready` is what each SIM's queue holds now; SIMs without an entry hold nothing.
    pub fn new(
        states: &[SimState],
        ready: &HashMap<i64, u32>,
        usable: Vec<pool_repo::Usable>,
        depth: u32,
    ) -> SimRooms {
        let slots = states
            .iter()
            .map(|s| {
                let ready = ready.get(&s.id).copied().unwrap_or(0);
                let slot = Slot {
                    room: sim_room(s, depth, ready),
                    day_load: s.used_day,
                    ready,
                    interval: s.send_interval_secs,
                    placed: 0,
                };
                (s.id, slot)
            })
            .collect();
        let mut by_user: HashMap<i64, Vec<i64>> = HashMap::new();
        for u in usable {
            by_user.entry(u.user_id).or_default().push(u.sim_card_id);
        }
        SimRooms {
            slots,
            usable: by_user,
        }
    }

    /// The room of `route` (`sim` or `sim.<id>`) for the fair-share plan: one SIM's room,
    /// or the pool's, the sum over the SIMs any of `users` may use. `None` for other routes.
    pub fn route_room(&self, route: &str, users: &[i64]) -> Option<u32> {
        if let Some(id) = single_sim(route) {
            return Some(self.slots.get(&id).map_or(0, |s| s.room));
        }
        if route != POOL_ROUTE {
            return None;
        }
        let mut sims: Vec<i64> = users
            .iter()
            .filter_map(|u| self.usable.get(u))
            .flatten()
            .copied()
            .collect();
        sims.sort_unstable();
        sims.dedup();
        Some(
            sims.iter()
                .filter_map(|id| self.slots.get(id))
                .map(|s| s.room)
                .sum(),
        )
    }

    /// Places one job of `user` on `route`: the SIM it goes to, which loses a slot of room;
    /// `None` when no SIM that may take it has room left.
    pub fn place(&mut self, route: &str, user: i64) -> Option<i64> {
        let sim = match single_sim(route) {
            Some(id) => Some(id).filter(|id| self.slots.get(id).is_some_and(|s| s.room > 0)),
            None => self
                .usable
                .get(&user)?
                .iter()
                .filter_map(|id| self.slots.get(id).map(|s| (*id, s)))
                .filter(|(_, s)| s.room > 0)
                .min_by_key(|(id, s)| (s.day_load, s.ready, *id))
                .map(|(id, _)| id),
        }?;
        let slot = self.slots.get_mut(&sim).expect("a SIM with room");
        slot.room -= 1;
        slot.day_load += 1;
        slot.ready += 1;
        slot.placed += 1;
        Some(sim)
    }

    /// The spaced SIMs that were given a job this round, each with its next gap.
    pub fn gaps(&self, rng: &mut impl Rng) -> (Vec<i64>, Vec<f64>) {
        self.slots
            .iter()
            .filter(|(_, s)| s.placed > 0)
            .filter_map(|(id, s)| s.interval.map(|i| (*id, draw_gap(i, rng))))
            .unzip()
    }
}

/// Empties SIM `sim_id`'s queue and puts its jobs' recipients back in the release queue
/// ([`pool_repo::take_back`]); the jobs are acknowledged only after that commit, so a crash
/// in between leaves them in the queue. Returns how many recipients moved.
pub async fn drain(
    channel: &Channel,
    conn: &mut PgConnection,
    queue: &str,
    sim_id: i64,
) -> anyhow::Result<i64> {
    let mut recipients = Vec::new();
    let mut last_tag = None;
    while let Some(got) = channel
        .basic_get(queue, BasicGetOptions { no_ack: false })
        .await?
    {
        last_tag = Some(got.delivery.delivery_tag);
        match OutboundJob::from_json(&got.delivery.data) {
            Ok(job) => recipients.push(job.recipient_id()),
            Err(e) => {
                warn!(error = %e, sim.id = sim_id, "an unreadable job in a SIM queue is dropped")
            }
        }
    }
    let Some(last_tag) = last_tag else {
        return Ok(0);
    };
    let mut tx = conn.begin().await?;
    let moved = pool_repo::take_back(&mut tx, sim_id, &recipients).await?;
    tx.commit().await?;
    // Everything got on this channel up to the last tag, in one acknowledgement.
    channel
        .basic_ack(last_tag, BasicAckOptions { multiple: true })
        .await?;
    info!(
        sim.id = sim_id,
        jobs = recipients.len(),
        moved,
        "drained the queue of an unavailable SIM"
    );
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn state(id: i64) -> SimState {
        SimState {
            id,
            active: true,
            online: true,
            signal: None,
            max_per_minute: None,
            max_per_hour: None,
            max_per_day: None,
            send_interval_secs: None,
            spacing_due: true,
            used_minute: 0,
            used_hour: 0,
            used_day: 0,
        }
    }

    fn usable(user: i64, sims: &[i64]) -> Vec<pool_repo::Usable> {
        sims.iter()
            .map(|s| pool_repo::Usable {
                user_id: user,
                sim_card_id: *s,
            })
            .collect()
    }

    #[test]
    fn a_sims_room_is_its_depth_within_every_cap() {
        let mut s = state(1);
        assert_eq!(sim_room(&s, 5, 2), 3);
        s.max_per_day = Some(10);
        s.used_day = 9;
        assert_eq!(sim_room(&s, 5, 0), 1);
        s.used_day = 12; // caps lowered below what was sent: no room, not an underflow
        assert_eq!(sim_room(&s, 5, 0), 0);
        s.max_per_day = None;
        s.max_per_minute = Some(3);
        s.used_minute = 1;
        assert_eq!(sim_room(&s, 5, 0), 2);
        s.online = false;
        assert_eq!(sim_room(&s, 5, 0), 0);
    }

    #[test]
    fn a_spaced_sim_takes_one_job_at_a_time_and_only_when_due() {
        let mut s = state(1);
        s.send_interval_secs = Some(10);
        assert_eq!(sim_room(&s, 5, 0), 1);
        assert_eq!(sim_room(&s, 5, 1), 0);
        s.spacing_due = false;
        assert_eq!(sim_room(&s, 5, 0), 0);
    }

    #[test]
    fn gaps_stay_within_half_and_one_and_a_half_intervals() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let gaps: Vec<f64> = (0..1000).map(|_| draw_gap(10, &mut rng)).collect();
        assert!(gaps.iter().all(|g| (5.0..=15.0).contains(g)));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((9.0..11.0).contains(&mean), "{mean}");
        assert!(gaps.iter().any(|g| *g < 7.0) && gaps.iter().any(|g| *g > 13.0));
    }

    #[test]
    fn pool_jobs_go_to_the_least_loaded_usable_sim() {
        let mut busy = state(1);
        busy.used_day = 100;
        let states = [busy, state(2), state(3)];
        // User 7 may use SIMs 1 and 2 only.
        let mut rooms = SimRooms::new(&states, &HashMap::new(), usable(7, &[1, 2]), 5);
        assert_eq!(rooms.route_room("sim", &[7]), Some(10));
        let placed: Vec<i64> = (0..7).filter_map(|_| rooms.place("sim", 7)).collect();
        assert_eq!(placed, [2, 2, 2, 2, 2, 1, 1]);
        assert_eq!(rooms.place("sim", 8), None, "a user with no usable SIM");
        assert_eq!(rooms.route_room("hkt", &[7]), None);
    }

    #[test]
    fn a_single_sim_route_uses_that_sim_only_and_shares_its_room_with_the_pool() {
        let states = [state(1), state(2)];
        let ready = HashMap::from([(1, 3)]);
        let mut rooms = SimRooms::new(&states, &ready, usable(7, &[1, 2]), 5);
        assert_eq!(rooms.route_room("sim.1", &[]), Some(2));
        assert_eq!(rooms.place("sim.1", 7), Some(1));
        assert_eq!(rooms.place("sim.1", 7), Some(1));
        assert_eq!(rooms.place("sim.1", 7), None);
        assert_eq!(rooms.route_room("sim", &[7]), Some(5));
        assert_eq!(rooms.route_room("sim.9", &[]), Some(0), "an unknown SIM");
    }

    #[test]
    fn only_spaced_sims_that_took_a_job_get_a_new_gap() {
        let mut spaced = state(1);
        spaced.send_interval_secs = Some(4);
        let mut idle = state(2);
        idle.send_interval_secs = Some(4);
        let states = [spaced, idle, state(3)];
        let mut rooms = SimRooms::new(&states, &HashMap::new(), usable(7, &[1, 3]), 5);
        assert_eq!(rooms.place("sim.1", 7), Some(1));
        assert_eq!(rooms.place("sim.3", 7), Some(3));
        let (sims, gaps) = rooms.gaps(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(sims, [1]);
        assert!((2.0..=6.0).contains(&gaps[0]));
    }
}
