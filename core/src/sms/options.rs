//! How and when a send goes: priority, schedule and validity, parsed at the edge into
//! [`SendOptions`], which can only hold a coherent combination.

use std::time::Duration;

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageStatus, Priority};

/// The furthest ahead a send may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(35 * 24 * 3600);
/// The longest validity a send may ask for.
pub const MAX_VALIDITY: Duration = MAX_SCHEDULE_AHEAD;

/// How long a send stays worth sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validity {
    /// Whatever the sender's default is (none: forever).
    #[default]
    SenderDefault,
    /// For this long after it is due (`send_at`, or acceptance).
    For(Duration),
    /// Until this moment.
    Until(DateTime<Utc>),
}

impl Validity {
    /// As the accept statements take it: `(valid_for seconds, valid_until)`.
    pub fn as_columns(&self) -> (Option<f64>, Option<DateTime<Utc>>) {
        match self {
            Validity::SenderDefault => (None, None),
            Validity::For(d) => (Some(d.as_secs_f64()), None),
            Validity::Until(t) => (None, Some(*t)),
        }
    }
}

/// A send's traffic options, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    pub priority: Priority,
    /// When to release it; `None`: at once.
    pub send_at: Option<DateTime<Utc>>,
    pub validity: Validity,
}

/// The options as a request spells them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawSendOptions<'a> {
    pub priority: Option<&'a str>,
    pub send_at: Option<&'a str>,
    pub valid_for: Option<i64>,
    pub valid_until: Option<&'a str>,
}

/// Why the options are not usable; each names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("priority must be one of high, normal, low (got `{0}`)")]
    UnknownPriority(String),
    #[error(
        "{field} must be an RFC 3339 date-time with a time zone, e.g. 2026-12-24T09:00:00+08:00"
    )]
    NotATime { field: &'static str },
    #[error("send_at must be in the future")]
    SendAtPast,
    #[error("send_at may be at most 35 days ahead")]
    SendAtTooFar,
    #[error("valid_for must be between 1 and 3024000 seconds (35 days)")]
    ValidForRange,
    #[error("valid_until must be in the future")]
    ValidUntilPast,
    #[error("valid_until may be at most 35 days after the send is due")]
    ValidUntilTooFar,
    #[error("valid_until must be after send_at")]
    ValidUntilBeforeSendAt,
    #[error("give valid_for or valid_until, not both")]
    BothValidities,
}

impl OptionsError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            OptionsError::UnknownPriority(_) => "priority",
            OptionsError::NotATime { field } => field,
            OptionsError::SendAtPast | OptionsError::SendAtTooFar => "send_at",
            OptionsError::ValidForRange => "valid_for",
            OptionsError::BothValidities
            | OptionsError::ValidUntilPast
            | OptionsError::ValidUntilTooFar
            | OptionsError::ValidUntilBeforeSendAt => "valid_until",
        }
    }
}

impl SendOptions {
    /// Parses and checks the options against `now`.
    pub fn parse(raw: RawSendOptions<'_>, now: DateTime<Utc>) -> Result<SendOptions, OptionsError> {
        let priority = match raw.priority.map(str::trim) {
            None | Some("") => Priority::Normal,
            Some(text) => text
                .parse()
                .map_err(|_| OptionsError::UnknownPriority(text.to_owned()))?,
        };
        let send_at = raw
            .send_at
            .map(|text| parse_time(text, "send_at"))
            .transpose()?;
        if let Some(at) = send_at {
            if at <= now {
                return Err(OptionsError::SendAtPast);
            }
            if at - now > chrono::Duration::from_std(MAX_SCHEDULE_AHEAD).expect("35 days") {
                return Err(OptionsError::SendAtTooFar);
            }
        }
        let due = send_at.unwrap_or(now);
        let validity = match (raw.valid_for, raw.valid_until) {
            (Some(_), Some(_)) => return Err(OptionsError::BothValidities),
            (Some(secs), None) => {
                if secs < 1 || secs as u64 > MAX_VALIDITY.as_secs() {
                    return Err(OptionsError::ValidForRange);
                }
                Validity::For(Duration::from_secs(secs as u64))
            }
            (None, Some(text)) => {
                let until = parse_time(text, "valid_until")?;
                if until <= now {
                    return Err(OptionsError::ValidUntilPast);
                }
                if until <= due {
                    return Err(OptionsError::ValidUntilBeforeSendAt);
                }
                if until - due > chrono::Duration::from_std(MAX_VALIDITY).expect("35 days") {
                    return Err(OptionsError::ValidUntilTooFar);
                }
                Validity::Until(until)
            }
            (None, None) => Validity::SenderDefault,
        };
        Ok(SendOptions {
            priority,
            send_at,
            validity,
        })
    }

    /// The status a message with these options starts in.
    pub fn initial_status(&self) -> MessageStatus {
        match self.send_at {
            Some(_) => MessageStatus::Scheduled,
            None => MessageStatus::Pending,
        }
    }

    /// True when nothing but the defaults is asked for (the single-send fast path takes
    /// only those).
    pub fn is_default(&self) -> bool {
        *self == SendOptions::default()
    }

    /// The options as an idempotency fingerprint records them.
    pub fn label(&self) -> String {
        let (valid_for, valid_until) = self.validity.as_columns();
        format!(
            "{}|{}|{}|{}",
            self.priority,
            self.send_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            valid_for.map(|s| s.to_string()).unwrap_or_default(),
            valid_until.map(|t| t.to_rfc3339()).unwrap_or_default(),
        )
    }
}

fn parse_time(text: &str, field: &'static str) -> Result<DateTime<Utc>, OptionsError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| OptionsError::NotATime { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-06T10:00:00Z".parse().unwrap()
    }

    fn parse(raw: RawSendOptions) -> Result<SendOptions, OptionsError> {
        SendOptions::parse(raw, now())
    }

    #[test]
    fn no_options_mean_normal_now_with_the_senders_default_validity() {
        let options = parse(RawSendOptions::default()).unwrap();
        assert!(options.is_default());
        assert_eq!(options.priority, Priority::Normal);
    }

    #[test]
    fn a_schedule_must_be_future_and_within_35_days() {
        let at = |s| {
            parse(RawSendOptions {
                send_at: Some(s),
                ..Default::default()
            })
        };
        let ok = at("2026-12-24T09:00:00+08:00").unwrap();
        assert_eq!(
            ok.send_at.unwrap(),
            "2026-12-24T01:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(at("2026-12-06T09:59:59Z"), Err(OptionsError::SendAtPast));
        assert_eq!(at("2027-01-11T10:00:01Z"), Err(OptionsError::SendAtTooFar));
        assert_eq!(
            at("tomorrow"),
            Err(OptionsError::NotATime { field: "send_at" })
        );
        assert_eq!(at("2026-12-24T09:00:00").unwrap_err().field(), "send_at");
    }

    #[test]
    fn validity_is_one_of_two_forms_and_ends_after_the_send_is_due() {
        let v = |valid_for, valid_until, send_at| {
            parse(RawSendOptions {
                valid_for,
                valid_until,
                send_at,
                ..Default::default()
            })
        };
        assert_eq!(
            v(Some(3600), None, None).unwrap().validity,
            Validity::For(Duration::from_secs(3600))
        );
        assert_eq!(v(Some(0), None, None), Err(OptionsError::ValidForRange));
        assert_eq!(
            v(Some(1), Some("2026-12-07T00:00:00Z"), None),
            Err(OptionsError::BothValidities)
        );
        assert_eq!(
            v(None, Some("2026-12-06T09:00:00Z"), None),
            Err(OptionsError::ValidUntilPast)
        );
        assert_eq!(
            v(
                None,
                Some("2026-12-06T11:00:00Z"),
                Some("2026-12-06T12:00:00Z")
            ),
            Err(OptionsError::ValidUntilBeforeSendAt)
        );
        assert!(v(
            None,
            Some("2026-12-06T13:00:00Z"),
            Some("2026-12-06T12:00:00Z")
        )
        .is_ok());
    }

    #[test]
    fn priorities_are_named_and_unknown_ones_refused() {
        let p = |s| {
            parse(RawSendOptions {
                priority: Some(s),
                ..Default::default()
            })
        };
        assert_eq!(p("high").unwrap().priority, Priority::High);
        assert_eq!(p("low").unwrap().priority, Priority::Low);
        assert_eq!(
            p("urgent"),
            Err(OptionsError::UnknownPriority("urgent".into()))
        );
    }

    #[test]
    fn the_label_tells_different_options_apart() {
        let a = parse(RawSendOptions::default()).unwrap();
        let b = parse(RawSendOptions {
            priority: Some("high"),
            ..Default::default()
        })
        .unwrap();
        assert_ne!(a.label(), b.label());
    }
}
