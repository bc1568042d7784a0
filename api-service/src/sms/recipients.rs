//! Parsing a bulk recipient list in one pass that reports every bad entry.

use std::collections::HashSet;

use serde_json::Value;
use smsgate_shared::domain::PhoneNumber;

use crate::error::InvalidEntry;

/// Parses every entry (strings, or bare integers as some clients send them), collapses
/// duplicates keeping the first occurrence's order, and returns either the numbers or
/// every invalid entry with its index and reason.
pub fn parse_recipients(raw: &[Value]) -> Result<Vec<PhoneNumber>, Vec<InvalidEntry>> {
    let mut seen = HashSet::with_capacity(raw.len());
    let mut numbers = Vec::with_capacity(raw.len());
    let mut invalid = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let text = match entry {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_u64() => n.to_string(),
            other => {
                invalid.push(InvalidEntry {
                    index,
                    value: other.to_string(),
                    reason: "must be a string".into(),
                });
                continue;
            }
        };
        match PhoneNumber::parse(&text) {
            Ok(number) => {
                if seen.insert(number.clone()) {
                    numbers.push(number);
                }
            }
            Err(e) => invalid.push(InvalidEntry {
                index,
                value: text,
                reason: e.to_string(),
            }),
        }
    }
    if invalid.is_empty() {
        Ok(numbers)
    } else {
        Err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bulk_parsing_lists_every_invalid_entry_with_its_index() {
        let raw = json!(["1234 5678", "1234-5678", "+85298765432", "12 3456", true]);
        let invalid = parse_recipients(raw.as_array().unwrap()).unwrap_err();
        let indexes: Vec<usize> = invalid.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![1, 3, 4]);
        assert_eq!(invalid[0].value, "1234-5678");
        assert!(!invalid[0].reason.is_empty());
    }

    #[test]
    fn duplicates_collapse_across_spellings_keeping_first_order() {
        let raw = json!([
            "1234 5678",
            "+85212345678",
            "12345678",
            "87654321",
            12345678
        ]);
        let numbers = parse_recipients(raw.as_array().unwrap()).unwrap();
        let e164: Vec<&str> = numbers.iter().map(|n| n.as_str()).collect();
        assert_eq!(e164, vec!["+85212345678", "+85287654321"]);
    }
}
