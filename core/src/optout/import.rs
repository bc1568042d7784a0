//! Reading a list of numbers to opt out from CSV (the API's import and the panel's upload).
//! Every line is checked before anything is stored, so a file is taken whole or not at all,
//! and a refusal names each bad line as an editor numbers it.

use std::collections::HashSet;

use smsgate_shared::domain::PhoneNumber;

use crate::sms::{echo, Problems};

/// Most numbers one import takes: a 100,000-recipient campaign's worth, the largest bulk.
pub const MAX_IMPORT_LINES: usize = 100_000;

/// Largest CSV one import reads: 100,000 numbers with a few columns beside them fit.
pub const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

/// Header names read when no column is named (any case).
const KNOWN_HEADERS: [&str; 3] = ["phone_number", "phone", "number"];

/// A line of the file that holds no dialable number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadLine {
    /// 1-based, as an editor shows it.
    pub line: u64,
    pub value: String,
    pub reason: String,
}

/// Why a file was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{}", bad_lines_message(.0))]
    BadLines(Problems<BadLine>),
    #[error("the header row has no column named `{0}`")]
    NoSuchColumn(String),
    #[error("the file has {0} columns and none is named phone_number, phone or number; name the column to read")]
    WhichColumn(usize),
    #[error("more than {MAX_IMPORT_LINES} numbers; split the file")]
    TooManyLines,
    #[error("the file holds no numbers")]
    Empty,
}

/// How many bad lines a message names; the rest are counted.
const NAMED_IN_MESSAGE: usize = 20;

fn bad_lines_message(problems: &Problems<BadLine>) -> String {
    let named: Vec<String> = problems
        .shown()
        .iter()
        .take(NAMED_IN_MESSAGE)
        .map(|b| format!("line {} ({}: {})", b.line, b.value, b.reason))
        .collect();
    let more = problems.total() - named.len();
    let tail = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    let lines = if problems.total() == 1 {
        "line"
    } else {
        "lines"
    };
    format!(
        "{} bad {lines}, nothing imported: {}{tail}",
        problems.total(),
        named.join(", ")
    )
}

/// The distinct numbers of `text`, in file order. With `column` the first row is a header
/// and that column (any case) is read; without, the column named phone_number, phone or
/// number, or the only column (a first row that is text, not a number, is then a header).
/// Blank cells are skipped; a number twice is kept once.
pub fn numbers_from_csv(text: &str, column: Option<&str>) -> Result<Vec<PhoneNumber>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
        .into_records()
        .peekable();
    let mut index = 0;
    let first = match records.peek() {
        Some(Ok(first)) => Some(first.clone()),
        _ => None,
    };
    if let Some(first) = first {
        let named = |name: &str| first.iter().position(|c| c.eq_ignore_ascii_case(name));
        match column.map(str::trim).filter(|c| !c.is_empty()) {
            Some(name) => {
                index = named(name).ok_or_else(|| CsvError::NoSuchColumn(name.to_owned()))?;
                records.next();
            }
            None => {
                if let Some(i) = KNOWN_HEADERS.iter().find_map(|h| named(h)) {
                    index = i;
                    records.next();
                } else if first.len() > 1 {
                    return Err(CsvError::WhichColumn(first.len()));
                } else if is_header(&first[0]) {
                    records.next();
                }
            }
        }
    }

    // csv's own line count skips blank lines; an editor's does not. Lines are counted from
    // each record's byte offset instead, onward from the previous record (records come in
    // order, so the whole file is scanned once).
    let mut counted = (0usize, 1u64);
    let mut line_of = |position: Option<&csv::Position>| -> u64 {
        let mut byte = position.map_or(0, |p| p.byte() as usize).min(text.len());
        // A record's position is where the previous one ended, before any blank lines.
        while matches!(text.as_bytes().get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        let (from, line) = counted;
        let start = from.min(byte);
        let more = text.as_bytes()[start..byte]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted = (byte, line + more as u64);
        counted.1
    };
    let mut seen = HashSet::new();
    let mut numbers = Vec::new();
    let mut problems = Problems::default();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(BadLine {
                    line: line_of(e.position()),
                    value: String::new(),
                    reason: "not readable as CSV text".into(),
                });
                continue;
            }
        };
        let value = record.get(index).unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        match PhoneNumber::parse_dialable(value) {
            Ok(number) => {
                if seen.insert(number.clone()) {
                    if numbers.len() == MAX_IMPORT_LINES {
                        return Err(CsvError::TooManyLines);
                    }
                    numbers.push(number);
                }
            }
            Err(e) => problems.push(BadLine {
                line: line_of(record.position()),
                value: echo(value),
                reason: e.to_string(),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(CsvError::BadLines(problems));
    }
    if numbers.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(numbers)
}

/// A one-column file's first cell that names the column rather than holding a number.
fn is_header(cell: &str) -> bool {
    cell.chars().any(char::is_alphabetic) && PhoneNumber::parse(cell).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(numbers: Vec<PhoneNumber>) -> Vec<String> {
        numbers.into_iter().map(|n| n.as_str().to_owned()).collect()
    }

    #[test]
    fn a_single_column_is_read_with_or_without_a_header() {
        let plain = numbers_from_csv("91234567\n+85261234567\n\n9123 4567\n", None).unwrap();
        assert_eq!(strings(plain), ["+85291234567", "+85261234567"]);
        let headed = numbers_from_csv("\u{feff}msisdn\r\n91234567\r\n", None).unwrap();
        assert_eq!(strings(headed), ["+85291234567"]);
    }

    #[test]
    fn a_known_header_or_the_named_column_is_read() {
        let text = "name,Phone\nAlice,91234567\n\"Bob, Jr\",\"6123 4567\"\n";
        assert_eq!(
            strings(numbers_from_csv(text, None).unwrap()),
            ["+85291234567", "+85261234567"]
        );
        let text = "name,mobile\nAlice,91234567\n";
        assert_eq!(
            strings(numbers_from_csv(text, Some("MOBILE")).unwrap()),
            ["+85291234567"]
        );
        assert!(matches!(
            numbers_from_csv(text, Some("fax")),
            Err(CsvError::NoSuchColumn(c)) if c == "fax"
        ));
        assert!(matches!(
            numbers_from_csv(text, None),
            Err(CsvError::WhichColumn(2))
        ));
    }

    #[test]
    fn every_bad_line_is_named_by_its_line_number() {
        let text = "phone\n91234567\nabc\n\n+8529043628\n61234567\n";
        let Err(CsvError::BadLines(problems)) = numbers_from_csv(text, None) else {
            panic!("bad lines accepted");
        };
        let lines: Vec<u64> = problems.shown().iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 5]);
        let message = CsvError::BadLines(problems).to_string();
        assert!(message.starts_with("2 bad lines"), "{message}");
        assert!(message.contains("line 3 (abc"), "{message}");
        assert!(message.contains("line 5 (+8529043628"), "{message}");
    }

    #[test]
    fn a_quoted_cell_spanning_lines_is_reported_where_it_starts() {
        let text = "phone\n91234567\n\"12\n34\"\n";
        let Err(CsvError::BadLines(problems)) = numbers_from_csv(text, None) else {
            panic!("bad lines accepted");
        };
        assert_eq!(problems.shown()[0].line, 3);
    }

    #[test]
    fn duplicates_count_once_and_the_size_is_bounded() {
        let text = "91234567\n+85291234567\n";
        assert_eq!(numbers_from_csv(text, None).unwrap().len(), 1);
        let big: String = (0..=MAX_IMPORT_LINES)
            .map(|i| format!("{}\n", 90_000_000 + i))
            .collect();
        assert!(matches!(
            numbers_from_csv(&big, None),
            Err(CsvError::TooManyLines)
        ));
        assert!(matches!(
            numbers_from_csv("phone\n\n", None),
            Err(CsvError::Empty)
        ));
    }
}
