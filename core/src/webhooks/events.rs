//! What a webhook subscribes to.

/// An event a webhook can subscribe to (`webhook.test` is sent on request, not subscribed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookEvent {
    /// A committed status change of the owner's messages.
    MessageStatus,
    /// An SMS received on a SIM card the owner may see.
    MessageReceived,
}

impl WebhookEvent {
    /// Every event, in the order lists show them.
    pub const ALL: [WebhookEvent; 2] = [WebhookEvent::MessageStatus, WebhookEvent::MessageReceived];

    /// The name on the wire (`type` of the delivery, `X-Smsgate-Event`) and in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            WebhookEvent::MessageStatus => "message.status",
            WebhookEvent::MessageReceived => "message.received",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookEventsError {
    #[error("unknown event `{0}`; webhooks can subscribe to message.status and message.received")]
    Unknown(String),
    #[error("subscribe to at least one event (message.status, message.received); to receive nothing, disable the webhook")]
    Empty,
}

/// A webhook's subscriptions: at least one known event, each once, in [`WebhookEvent::ALL`]
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvents(Vec<WebhookEvent>);

impl WebhookEvents {
    /// Parses event names as a request gives them; duplicates collapse.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<WebhookEvents, WebhookEventsError> {
        let mut events = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref().trim();
            let event = WebhookEvent::ALL
                .into_iter()
                .find(|e| e.as_str() == name)
                .ok_or_else(|| WebhookEventsError::Unknown(name.to_owned()))?;
            events.push(event);
        }
        events.sort();
        events.dedup();
        if events.is_empty() {
            return Err(WebhookEventsError::Empty);
        }
        Ok(WebhookEvents(events))
    }

    /// What a webhook registered without a list gets: what every webhook got before
    /// subscriptions existed.
    pub fn status_only() -> WebhookEvents {
        WebhookEvents(vec![WebhookEvent::MessageStatus])
    }

    pub fn contains(&self, event: WebhookEvent) -> bool {
        self.0.contains(&event)
    }

    /// The names, as the `webhooks.events` column stores them.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|e| e.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_events_parse_in_a_fixed_order_without_duplicates() {
        let events =
            WebhookEvents::parse(&["message.received", " message.status", "message.received"])
                .unwrap();
        assert_eq!(events.names(), ["message.status", "message.received"]);
        assert!(events.contains(WebhookEvent::MessageReceived));
    }

    #[test]
    fn unknown_and_empty_lists_are_refused() {
        assert_eq!(
            WebhookEvents::parse(&["message.status", "message.sent"]),
            Err(WebhookEventsError::Unknown("message.sent".into()))
        );
        assert_eq!(
            WebhookEvents::parse(&["webhook.test"]),
            Err(WebhookEventsError::Unknown("webhook.test".into()))
        );
        assert_eq!(
            WebhookEvents::parse::<&str>(&[]),
            Err(WebhookEventsError::Empty)
        );
    }
}
