//! Consumer acks, coalesced. Jobs finish out of order (many sends in flight, results
//! committed in batches), so each finished job used to cost one `basic.ack` frame, and
//! the broker as much work again to process it. Here one task per consumer channel keeps
//! the window of delivery tags not yet settled and, whenever a prefix of that window is
//! settled, settles all of it with a single `basic.ack(multiple)`.
//!
//! The broker fails the whole channel on an ack for a tag it does not know, so a
//! multiple ack always names a tag that is itself still unacked, and any single frame for
//! a tag below it (a requeue, a straggler's ack) has been written before it. A job that
//! finished behind one that is still sending is acked on its own once it has waited
//! [`STRAGGLER_WAIT`], so one slow gateway call does not hold finished jobs unacked (and
//! prefetch slots taken) for the whole of its timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Channel;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// How long a finished job waits for the jobs delivered before it to finish too.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(100);

/// How a job is settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with (its result is committed, or it was a duplicate): the broker forgets it.
    Ack,
    /// Not handled here: the broker hands it to a consumer again.
    Requeue,
}

/// A frame to write, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `basic.ack` for one tag.
    AckOne(u64),
    /// `basic.nack(requeue)` for one tag.
    Requeue(u64),
    /// `basic.ack(multiple)`: every unacked tag up to and including this one.
    AckUpTo(u64),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Delivered and still being worked on.
    Open,
    /// Finished, to be acked; waiting since then for the tags before it.
    Ack { since: Instant },
}

/// The unsettled delivery tags of one channel and what to send for them. Pure: the
/// caller says what happened, then takes the frames that are due and writes them in order.
#[derive(Debug, Default)]
pub struct AckWindow {
    /// Tags delivered and not yet covered by a frame. A tag not in here is either not
    /// delivered yet or settled.
    unsettled: BTreeMap<u64, Slot>,
    /// Requeues recorded since the last [`Self::take_due`].
    requeues: Vec<Frame>,
}

impl AckWindow {
    /// Tags arrive in delivery order.
    pub fn delivered(&mut self, tag: u64) {
        self.unsettled.insert(tag, Slot::Open);
    }

    /// Records how a delivered job is settled. A tag settled already, or never delivered
    /// on this channel, is ignored.
    pub fn settle(&mut self, tag: u64, how: Settle, now: Instant) {
        match how {
            Settle::Requeue => {
                if self.unsettled.remove(&tag).is_some() {
                    self.requeues.push(Frame::Requeue(tag));
                }
            }
            Settle::Ack => {
                if let Some(slot) = self.unsettled.get_mut(&tag) {
                    *slot = Slot::Ack { since: now };
                }
            }
        }
    }

    /// The frames due now: the requeues recorded, then one multiple ack for the finished
    /// run at the front of the window, if there is one.
    pub fn take_due(&mut self) -> Vec<Frame> {
        let mut frames = std::mem::take(&mut self.requeues);
        let mut highest = None;
        while let Some(entry) = self.unsettled.first_entry() {
            match entry.get() {
                Slot::Open => break,
                Slot::Ack { .. } => highest = Some(entry.remove_entry().0),
            }
        }
        frames.extend(highest.map(Frame::AckUpTo));
        frames
    }

    /// Acks, one by one, the finished jobs that have waited longer than `wait` behind an
    /// open one. Call after [`Self::take_due`], whose frames go first.
    pub fn release_stragglers(&mut self, now: Instant, wait: Duration) -> Vec<Frame> {
        let due: Vec<u64> = self
            .unsettled
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Ack { since } if now.duration_since(*since) >= wait))
            .map(|(tag, _)| *tag)
            .collect();
        for tag in &due {
            self.unsettled.remove(tag);
        }
        due.into_iter().map(Frame::AckOne).collect()
    }

    /// Everything finished, acked now; open jobs stay unacked (the broker redelivers them
    /// when the channel closes).
    pub fn release_all_finished(&mut self) -> Vec<Frame> {
        let mut frames = self.take_due();
        frames.extend(self.release_stragglers(Instant::now(), Duration::ZERO));
        frames
    }

    pub fn is_empty(&self) -> bool {
        self.unsettled.is_empty()
    }
}

enum Command {
    Delivered(Vec<u64>),
    Settle(Vec<u64>, Settle),
}

/// Handle to one channel's ack task. Cheap to clone; the task writes what is left and
/// stops once every handle is dropped. After the channel is gone the handle still
/// accepts calls, which do nothing: the broker has requeued those jobs already.
#[derive(Clone)]
pub struct Acks {
    commands: mpsc::UnboundedSender<Command>,
}

impl Acks {
    /// Starts the ack task for `channel` on `tracker`, which the dispatcher waits for
    /// before it closes the connection.
    pub fn start(channel: Channel, tracker: &TaskTracker) -> Acks {
        let (commands, received) = mpsc::unbounded_channel();
        tracker.spawn(run(channel, received));
        Acks { commands }
    }

    /// Call in delivery order, before any of these jobs can be settled.
    pub fn delivered(&self, tags: Vec<u64>) {
        let _ = self.commands.send(Command::Delivered(tags));
    }

    pub fn settle(&self, tag: u64, how: Settle) {
        self.settle_all(vec![tag], how);
    }

    /// Settles many jobs in one message to the ack task (a committed batch): the task
    /// then writes one frame for them, not one per job it happened to be woken for.
    pub fn settle_all(&self, tags: Vec<u64>, how: Settle) {
        let _ = self.commands.send(Command::Settle(tags, how));
    }

    /// Whether both handles settle jobs of the same channel.
    pub fn same_channel(&self, other: &Acks) -> bool {
        self.commands.same_channel(&other.commands)
    }
}

async fn run(channel: Channel, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut window = AckWindow::default();
    let mut stragglers = tokio::time::interval(STRAGGLER_WAIT);
    stragglers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frames = tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                // Take everything queued, so one frame settles what many tasks finished.
                apply(&mut window, command);
                while let Ok(command) = commands.try_recv() {
                    apply(&mut window, command);
                }
                window.take_due()
            }
            _ = stragglers.tick(), if !window.is_empty() => {
                window.release_stragglers(Instant::now(), STRAGGLER_WAIT)
            }
        };
        write(&channel, frames).await;
    }
    write(&channel, window.release_all_finished()).await;
}

fn apply(window: &mut AckWindow, command: Command) {
    match command {
        Command::Delivered(tags) => tags.into_iter().for_each(|tag| window.delivered(tag)),
        Command::Settle(tags, how) => {
            let now = Instant::now();
            for tag in tags {
                window.settle(tag, how, now);
            }
        }
    }
}

/// Writes the frames keeping the one order that matters: every single-tag frame before a
/// multiple ack that follows it.
async fn write(channel: &Channel, frames: Vec<Frame>) {
    let mut singles = Vec::new();
    for frame in frames {
        match frame {
            Frame::AckOne(_) | Frame::Requeue(_) => singles.push(frame_future(channel, frame)),
            Frame::AckUpTo(tag) => {
                report(join_all(std::mem::take(&mut singles)).await);
                report(vec![frame_future(channel, Frame::AckUpTo(tag)).await]);
            }
        }
    }
    report(join_all(singles).await);
}

async fn frame_future(channel: &Channel, frame: Frame) -> lapin::Result<()> {
    match frame {
        Frame::AckOne(tag) => channel.basic_ack(tag, BasicAckOptions::default()).await,
        Frame::AckUpTo(tag) => {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
        }
        Frame::Requeue(tag) => {
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            channel.basic_nack(tag, requeue).await
        }
    }
}

fn report(results: Vec<lapin::Result<()>>) {
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        debug!(error = %e, "acks not written; the broker will redeliver those jobs and they will be skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(tags: std::ops::RangeInclusive<u64>) -> AckWindow {
        let mut window = AckWindow::default();
        for tag in tags {
            window.delivered(tag);
        }
        window
    }

    /// Settles `tags` in the order given and takes what is due.
    fn settle(w: &mut AckWindow, tags: &[u64], how: Settle) -> Vec<Frame> {
        for &tag in tags {
            w.settle(tag, how, Instant::now());
        }
        w.take_due()
    }

    #[test]
    fn a_finished_run_at_the_front_is_acked_by_one_frame() {
        let mut w = window(1..=3);
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(1)]);
        assert_eq!(
            settle(&mut w, &[3, 2], Settle::Ack),
            vec![Frame::AckUpTo(3)]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_job_still_open_holds_back_the_jobs_after_it_then_one_frame_covers_them() {
        let mut w = window(1..=4);
        assert!(settle(&mut w, &[2, 4, 3], Settle::Ack).is_empty());
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(4)]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_multiple_ack_stops_below_an_open_job() {
        let mut w = window(1..=4);
        assert_eq!(
            settle(&mut w, &[1, 3, 2], Settle::Ack),
            vec![Frame::AckUpTo(3)]
        );
        // 4 is still open: nothing may cover it.
        assert!(!w.is_empty());
        assert!(w.release_all_finished().is_empty());
    }

    #[test]
    fn a_requeue_is_due_at_once_and_goes_before_the_ack_that_passes_it() {
        let mut w = window(1..=3);
        assert_eq!(
            settle(&mut w, &[2], Settle::Requeue),
            vec![Frame::Requeue(2)]
        );
        w.settle(3, Settle::Ack, Instant::now());
        w.settle(4, Settle::Ack, Instant::now());
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(3)]);

        let mut w = window(1..=3);
        w.settle(1, Settle::Ack, Instant::now());
        w.settle(2, Settle::Requeue, Instant::now());
        w.settle(3, Settle::Ack, Instant::now());
        assert_eq!(w.take_due(), vec![Frame::Requeue(2), Frame::AckUpTo(3)]);
    }

    #[test]
    fn a_multiple_ack_never_names_a_tag_already_settled() {
        // The broker fails the channel on an ack for a tag it no longer holds.
        let mut w = window(1..=3);
        settle(&mut w, &[3], Settle::Requeue);
        assert!(settle(&mut w, &[2], Settle::Ack).is_empty());
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(2)]);

        let now = Instant::now();
        let mut w = window(1..=3);
        w.settle(2, Settle::Ack, now);
        w.settle(3, Settle::Ack, now);
        let later = now + STRAGGLER_WAIT;
        assert_eq!(
            w.release_stragglers(later, STRAGGLER_WAIT),
            vec![Frame::AckOne(2), Frame::AckOne(3)]
        );
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(1)]);
        assert!(w.is_empty());
    }

    #[test]
    fn stragglers_are_released_only_after_waiting() {
        let now = Instant::now();
        let mut w = window(1..=3);
        w.settle(2, Settle::Ack, now);
        w.settle(3, Settle::Ack, now + Duration::from_millis(60));
        let later = now + STRAGGLER_WAIT;
        assert_eq!(
            w.release_stragglers(later, STRAGGLER_WAIT),
            vec![Frame::AckOne(2)]
        );
        assert_eq!(
            w.release_stragglers(later + Duration::from_millis(60), STRAGGLER_WAIT),
            vec![Frame::AckOne(3)]
        );
    }

    #[test]
    fn settling_a_tag_twice_or_an_unknown_tag_writes_nothing_more() {
        let mut w = window(1..=2);
        assert_eq!(settle(&mut w, &[1], Settle::Ack), vec![Frame::AckUpTo(1)]);
        assert!(settle(&mut w, &[1], Settle::Ack).is_empty());
        assert!(settle(&mut w, &[1], Settle::Requeue).is_empty());
        assert!(settle(&mut w, &[9], Settle::Ack).is_empty());
        assert!(!w.is_empty());
    }

    #[test]
    fn at_the_end_finished_jobs_are_acked_and_open_ones_left() {
        let now = Instant::now();
        let mut w = window(1..=4);
        w.settle(2, Settle::Ack, now);
        w.settle(4, Settle::Ack, now);
        assert_eq!(
            w.release_all_finished(),
            vec![Frame::AckOne(2), Frame::AckOne(4)]
        );
    }
}
