//! Following messages to their end: polls `GET /api/sms/{id}` about once a second (simpler
//! and sturdier through proxies than the Socket.IO feed, and it carries the ETA) and draws
//! a progress bar of finished recipients on stderr.

use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use smsgate_shared::domain::MessageStatus;

use crate::client::{Api, Call};
use crate::error::CliError;

const POLL_EVERY: Duration = Duration::from_secs(1);
/// Consecutive failed polls (API restarting, network blip) tolerated before giving up.
const MAX_FAILED_POLLS: u32 = 30;
/// Without a terminal the bar is hidden; a line this often says how it goes instead.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// `GET /api/sms/{id}`'s data.
pub async fn message(api: &Api, id: i64) -> Result<Value, CliError> {
    let path = format!("/api/sms/{id}");
    Ok(api.call(&Call::new(Method::GET, &path)).await?.data())
}

/// Polls every message until all are final; returns their last data, in order.
pub async fn follow(api: &Api, ids: &[i64], timeout: Duration) -> Result<Vec<Value>, CliError> {
    let started = Instant::now();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut failed_polls = 0;
    let mut last_plain_line = Instant::now();
    loop {
        match poll(api, ids).await {
            Ok(messages) => {
                failed_polls = 0;
                let progress = Progress::of(&messages);
                bar.set_length(progress.total);
                bar.set_position(progress.finished());
                bar.set_message(progress.describe());
                if progress.all_final {
                    bar.finish_and_clear();
                    return Ok(messages);
                }
                if bar.is_hidden() && last_plain_line.elapsed() >= PLAIN_PROGRESS_EVERY {
                    eprintln!(
                        "{}/{} done: {}",
                        progress.finished(),
                        progress.total,
                        progress.describe()
                    );
                    last_plain_line = Instant::now();
                }
            }
            Err(e) if e.is_transient() && failed_polls < MAX_FAILED_POLLS => {
                failed_polls += 1;
                bar.println(format!("still trying: {e}"));
            }
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
        if started.elapsed() >= timeout {
            bar.abandon();
            return Err(CliError::TimedOut {
                id: ids[0],
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn poll(api: &Api, ids: &[i64]) -> Result<Vec<Value>, CliError> {
    let mut messages = Vec::with_capacity(ids.len());
    for &id in ids {
        messages.push(message(api, id).await?);
    }
    Ok(messages)
}

/// The counters of one or more messages (a bulk over 100,000 numbers is several), added up.
#[derive(Debug, Default, PartialEq)]
struct Progress {
    total: u64,
    pending: u64,
    sent: u64,
    failed: u64,
    opted_out: u64,
    all_final: bool,
    /// The latest ETA of the messages still going, RFC 3339.
    eta: Option<String>,
}

impl Progress {
    fn of(messages: &[Value]) -> Progress {
        let mut p = Progress {
            all_final: true,
            ..Progress::default()
        };
        for m in messages {
            let n = |field: &str| m[field].as_u64().unwrap_or(0);
            p.total += n("recipient_count");
            p.pending += n("pending_count");
            p.sent += n("success_count");
            // Cancelled and expired recipients are done and not sent, as failed ones.
            p.failed += n("failed_count") + n("cancelled_count") + n("expired_count");
            p.opted_out += n("opted_out_count");
            let status = m["status"].as_str().unwrap_or("");
            p.all_final &= MessageStatus::from_str(status).is_ok_and(|s| s.is_final());
            if let Some(eta) = m["eta"].as_str() {
                if p.eta.as_deref().is_none_or(|e| e < eta) {
                    p.eta = Some(eta.to_owned());
                }
            }
        }
        p
    }

    fn finished(&self) -> u64 {
        self.total.saturating_sub(self.pending)
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "sent {} · failed {} · opted out {} · pending {}",
            self.sent, self.failed, self.opted_out, self.pending
        );
        if let Some(eta) = self.eta.as_deref().and_then(eta_in) {
            text.push_str(&format!(" · ETA {eta}"));
        }
        text
    }
}

/// `in 2m 05s` from an RFC 3339 ETA (`None` when unreadable).
fn eta_in(eta: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(eta).ok()?;
    let left = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .num_seconds()
        .max(0);
    Some(match left {
        0..=59 => format!("in {left}s"),
        60..=3599 => format!("in {}m {:02}s", left / 60, left % 60),
        _ => format!("in {}h {:02}m", left / 3600, left % 3600 / 60),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_adds_up_several_messages() {
        let a = json!({"status": "sent", "recipient_count": 10, "pending_count": 0,
            "success_count": 9, "failed_count": 1, "opted_out_count": 0,
            "cancelled_count": 0, "expired_count": 0});
        let b = json!({"status": "sending", "recipient_count": 5, "pending_count": 3,
            "success_count": 1, "failed_count": 0, "opted_out_count": 1,
            "cancelled_count": 0, "expired_count": 0, "eta": "2999-01-01T00:00:00Z"});
        let p = Progress::of(&[a.clone(), b]);
        assert_eq!(
            (p.total, p.finished(), p.sent, p.failed, p.opted_out),
            (15, 12, 10, 1, 1)
        );
        assert!(!p.all_final);
        assert!(p.describe().contains("ETA in "), "{}", p.describe());
        assert!(Progress::of(&[a]).all_final);
    }

    #[test]
    fn etas_read_for_people() {
        let at = |s: i64| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
        assert_eq!(eta_in(&at(-5)).unwrap(), "in 0s");
        assert!(eta_in(&at(125)).unwrap().starts_with("in 2m"));
        assert!(eta_in(&at(7300)).unwrap().starts_with("in 2h"));
        assert!(eta_in("soon").is_none());
    }
}
