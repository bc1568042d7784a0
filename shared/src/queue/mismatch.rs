//! Turns the broker's refusal to redeclare a queue with other arguments (a channel closed
//! with PRECONDITION_FAILED) into one line that names the queue, the setting that changed
//! and what to do, instead of a crash loop on `inequivalent arg`.

use std::fmt;

use crate::config::QueueSettings;

/// Why the topology could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A queue exists with arguments the current settings do not produce.
    #[error("{0}")]
    Mismatch(QueueMismatch),
    #[error("declaring the queue topology")]
    Broker(#[source] lapin::Error),
}

impl TopologyError {
    /// Explains `error`, returned by a declare under `settings`, when it is an
    /// argument mismatch; passes any other error through.
    pub fn from_declare(error: lapin::Error, settings: &QueueSettings) -> TopologyError {
        match QueueMismatch::parse(&error, settings) {
            Some(mismatch) => TopologyError::Mismatch(mismatch),
            None => TopologyError::Broker(error),
        }
    }
}

/// One queue the broker holds with an argument other than the one declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMismatch {
    pub queue: String,
    /// The argument, e.g. `x-queue-type`.
    pub argument: String,
    /// What the broker said about the two values, verbatim.
    pub detail: String,
    /// Whether this process wanted a quorum queue (meaningful for `x-queue-type`).
    pub wanted_quorum: bool,
}

/// PRECONDITION_FAILED's reply code.
const PRECONDITION_FAILED: u16 = 406;

impl QueueMismatch {
    fn parse(error: &lapin::Error, settings: &QueueSettings) -> Option<QueueMismatch> {
        let lapin::Error::ProtocolError(amqp) = error else {
            return None;
        };
        if amqp.get_id() != PRECONDITION_FAILED {
            return None;
        }
        Self::parse_text(amqp.get_message().as_str(), settings.quorum_queues)
    }

    /// Parses RabbitMQ's text: `PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for
    /// queue 'p.hkt' in vhost '/': received the value 'quorum' of type 'longstr' but
    /// current is none`.
    fn parse_text(text: &str, wanted_quorum: bool) -> Option<QueueMismatch> {
        let quoted_after = |marker: &str| {
            let rest = &text[text.find(marker)? + marker.len()..];
            Some(rest[..rest.find('\'')?].to_owned())
        };
        let argument = quoted_after("inequivalent arg '")?;
        let queue = quoted_after("for queue '")?;
        let detail = text
            .find(": received")
            .map_or(text, |at| &text[at + 2..])
            .to_owned();
        Some(QueueMismatch {
            queue,
            argument,
            detail,
            wanted_quorum,
        })
    }

    /// The queue type the broker holds, read from the broker's words.
    fn current_type(&self) -> &str {
        match self.detail.split("current is the value '").nth(1) {
            Some(rest) => rest.split('\'').next().unwrap_or("unknown"),
            None => "classic",
        }
    }
}

impl fmt::Display for QueueMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.argument == "x-queue-type" {
            let wanted = if self.wanted_quorum {
                "quorum"
            } else {
                "classic"
            };
            write!(
                f,
                "queue `{}` is a {} queue but QUORUM_QUEUES={} wants a {wanted} queue, and a \
                 queue's type cannot change in place: set QUORUM_QUEUES back, or migrate the \
                 queues as docs/operations.md \"Changing QUORUM_QUEUES\" describes",
                self.queue,
                self.current_type(),
                self.wanted_quorum,
            )
        } else {
            write!(
                f,
                "queue `{}` exists with another `{}` ({}), which RabbitMQ cannot change in \
                 place: stop the processes, wait until it is empty, delete it \
                 (`rabbitmqctl delete_queue {} --if-empty`) and start again; see \
                 docs/operations.md \"Queue arguments\"",
                self.queue, self.argument, self.detail, self.queue,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_queue_type_names_the_queue_both_types_and_the_setting() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'p.hkt' in \
                    vhost '/': received the value 'quorum' of type 'longstr' but current is none";
        let m = QueueMismatch::parse_text(text, true).unwrap();
        assert_eq!(m.queue, "p.hkt");
        assert_eq!(m.current_type(), "classic");
        let line = m.to_string();
        assert!(line.contains("`p.hkt` is a classic queue"), "{line}");
        assert!(
            line.contains("QUORUM_QUEUES=true wants a quorum queue"),
            "{line}"
        );
        assert!(line.contains("Changing QUORUM_QUEUES"), "{line}");
        assert!(!line.contains('\n'));

        let back = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'p.dead' in \
                    vhost '/': received none but current is the value 'quorum' of type 'longstr'";
        let m = QueueMismatch::parse_text(back, false).unwrap();
        assert_eq!(m.current_type(), "quorum");
        assert!(m
            .to_string()
            .contains("QUORUM_QUEUES=false wants a classic queue"));
    }

    #[test]
    fn another_argument_says_how_to_replace_the_queue() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'p.hkt' in \
                    vhost '/': received the value '600000' of type 'long' but current is none";
        let line = QueueMismatch::parse_text(text, false).unwrap().to_string();
        assert!(line.contains("another `x-expires`"), "{line}");
        assert!(
            line.contains("rabbitmqctl delete_queue p.hkt --if-empty"),
            "{line}"
        );
    }

    #[test]
    fn other_refusals_are_not_mistaken_for_a_mismatch() {
        assert!(QueueMismatch::parse_text("PRECONDITION_FAILED - queue in use", true).is_none());
    }
}
