//! Which recipients a release round publishes: priorities, then fair share between users,
//! by stride scheduling. Pure: the releaser feeds it what is due and the room each route
//! has, and publishes what it returns.
//!
//! - **Between classes**, each route's release slots go to the class with the lowest pass;
//!   a class's pass grows by `1 / weight` per slot (high 64, normal 8, low 1). So while high
//!   has work it takes 64 of every 73 slots, normal 8 and low 1: high goes first, and no
//!   class waits forever behind another.
//! - **Within a class**, slots go to the user with the lowest pass, which grows by
//!   `1 / share_weight` per slot: users with work share the class's slots in proportion to
//!   their weights, whatever the size of their sends.
//! - A class or user that comes back after having no work starts at the current pass of
//!   its peers, not its old one: being idle earns no burst.
//! - Within one user and class, messages go oldest first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use smsgate_shared::domain::Priority;

/// One unit of pass, divided by a weight; large so that integer division stays exact
/// enough for weights up to 100.
const PASS_UNIT: u64 = 1 << 24;

fn class_weight(priority: Priority) -> u64 {
    match priority {
        Priority::High => 64,
        Priority::Normal => 8,
        Priority::Low => 1,
    }
}

fn class_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

const CLASSES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// A message with recipients still to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub message_id: i64,
    /// Recipients with an id above this one are not published yet.
    pub released_through: i64,
    /// How many are left (an upper bound).
    pub unreleased: u32,
}

/// The due messages of one user in one class on one route, oldest first.
#[derive(Debug, Clone)]
pub struct Group {
    pub route: String,
    pub priority: Priority,
    pub user_id: i64,
    /// The user's share weight, 1..=100.
    pub weight: u32,
    pub messages: Vec<Pending>,
}

/// Publish up to `count` recipients of `message_id` after `released_through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub message_id: i64,
    pub route: String,
    pub priority: Priority,
    pub released_through: i64,
    pub count: u32,
}

/// The passes that carry fairness from one round to the next. Lives as long as this
/// process is the releaser; a new releaser starts everyone equal.
#[derive(Debug, Default)]
pub struct FairShare {
    class_pass: HashMap<String, [u64; 3]>,
    /// (route, class, user) → pass.
    user_pass: HashMap<(String, usize, i64), u64>,
    /// (route, class) → the pass of the last user served: where a returning user starts.
    class_clock: HashMap<(String, usize), u64>,
}

impl FairShare {
    /// Spends `rooms[route]` slots on each route's groups. Returns what to publish, in the
    /// order chosen (per message, one `Take` with the total).
    pub fn allot(&mut self, rooms: &HashMap<String, u32>, groups: Vec<Group>) -> Vec<Take> {
        let mut by_route: HashMap<String, Vec<Group>> = HashMap::new();
        for group in groups {
            by_route.entry(group.route.clone()).or_default().push(group);
        }
        let mut takes = Vec::new();
        for (route, groups) in by_route {
            let room = rooms.get(&route).copied().unwrap_or(0);
            if room > 0 {
                takes.extend(self.allot_route(&route, room, groups));
            }
        }
        takes
    }

    fn allot_route(&mut self, route: &str, room: u32, groups: Vec<Group>) -> Vec<Take> {
        // Per class: its users' queues, in a heap by pass.
        let mut classes: [ClassQueue; 3] = Default::default();
        for group in groups {
            let class = class_index(group.priority);
            classes[class].groups.push(group);
        }
        for (class, queue) in classes.iter_mut().enumerate() {
            let clock = self
                .class_clock
                .get(&(route.to_owned(), class))
                .copied()
                .unwrap_or(0);
            for (i, group) in queue.groups.iter().enumerate() {
                let key = (route.to_owned(), class, group.user_id);
                let pass = self.user_pass.get(&key).copied().unwrap_or(0).max(clock);
                queue.heap.push(Reverse((pass, group.user_id, i)));
            }
            queue.clock = clock;
        }
        let class_pass = self.class_pass.entry(route.to_owned()).or_default();
        // A class with no work now restarts at the lowest pass of those that have some.
        let busy_min = (0..3)
            .filter(|c| !classes[*c].heap.is_empty())
            .map(|c| class_pass[c])
            .min()
            .unwrap_or(0);
        for c in 0..3 {
            if classes[c].heap.is_empty() || class_pass[c] < busy_min {
                class_pass[c] = class_pass[c].max(busy_min);
            }
        }

        let mut counts: Vec<HashMap<(usize, usize), u32>> = vec![HashMap::new(); 3];
        for _ in 0..room {
            let Some(class) = (0..3)
                .filter(|c| !classes[*c].heap.is_empty())
                .min_by_key(|c| (class_pass[*c], *c))
            else {
                break;
            };
            class_pass[class] += PASS_UNIT / class_weight(CLASSES[class]);
            let queue = &mut classes[class];
            let Reverse((pass, user_id, i)) = queue.heap.pop().expect("a busy class");
            queue.clock = pass;
            let group = &mut queue.groups[i];
            let next = pass + PASS_UNIT / u64::from(group.weight.clamp(1, 100));
            // Take one recipient from the group's oldest message with any left.
            let Some(index) = group.messages.iter().position(|m| m.unreleased > 0) else {
                continue; // nothing left: the group leaves the heap
            };
            group.messages[index].unreleased -= 1;
            *counts[class].entry((i, index)).or_default() += 1;
            if group.messages.iter().any(|m| m.unreleased > 0) {
                queue.heap.push(Reverse((next, user_id, i)));
            }
            self.user_pass
                .insert((route.to_owned(), class, user_id), next);
        }

        let mut takes = Vec::new();
        for (class, queue) in classes.iter().enumerate() {
            self.class_clock
                .insert((route.to_owned(), class), queue.clock);
            let mut chosen: Vec<(&(usize, usize), &u32)> = counts[class].iter().collect();
            chosen.sort();
            for ((group, message), count) in chosen {
                let group = &queue.groups[*group];
                let message = &group.messages[*message];
                takes.push(Take {
                    message_id: message.message_id,
                    route: route.to_owned(),
                    priority: group.priority,
                    released_through: message.released_through,
                    count: *count,
                });
            }
        }
        takes
    }
}

#[derive(Default)]
struct ClassQueue {
    groups: Vec<Group>,
    /// (pass, user id, index into `groups`), lowest pass first.
    heap: BinaryHeap<Reverse<(u64, i64, usize)>>,
    clock: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(user_id: i64, priority: Priority, weight: u32, sizes: &[u32]) -> Group {
        Group {
            route: "hkt".into(),
            priority,
            user_id,
            weight,
            messages: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| Pending {
                    message_id: user_id * 100 + i as i64,
                    released_through: 0,
                    unreleased: *n,
                })
                .collect(),
        }
    }

    fn rooms(n: u32) -> HashMap<String, u32> {
        HashMap::from([("hkt".to_owned(), n)])
    }

    fn per_user(takes: &[Take]) -> HashMap<i64, u32> {
        let mut totals = HashMap::new();
        for t in takes {
            *totals.entry(t.message_id / 100).or_default() += t.count;
        }
        totals
    }

    #[test]
    fn a_small_send_is_not_queued_behind_a_large_one() {
        let mut fair = FairShare::default();
        let groups = vec![
            group(1, Priority::Normal, 1, &[100_000]),
            group(2, Priority::Normal, 1, &[10]),
        ];
        let takes = fair.allot(&rooms(20), groups);
        assert_eq!(per_user(&takes), HashMap::from([(1, 10), (2, 10)]));
    }

    #[test]
    fn weights_divide_a_class_in_proportion() {
        let mut fair = FairShare::default();
        let groups = vec![
            group(1, Priority::Normal, 1, &[1_000]),
            group(2, Priority::Normal, 3, &[1_000]),
        ];
        let totals = per_user(&fair.allot(&rooms(400), groups));
        assert_eq!(totals[&1], 100);
        assert_eq!(totals[&2], 300);
    }

    #[test]
    fn fairness_holds_across_rounds_of_one_slot() {
        // At 2 requests/s a round often has room for one recipient: the passes carry over.
        let mut fair = FairShare::default();
        let mut totals: HashMap<i64, u32> = HashMap::new();
        for _ in 0..100 {
            let groups = vec![
                group(1, Priority::Normal, 1, &[1_000]),
                group(2, Priority::Normal, 1, &[1_000]),
            ];
            for (user, n) in per_user(&fair.allot(&rooms(1), groups)) {
                *totals.entry(user).or_default() += n;
            }
        }
        assert_eq!(totals[&1], 50);
        assert_eq!(totals[&2], 50);
    }

    #[test]
    fn high_goes_first_and_lower_classes_still_get_a_share() {
        let mut fair = FairShare::default();
        let groups = vec![
            group(1, Priority::High, 1, &[10_000]),
            group(2, Priority::Normal, 1, &[10_000]),
            group(3, Priority::Low, 1, &[10_000]),
        ];
        let totals = per_user(&fair.allot(&rooms(730), groups));
        assert_eq!(totals[&1], 640);
        assert_eq!(totals[&2], 80);
        assert_eq!(totals[&3], 10);
    }

    #[test]
    fn a_high_send_takes_the_next_slots_even_after_a_long_normal_run() {
        let mut fair = FairShare::default();
        for _ in 0..50 {
            fair.allot(&rooms(10), vec![group(1, Priority::Normal, 1, &[100_000])]);
        }
        let groups = vec![
            group(1, Priority::Normal, 1, &[100_000]),
            group(2, Priority::High, 1, &[3]),
        ];
        let takes = fair.allot(&rooms(3), groups);
        assert_eq!(per_user(&takes), HashMap::from([(2, 3)]));
    }

    #[test]
    fn a_returning_user_gets_no_burst_for_having_been_idle() {
        let mut fair = FairShare::default();
        for _ in 0..50 {
            fair.allot(&rooms(10), vec![group(1, Priority::Normal, 1, &[100_000])]);
        }
        // User 2 was idle for 500 slots; it now shares equally rather than taking 500.
        let groups = vec![
            group(1, Priority::Normal, 1, &[100_000]),
            group(2, Priority::Normal, 1, &[100_000]),
        ];
        let totals = per_user(&fair.allot(&rooms(100), groups));
        assert_eq!(totals[&1], 50);
        assert_eq!(totals[&2], 50);
    }

    #[test]
    fn a_users_messages_go_oldest_first_and_rooms_are_not_exceeded() {
        let mut fair = FairShare::default();
        let takes = fair.allot(&rooms(7), vec![group(1, Priority::Normal, 1, &[3, 10])]);
        assert_eq!(
            takes
                .iter()
                .map(|t| (t.message_id, t.count))
                .collect::<Vec<_>>(),
            vec![(100, 3), (101, 4)]
        );
        let none = fair.allot(&HashMap::new(), vec![group(1, Priority::Normal, 1, &[3])]);
        assert!(none.is_empty());
    }
}
