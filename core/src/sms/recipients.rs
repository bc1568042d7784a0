//! Parsing a bulk recipient list in one pass that reports what is wrong with it, in bounded
//! memory: the JSON API and the panel's compose form both read lists through
//! [`RecipientSet`] and report at most [`MAX_REPORTED_PROBLEMS`] bad entries plus a count,
//! so a 15 MB junk upload costs a scan of its text, not millions of error rows.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;
use smsgate_shared::domain::{PhoneNumber, PhoneNumberError};

/// One invalid entry of a bulk request, reported with its position.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvalidEntry {
    pub index: usize,
    pub value: String,
    pub reason: String,
}

/// How many bad entries a response lists; the rest are only counted.
pub const MAX_REPORTED_PROBLEMS: usize = 100;

/// Longest echo of a bad entry in a report: the entry itself may be megabytes.
const MAX_ECHOED_CHARS: usize = 64;

/// The first [`MAX_REPORTED_PROBLEMS`] problems of a list, and how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems<T> {
    shown: Vec<T>,
    total: usize,
}

impl<T> Default for Problems<T> {
    fn default() -> Self {
        Problems {
            shown: Vec::new(),
            total: 0,
        }
    }
}

impl<T> Problems<T> {
    /// Counts a problem and keeps it if fewer than the reported number are kept.
    pub fn push(&mut self, problem: T) {
        self.total += 1;
        if self.shown.len() < MAX_REPORTED_PROBLEMS {
            self.shown.push(problem);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Every problem counted, shown or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The problems kept for the report, in the order they were found.
    pub fn shown(&self) -> &[T] {
        &self.shown
    }

    pub fn into_shown(self) -> Vec<T> {
        self.shown
    }
}

/// A bad entry's text as it may be echoed back: at most [`MAX_ECHOED_CHARS`] characters.
pub fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHOED_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// The distinct numbers of a list in first-seen order, capped at `max`: a list with more
/// distinct numbers than that is refused anyway, so the rest are only counted.
pub struct RecipientSet {
    max: usize,
    seen: HashSet<PhoneNumber>,
    numbers: Vec<PhoneNumber>,
    overflowed: bool,
}

impl RecipientSet {
    pub fn new(max: usize) -> RecipientSet {
        RecipientSet {
            max,
            seen: HashSet::new(),
            numbers: Vec::new(),
            overflowed: false,
        }
    }

    /// Parses one entry; a number seen before (in any spelling) is dropped.
    pub fn add(&mut self, raw: &str) -> Result<(), PhoneNumberError> {
        let number = PhoneNumber::parse_dialable(raw)?;
        if self.overflowed || self.seen.contains(&number) {
            return Ok(());
        }
        if self.numbers.len() == self.max {
            self.overflowed = true;
            return Ok(());
        }
        self.seen.insert(number.clone());
        self.numbers.push(number);
        Ok(())
    }

    /// Whether more than `max` distinct numbers were given.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    pub fn into_numbers(self) -> Vec<PhoneNumber> {
        self.numbers
    }
}

/// Why a JSON recipient list was refused.
#[derive(Debug)]
pub enum RecipientListError {
    NotAList,
    Empty,
    TooMany { given: usize, max: usize },
    Invalid(Problems<InvalidEntry>),
}

/// Parses the `recipients` of a bulk request: strings, or bare integers as some clients
/// send them. Duplicates collapse keeping the first occurrence's order. The list is read
/// straight from its JSON text, entry by entry: no value is built for an entry past `max`,
/// so the size check costs nothing however long the list is.
pub fn parse_recipient_list(
    raw: &RawValue,
    max: usize,
) -> Result<Vec<PhoneNumber>, RecipientListError> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let scan = ListScan {
        max,
        set: RecipientSet::new(max),
        problems: Problems::default(),
        given: 0,
    };
    let scan = scan
        .deserialize(&mut deserializer)
        .map_err(|_| RecipientListError::NotAList)?;
    if scan.given == 0 {
        return Err(RecipientListError::Empty);
    }
    if scan.given > max || scan.set.overflowed() {
        return Err(RecipientListError::TooMany {
            given: scan.given,
            max,
        });
    }
    if !scan.problems.is_empty() {
        return Err(RecipientListError::Invalid(scan.problems));
    }
    Ok(scan.set.into_numbers())
}

/// The state of one pass over a JSON list.
struct ListScan {
    max: usize,
    set: RecipientSet,
    problems: Problems<InvalidEntry>,
    given: usize,
}

impl ListScan {
    fn entry(&mut self, index: usize, raw: &RawValue) {
        let text = raw.get();
        let parsed = match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(text).map_err(|_| "must be a string"),
            Some(b'0'..=b'9') if text.bytes().all(|b| b.is_ascii_digit()) => Ok(text.to_owned()),
            _ => Err("must be a string"),
        };
        let problem = match parsed {
            Ok(value) => match self.set.add(&value) {
                Ok(()) => return,
                Err(e) => InvalidEntry {
                    index,
                    value: echo(&value),
                    reason: e.to_string(),
                },
            },
            Err(reason) => InvalidEntry {
                index,
                value: echo(text),
                reason: reason.into(),
            },
        };
        self.problems.push(problem);
    }
}

impl<'de> DeserializeSeed<'de> for ListScan {
    type Value = ListScan;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ListScan, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListScan {
    type Value = ListScan;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of phone numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<ListScan, A::Error> {
        loop {
            if self.given < self.max {
                match seq.next_element::<&'de RawValue>()? {
                    Some(raw) => self.entry(self.given, raw),
                    None => break,
                }
            } else if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                break;
            }
            self.given += 1;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(list: serde_json::Value, max: usize) -> Result<Vec<PhoneNumber>, RecipientListError> {
        let raw = RawValue::from_string(list.to_string()).unwrap();
        parse_recipient_list(&raw, max)
    }

    #[test]
    fn bulk_parsing_lists_every_invalid_entry_with_its_index() {
        let raw = json!(["1234 5678", "1234-5678", "+85298765432", "12 3456", true]);
        let Err(RecipientListError::Invalid(invalid)) = parse(raw, 10) else {
            panic!("expected invalid entries");
        };
        let indexes: Vec<usize> = invalid.shown().iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![1, 3, 4]);
        assert_eq!(invalid.shown()[0].value, "1234-5678");
        assert_eq!(invalid.shown()[2].value, "true");
        assert!(!invalid.shown()[0].reason.is_empty());
        assert_eq!(invalid.total(), 3);
    }

    #[test]
    fn duplicates_collapse_across_spellings_keeping_first_order() {
        // (International input is checked against the plan: +852 1… is no HK number.)
        let raw = json!([
            "9123 4567",
            "+85291234567",
            "91234567",
            "87654321",
            91234567
        ]);
        let numbers = parse(raw, 10).unwrap();
        let e164: Vec<&str> = numbers.iter().map(|n| n.as_str()).collect();
        assert_eq!(e164, vec!["+85291234567", "+85287654321"]);
    }

    #[test]
    fn a_junk_list_reports_the_first_hundred_problems_and_counts_the_rest() {
        let junk: Vec<String> = (0..5_000).map(|i| format!("junk{i}")).collect();
        let Err(RecipientListError::Invalid(invalid)) = parse(json!(junk), 10_000) else {
            panic!("expected invalid entries");
        };
        assert_eq!(invalid.total(), 5_000);
        assert_eq!(invalid.shown().len(), MAX_REPORTED_PROBLEMS);
        assert_eq!(invalid.shown()[99].index, 99);
    }

    #[test]
    fn a_list_longer_than_the_maximum_is_counted_not_parsed() {
        let long = vec![1; 250];
        match parse(json!(long), 100) {
            Err(RecipientListError::TooMany { given, max }) => {
                assert_eq!((given, max), (250, 100));
            }
            other => panic!("expected TooMany, got {other:?}"),
        }
    }

    #[test]
    fn more_distinct_numbers_than_the_maximum_are_refused() {
        let numbers: Vec<String> = (0..3).map(|i| format!("9000000{i}")).collect();
        assert!(matches!(
            parse(json!(numbers), 2),
            Err(RecipientListError::TooMany { given: 3, max: 2 })
        ));
    }

    #[test]
    fn huge_bad_entries_are_echoed_shortened() {
        let long = "x".repeat(10_000);
        let Err(RecipientListError::Invalid(invalid)) = parse(json!([long]), 10) else {
            panic!("expected invalid entries");
        };
        assert!(invalid.shown()[0].value.chars().count() <= MAX_ECHOED_CHARS + 1);
    }

    #[test]
    fn empty_lists_and_non_lists_are_refused() {
        assert!(matches!(
            parse(json!([]), 10),
            Err(RecipientListError::Empty)
        ));
        assert!(matches!(
            parse(json!("12345678"), 10),
            Err(RecipientListError::NotAList)
        ));
        assert!(matches!(
            parse(json!({"a": 1}), 10),
            Err(RecipientListError::NotAList)
        ));
    }

    #[test]
    fn negative_and_fractional_numbers_are_not_phone_numbers() {
        let Err(RecipientListError::Invalid(invalid)) = parse(json!([-12345678, 1.5]), 10) else {
            panic!("expected invalid entries");
        };
        assert_eq!(invalid.total(), 2);
    }
}
