//! The API's memory through two 100,000-recipient bulks in a row (issue #17, item 5):
//! sampled from before the first request until every job of both is published and sent,
//! then for a settle window after, so the publish phase (where the memory went) is in the
//! window and not only the accept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::report::Figure;
use crate::scenarios::{post_bulk, Sizes};
use crate::stack::{proc_status_kib, reset_peak_rss, Stack};

/// How often RSS is read while a scenario runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// RSS of one process over time: (seconds since the sampler started, MiB).
#[derive(Debug, Clone, Default)]
pub struct RssTrace {
    pub samples: Vec<(f64, f64)>,
}

impl RssTrace {
    pub fn max(&self) -> f64 {
        self.samples.iter().map(|s| s.1).fold(0.0, f64::max)
    }

    /// The samples taken between `from` and `to` seconds.
    pub fn between(&self, from: f64, to: f64) -> RssTrace {
        RssTrace {
            samples: self
                .samples
                .iter()
                .copied()
                .filter(|s| s.0 >= from && s.0 <= to)
                .collect(),
        }
    }

    /// The first moment at or after `from` from which RSS stays at or under `limit`.
    pub fn settled_under(&self, from: f64, limit: f64) -> Option<f64> {
        let mut since = None;
        for &(t, rss) in self.samples.iter().filter(|s| s.0 >= from) {
            if rss <= limit {
                since.get_or_insert(t);
            } else {
                since = None;
            }
        }
        since
    }

    /// One sample a second, for the log: "t MiB" pairs.
    pub fn per_second(&self) -> String {
        let mut out = Vec::new();
        let mut next = 0.0;
        for &(t, rss) in &self.samples {
            if t >= next {
                out.push(format!("{t:.0}s {rss:.1}"));
                next = t.floor() + 1.0;
            }
        }
        out.join(", ")
    }
}

/// Reads a process's VmRSS every [`SAMPLE_EVERY`] on a task of its own until stopped.
pub struct Sampler {
    started: Instant,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<RssTrace>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut trace = RssTrace::default();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded in any case: an hour of samples.
            for _ in 0..36_000 {
                tick.tick().await;
                let rss = proc_status_kib(pid, "VmRSS:") / 1024.0;
                trace.samples.push((started.elapsed().as_secs_f64(), rss));
                if flag.load(Ordering::Relaxed) {
                    break;
                }
            }
            trace
        });
        Sampler {
            started,
            stop,
            task,
        }
    }

    /// Seconds since the sampler started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub async fn finish(self) -> anyhow::Result<RssTrace> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Two bulks in a row with two dispatchers against the mock gateway, the API's RSS sampled
/// throughout. `rate`: `None` for an unlimited gateway (the releaser keeps up to 20,000
/// jobs queued, the most the API ever holds in flight), or an `HKT_RATE_LIMIT` for the API
/// and the dispatchers (the releaser trickles jobs out).
pub async fn api_memory(
    stack: &mut Stack,
    sizes: &Sizes,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Figure>> {
    let label = match rate {
        None => "HKT unlimited".to_owned(),
        Some(r) => format!("HKT_RATE_LIMIT={r}"),
    };
    let limit_env: Vec<(&str, String)> = rate
        .map(|r| vec![("HKT_RATE_LIMIT", r.to_string())])
        .unwrap_or_default();
    // A fresh API for each variant, so its idle figure does not depend on what ran before.
    stack.restart_api(&limit_env).await?;
    stack.mock_config(json!({})).await?;
    stack.start_dispatchers(2, &limit_env).await?;
    let result = two_bulks(stack, sizes, &label).await;
    stack.stop_dispatchers().await;
    crate::scenarios::purge_hkt_queue(stack).await?;
    if rate.is_some() {
        stack.restart_api(&[]).await?;
    }
    result
}

async fn two_bulks(stack: &mut Stack, sizes: &Sizes, label: &str) -> anyhow::Result<Vec<Figure>> {
    let pid = stack.api.as_ref().context("api")?.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_trace = {
        let sampler = Sampler::start(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        sampler.finish().await?
    };
    let idle = median(&idle_trace);
    // VmHWM from here on is this window's peak: no spike between two samples is missed.
    reset_peak_rss(pid)?;
    let sampler = Sampler::start(pid);
    let n = sizes.bulk;
    let limit = Duration::from_secs(600);
    let mut ids = Vec::new();
    let mut published_at = Vec::new();
    for (k, first_digit) in ["6", "9"].into_iter().enumerate() {
        let recipients: Vec<String> = (0..n).map(|i| format!("{first_digit}{i:07}")).collect();
        let (id, _) = post_bulk(stack, &recipients, &format!("Memory bulk {}", k + 1)).await?;
        drop(recipients);
        wait_until(limit, || async { Ok(!stack.in_outbox(id).await?) }).await?;
        published_at.push(sampler.now());
        ids.push(id);
    }
    for &id in &ids {
        wait_until(limit, || async {
            Ok(stack.done_count(id).await? as usize >= n)
        })
        .await?;
    }
    let done_at = sampler.now();
    let hwm = stack.api.as_ref().context("api")?.peak_rss_mib();
    tokio::time::sleep(sizes.memory_settle).await;
    let trace = sampler.finish().await?;
    let window = trace.between(0.0, done_at);
    let peak = window.max().max(hwm);
    let after = trace.samples.last().map_or(0.0, |s| s.1);
    let target_after = idle + 10.0;
    let settled = trace.settled_under(done_at, target_after);
    eprintln!(
        "memory ({label}): idle {idle:.1} MiB, published at {:?} s, all sent at {done_at:.1} s, \
         VmHWM {hwm:.1} MiB; RSS per second: {}",
        published_at
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>(),
        trace.per_second()
    );
    let settle = sizes.memory_settle.as_secs();
    let mib = |v: f64| format!("{v:.1} MB");
    Ok(vec![
        Figure::informational(&format!("API memory ({label}): idle RSS"), mib(idle)),
        Figure::at_most(
            &format!("API memory ({label}): peak RSS, 2 × {n} recipients, requests → all published and sent"),
            peak,
            100.0,
            mib,
        )
        .with_note(&format!(
            "published at {} s, sent at {done_at:.1} s; peak of 100 ms samples {:.1}, VmHWM {hwm:.1}",
            published_at
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(" and "),
            window.max()
        )),
        Figure::at_most(
            &format!("API memory ({label}): RSS {settle} s after the last was sent"),
            after,
            target_after,
            mib,
        )
        .with_note(&match settled {
            Some(t) => format!("≤ idle + 10 MB from {:.1} s after", t - done_at),
            None => "not back within idle + 10 MB".to_owned(),
        }),
    ])
}

/// Polls `done` every 100 ms until it says so, for at most `limit`.
async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + limit;
    while !done().await? {
        anyhow::ensure!(Instant::now() < until, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn median(trace: &RssTrace) -> f64 {
    let mut values: Vec<f64> = trace.samples.iter().map(|s| s.1).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(points: &[(f64, f64)]) -> RssTrace {
        RssTrace {
            samples: points.to_vec(),
        }
    }

    #[test]
    fn settling_is_the_start_of_the_last_run_under_the_limit() {
        let t = trace(&[
            (0.0, 90.0),
            (1.0, 20.0),
            (2.0, 40.0),
            (3.0, 25.0),
            (4.0, 22.0),
        ]);
        assert_eq!(t.settled_under(0.0, 30.0), Some(3.0));
        assert_eq!(t.settled_under(0.0, 50.0), Some(1.0));
        assert_eq!(t.settled_under(0.0, 10.0), None);
    }

    #[test]
    fn a_window_keeps_only_its_samples() {
        let t = trace(&[(0.0, 10.0), (1.0, 80.0), (2.0, 30.0)]);
        assert_eq!(t.between(0.0, 0.5).max(), 10.0);
        assert_eq!(t.between(0.5, 2.0).max(), 80.0);
        assert_eq!(median(&t), 30.0);
    }
}
