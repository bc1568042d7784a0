//! Recipient and message states. The state machines live in docs/architecture.md;
//! these types only name the states and their wire/database spelling.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A status string that names no known state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct StatusParseError(pub String);

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase spelling used in JSON, SQL and queue messages.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StatusParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StatusParseError(other.to_owned())),
                }
            }
        }

        #[cfg(feature = "db")]
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        #[cfg(feature = "db")]
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }

        #[cfg(feature = "db")]
        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }
    };
}

text_enum!(
    /// Where one recipient of a message stands. `sent` and `failed` are terminal for
    /// dispatch; `sent` may still become `delivered` when a delivery report arrives.
    RecipientStatus {
        Pending => "pending",
        Sent => "sent",
        Failed => "failed",
        Delivered => "delivered",
        /// Its message was cancelled before it was handed to a gateway.
        Cancelled => "cancelled",
        /// Its validity ran out before it was handed to a gateway; it is never sent.
        Expired => "expired",
        /// Its number is on the opt-out list (everyone's, or the sender's own) at accept
        /// time; it is never sent.
        #[serde(rename = "opted_out")]
        OptedOut => "opted_out",
    }
);

impl RecipientStatus {
    /// True once dispatch is over for this recipient: a redelivered job for it is skipped.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, RecipientStatus::Pending)
    }
}

text_enum!(
    /// Where a whole message stands, derived from its recipients' counters.
    MessageStatus {
        /// Waiting for its `send_at`; nothing of it has been released.
        Scheduled => "scheduled",
        Pending => "pending",
        Sending => "sending",
        Sent => "sent",
        Failed => "failed",
        Partial => "partial",
        Cancelled => "cancelled",
        /// Every recipient not sent or failed expired, and none was sent.
        Expired => "expired",
    }
);

impl MessageStatus {
    /// The status a message has once `sent + failed` of its `total` recipients are done
    /// (none expired or cancelled; [`MessageStatus::from_tally`] counts those too).
    pub fn from_counts(total: i64, sent: i64, failed: i64) -> MessageStatus {
        MessageStatus::from_tally(&Tally {
            total,
            sent,
            failed,
            ..Tally::default()
        })
    }

    /// The status a message's counters give it. A cancelled message stays `cancelled`
    /// whatever its in-flight sends still record, so callers keep that one themselves.
    /// Mirrored in SQL by the dispatcher's counter update.
    pub fn from_tally(t: &Tally) -> MessageStatus {
        // Opted-out recipients end like cancelled ones: done, and not sent.
        let (sent, failed) = (t.sent, t.failed + t.cancelled + t.opted_out);
        if sent + failed + t.expired < t.total {
            // Numbers opted out at accept are no progress: the message waits as before.
            if t.sent + t.failed + t.cancelled == 0 {
                MessageStatus::Pending
            } else {
                MessageStatus::Sending
            }
        } else if failed + t.expired == 0 {
            MessageStatus::Sent
        } else if sent == 0 && failed == 0 {
            MessageStatus::Expired
        } else if sent == 0 && t.expired == 0 {
            MessageStatus::Failed
        } else {
            MessageStatus::Partial
        }
    }

    /// True when no recipient of the message is still waiting.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            MessageStatus::Sent
                | MessageStatus::Failed
                | MessageStatus::Partial
                | MessageStatus::Cancelled
                | MessageStatus::Expired
        )
    }
}

/// A message's recipient counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub expired: i64,
    pub opted_out: i64,
}

impl Tally {
    /// Recipients with no result yet.
    pub fn pending(&self) -> i64 {
        (self.total - self.sent - self.failed - self.cancelled - self.expired - self.opted_out)
            .max(0)
    }
}

text_enum!(
    /// How urgent a message is. Each class goes before the next at release; a lower class
    /// still gets a small share so that it is never starved (docs/architecture.md).
    Priority {
        High => "high",
        Normal => "normal",
        Low => "low",
    }
);

// `text_enum!` derives a fixed list; a default is this one type's.
#[allow(clippy::derivable_impls)]
impl Default for Priority {
    fn default() -> Priority {
        Priority::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for s in RecipientStatus::ALL {
            assert_eq!(s.as_str().parse::<RecipientStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>().unwrap(), *s);
        }
    }

    #[test]
    fn unknown_status_is_rejected() {
        assert!("queued".parse::<RecipientStatus>().is_err());
    }

    #[test]
    fn message_status_follows_the_counters() {
        assert_eq!(MessageStatus::from_counts(3, 0, 0), MessageStatus::Pending);
        assert_eq!(MessageStatus::from_counts(3, 1, 0), MessageStatus::Sending);
        assert_eq!(MessageStatus::from_counts(3, 3, 0), MessageStatus::Sent);
        assert_eq!(MessageStatus::from_counts(3, 0, 3), MessageStatus::Failed);
        assert_eq!(MessageStatus::from_counts(3, 2, 1), MessageStatus::Partial);
    }

    #[test]
    fn expired_and_cancelled_recipients_finish_a_message_too() {
        let tally = |sent, failed, cancelled, expired| Tally {
            total: 4,
            sent,
            failed,
            cancelled,
            expired,
            opted_out: 0,
        };
        assert_eq!(
            MessageStatus::from_tally(&tally(0, 0, 0, 4)),
            MessageStatus::Expired
        );
        assert_eq!(
            MessageStatus::from_tally(&tally(2, 0, 0, 2)),
            MessageStatus::Partial
        );
        assert_eq!(
            MessageStatus::from_tally(&tally(0, 2, 0, 2)),
            MessageStatus::Partial
        );
        assert_eq!(
            MessageStatus::from_tally(&tally(1, 0, 0, 2)),
            MessageStatus::Sending
        );
        assert_eq!(tally(1, 0, 0, 2).pending(), 1);
        assert!(MessageStatus::Expired.is_final());
    }

    #[test]
    fn opted_out_recipients_finish_a_message_as_not_sent() {
        let tally = |sent, opted_out| Tally {
            total: 3,
            sent,
            opted_out,
            ..Tally::default()
        };
        assert_eq!(
            MessageStatus::from_tally(&tally(0, 3)),
            MessageStatus::Failed
        );
        assert_eq!(
            MessageStatus::from_tally(&tally(2, 1)),
            MessageStatus::Partial
        );
        assert_eq!(
            MessageStatus::from_tally(&tally(0, 1)),
            MessageStatus::Pending
        );
        assert_eq!(tally(1, 1).pending(), 1);
        assert!(RecipientStatus::OptedOut.is_terminal());
        assert_eq!(
            serde_json::to_string(&RecipientStatus::OptedOut).unwrap(),
            "\"opted_out\""
        );
    }

    #[test]
    fn only_pending_recipients_are_not_terminal() {
        assert!(!RecipientStatus::Pending.is_terminal());
        assert!(RecipientStatus::Sent.is_terminal());
        assert!(RecipientStatus::Failed.is_terminal());
        assert!(RecipientStatus::Delivered.is_terminal());
        assert!(RecipientStatus::Cancelled.is_terminal());
        assert!(RecipientStatus::Expired.is_terminal());
    }
}
