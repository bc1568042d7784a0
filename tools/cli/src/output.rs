//! Where results go: with `--json`, the API's data object on stdout and nothing else
//! there; without, human text. Progress and notes always go to stderr.

use serde_json::Value;

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// A command's result: `data` as JSON, or the human rendering of it.
    pub fn result(self, data: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(data).expect("JSON values serialize")
            );
        } else {
            println!("{}", human(data));
        }
    }

    /// A note for people (what is happening, what to run next): stderr, so stdout stays
    /// machine-readable.
    pub fn note(self, text: impl std::fmt::Display) {
        eprintln!("{text}");
    }
}

/// A message's counters on one line: `9990 sent, 10 failed, 0 opted out, …`.
pub fn counters(m: &Value) -> String {
    let n = |field: &str| m[field].as_i64().unwrap_or(0);
    format!(
        "{} sent, {} failed, {} opted out, {} cancelled, {} expired, {} pending",
        n("success_count"),
        n("failed_count"),
        n("opted_out_count"),
        n("cancelled_count"),
        n("expired_count"),
        n("pending_count"),
    )
}

/// `GET /api/sms/{id}`'s data for people.
pub fn message(m: &Value) -> String {
    let s = |field: &str| m[field].as_str().unwrap_or("-").to_owned();
    let mut text = format!(
        "message {}: {}\n  recipients: {} ({})\n  priority {}, created {}",
        m["id"],
        s("status"),
        m["recipient_count"],
        counters(m),
        s("priority"),
        s("created_at"),
    );
    for (field, label) in [
        ("send_at", "send at"),
        ("valid_until", "valid until"),
        ("completed_at", "completed"),
        ("eta", "ETA"),
    ] {
        if let Some(value) = m[field].as_str() {
            text.push_str(&format!(", {label} {value}"));
        }
    }
    text.push_str(&format!("\n  text: {}", s("content")));
    text
}
