//! The retry schedule as data: which retry queue a failed attempt waits in, or none.

use std::time::Duration;

/// What to do after a transient failure of attempt number `attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Wait in retry queue `step`, then try again as attempt `attempt`.
    RetryIn { step: usize, attempt: u32 },
    /// The schedule is exhausted: the recipient fails and the job goes to the dead queue.
    GiveUp,
}

/// Backoff steps, e.g. 5 s, 30 s, 2 min, 10 min: a job is tried once plus once per step.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

impl RetryPolicy {
    /// `schedule` must not be empty (settings validation guarantees it).
    pub fn new(schedule: Vec<Duration>) -> RetryPolicy {
        assert!(
            !schedule.is_empty(),
            "retry schedule needs at least one step"
        );
        RetryPolicy { schedule }
    }

    /// How long step `step` waits (the step [`RetryPolicy::after_failure`] chose).
    pub fn delay(&self, step: usize) -> Duration {
        self.schedule[step.min(self.schedule.len() - 1)]
    }

    /// Attempts in total, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    /// Attempt `attempt` (1-based) failed transiently. The step follows the attempt count;
    /// a `Retry-After` longer than that step's delay moves the wait to the first longer step
    /// (retry queues have fixed TTLs), capped at the longest.
    pub fn after_failure(&self, attempt: u32, retry_after: Option<Duration>) -> NextStep {
        let step = attempt.saturating_sub(1) as usize;
        if step >= self.schedule.len() {
            return NextStep::GiveUp;
        }
        let step = match retry_after {
            Some(wait) if wait > self.schedule[step] => (step..self.schedule.len())
                .find(|&i| self.schedule[i] >= wait)
                .unwrap_or(self.schedule.len() - 1),
            _ => step,
        };
        NextStep::RetryIn {
            step,
            attempt: attempt + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new([5, 30, 120, 600].map(Duration::from_secs).to_vec())
    }

    #[test]
    fn each_attempt_waits_in_the_next_step_until_the_schedule_ends() {
        let p = policy();
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(
            p.after_failure(1, None),
            NextStep::RetryIn {
                step: 0,
                attempt: 2
            }
        );
        assert_eq!(
            p.after_failure(4, None),
            NextStep::RetryIn {
                step: 3,
                attempt: 5
            }
        );
        assert_eq!(p.after_failure(5, None), NextStep::GiveUp);
    }

    #[test]
    fn retry_after_picks_the_first_step_that_waits_long_enough() {
        let p = policy();
        assert_eq!(
            p.after_failure(1, Some(Duration::from_secs(20))),
            NextStep::RetryIn {
                step: 1,
                attempt: 2
            }
        );
        assert_eq!(
            p.after_failure(1, Some(Duration::from_secs(3))),
            NextStep::RetryIn {
                step: 0,
                attempt: 2
            }
        );
        assert_eq!(
            p.after_failure(1, Some(Duration::from_secs(3600))),
            NextStep::RetryIn {
                step: 3,
                attempt: 2
            }
        );
    }
}
