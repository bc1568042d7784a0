//! AMQP headers every job carries: the W3C `traceparent` of the span that published it
//! and the attempt number that drives the retry schedule.

use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::telemetry;

/// 1 for the first try; the dispatcher bumps it when it sends a job to a retry queue.
pub const ATTEMPT_HEADER: &str = "x-smsgate-attempt";
/// W3C trace context, so a trace follows a message from the HTTP request to the gateway.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Headers of a freshly published job: attempt `attempt` and the current span's trace context.
pub fn job_headers(attempt: u32) -> FieldTable {
    let mut table = FieldTable::default();
    telemetry::inject_current_context(&mut table);
    table.insert(
        ShortString::from(ATTEMPT_HEADER),
        AMQPValue::LongUInt(attempt),
    );
    table
}

/// The current span's W3C `traceparent`, kept with work that is published later (the
/// release queue stores it with the message) so the trace still starts at the request.
pub fn current_traceparent() -> Option<String> {
    let mut table = FieldTable::default();
    telemetry::inject_current_context(&mut table);
    match table.inner().get(TRACEPARENT_HEADER) {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        _ => None,
    }
}

/// Headers of a first attempt published on behalf of the request whose `traceparent` was
/// kept (none: the current span's).
pub fn job_headers_for(traceparent: Option<&str>) -> FieldTable {
    let Some(traceparent) = traceparent else {
        return job_headers(1);
    };
    let mut table = FieldTable::default();
    table.insert(
        ShortString::from(TRACEPARENT_HEADER),
        AMQPValue::LongString(traceparent.into()),
    );
    table.insert(ShortString::from(ATTEMPT_HEADER), AMQPValue::LongUInt(1));
    table
}

/// The attempt number a delivery carries; 1 when the header is missing or malformed.
pub fn attempt_of(headers: Option<&FieldTable>) -> u32 {
    let value = headers.and_then(|h| h.inner().get(ATTEMPT_HEADER));
    let attempt = match value {
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::ShortUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(*n),
        _ => 1,
    };
    u32::try_from(attempt).ok().filter(|n| *n >= 1).unwrap_or(1)
}

/// A copy of `headers` with the attempt set to `attempt`; the trace context is kept, so
/// retries stay in the trace of the original request.
pub fn with_attempt(headers: Option<&FieldTable>, attempt: u32) -> FieldTable {
    let mut table = headers.cloned().unwrap_or_default();
    table.insert(
        ShortString::from(ATTEMPT_HEADER),
        AMQPValue::LongUInt(attempt),
    );
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_attempt_header_means_first_attempt() {
        assert_eq!(attempt_of(None), 1);
        assert_eq!(attempt_of(Some(&FieldTable::default())), 1);
    }

    #[test]
    fn with_attempt_overrides_and_keeps_other_headers() {
        let mut table = FieldTable::default();
        table.insert(
            TRACEPARENT_HEADER.into(),
            AMQPValue::LongString("00-abc".into()),
        );
        let bumped = with_attempt(Some(&table), 3);
        assert_eq!(attempt_of(Some(&bumped)), 3);
        assert!(bumped.inner().contains_key(TRACEPARENT_HEADER));
    }
}
