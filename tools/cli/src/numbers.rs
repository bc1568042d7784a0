//! Phone numbers from the command line and from CSV files, checked with the API's own
//! parser (`PhoneNumber::parse_dialable`) before anything is uploaded, so that every bad
//! line is reported at once with the line number an editor shows.

use std::path::Path;

use smsgate_shared::domain::{PhoneNumber, PhoneNumberError};

use crate::error::CliError;

/// The headers a number column is found by when `--column` is not given.
const NUMBER_HEADERS: [&str; 3] = ["phone_number", "phone", "number"];

/// One number given on the command line.
pub fn parse_arg(raw: &str) -> Result<PhoneNumber, CliError> {
    PhoneNumber::parse_dialable(raw)
        .map_err(|e| CliError::Usage(format!("{raw:?}: not a phone number ({})", reason(e))))
}

/// Every number of the CSV file's chosen column, in file order; or every bad line.
pub fn read_csv(path: &Path, column: Option<&str>) -> Result<Vec<PhoneNumber>, CliError> {
    // Read whole: line numbers are counted on the bytes (see `Lines`), and even 100,000
    // numbers are a few megabytes.
    let input = std::fs::read(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })?;
    read_numbers(&input, &path.display().to_string(), column)
}

/// [`read_csv`] on a file's bytes; `name` is how lines are prefixed in errors.
pub fn read_numbers(
    input: &[u8],
    name: &str,
    column: Option<&str>,
) -> Result<Vec<PhoneNumber>, CliError> {
    let mut lines = Lines {
        input,
        counted: 0,
        line: 1,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // A short line is reported as such, not as a parse failure of the whole file.
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(name, &e, &mut lines))?
        .clone();
    let index = pick_column(&headers, column, name)?;
    let mut numbers = Vec::new();
    let mut bad = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(name, &e, &mut lines))?;
        let line = lines.at(record.position().map_or(0, |p| p.byte()));
        let Some(raw) = record.get(index) else {
            bad.push(format!("{name}:{line}: no column {}", index + 1));
            continue;
        };
        match PhoneNumber::parse_dialable(raw) {
            Ok(number) => numbers.push(number),
            Err(e) => bad.push(format!(
                "{name}:{line}: {raw:?}: not a phone number ({})",
                reason(e)
            )),
        }
    }
    if !bad.is_empty() {
        return Err(CliError::BadLines(bad));
    }
    if numbers.is_empty() {
        return Err(CliError::Usage(format!(
            "{name}: no numbers under the header row"
        )));
    }
    Ok(numbers)
}

/// The line (1-based, as an editor counts) a byte offset is on. The csv reader's own
/// line count skips blank lines, so after one every number it gave would be off.
struct Lines<'a> {
    input: &'a [u8],
    /// Newlines before this offset are counted in `line`.
    counted: usize,
    line: u64,
}

impl Lines<'_> {
    /// Offsets only grow (records come in order), so the file is scanned once.
    fn at(&mut self, byte: u64) -> u64 {
        let mut byte = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.input.len());
        // A record's position is where the previous one ended, before any blank lines.
        while matches!(self.input.get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        if byte > self.counted {
            let newlines = self.input[self.counted..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines as u64;
            self.counted = byte;
        }
        self.line
    }
}

fn pick_column(
    headers: &csv::StringRecord,
    column: Option<&str>,
    name: &str,
) -> Result<usize, CliError> {
    let find = |wanted: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(wanted))
    };
    let listed = || {
        headers
            .iter()
            .map(|h| format!("{h:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(column) = column {
        return find(column).ok_or_else(|| {
            CliError::Usage(format!(
                "{name}: no column {column:?} in the header row (it has {})",
                listed()
            ))
        });
    }
    if headers.len() == 1 {
        return Ok(0);
    }
    NUMBER_HEADERS
        .iter()
        .find_map(|wanted| find(wanted))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{name}: which column holds the numbers? Pass --column (the header row has {})",
                listed()
            ))
        })
}

/// The CSV itself is broken (bad UTF-8, say): the reader stops, so does the check.
fn csv_error(name: &str, err: &csv::Error, lines: &mut Lines) -> CliError {
    let line = err
        .position()
        .map_or(String::new(), |p| format!(":{}", lines.at(p.byte())));
    CliError::BadLines(vec![format!("{name}{line}: {err}")])
}

/// Why a number was refused, without the hint each `PhoneNumberError` repeats (the hint is
/// said once, in the docs and `--help`, not on every one of thousands of lines).
fn reason(err: PhoneNumberError) -> String {
    match err {
        PhoneNumberError::Empty => "empty".into(),
        PhoneNumberError::InvalidCharacter { found } => format!("contains {found:?}"),
        PhoneNumberError::WrongLength { digits } => {
            format!("{digits} digits; a local number has 8")
        }
        PhoneNumberError::MisplacedSpace => {
            "only one space, after the 4th digit, is allowed".into()
        }
        PhoneNumberError::E164Length { digits } => {
            format!("{digits} digits after +; E.164 has 8 to 15")
        }
        PhoneNumberError::NotInNumberingPlan { country_code } => {
            format!("not a valid number for country code +{country_code}")
        }
        PhoneNumberError::UnknownCountryCode => "no known country calling code".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, column: Option<&str>) -> Result<Vec<String>, String> {
        read_numbers(text.as_bytes(), "f.csv", column)
            .map(|n| n.iter().map(|n| n.as_str().to_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_single_column_is_read_whatever_its_header() {
        assert_eq!(
            read("mobile\n91234567\n+85261234567\n", None).unwrap(),
            ["+85291234567", "+85261234567"]
        );
    }

    #[test]
    fn the_number_column_is_found_by_name_or_chosen() {
        let csv = "name,Phone,note\nAnn,91234567,x\nBob,9123 4568,y\n";
        assert_eq!(read(csv, None).unwrap(), ["+85291234567", "+85291234568"]);
        let csv = "name,mobile\nAnn,91234567\n";
        assert!(read(csv, None).unwrap_err().contains("--column"));
        assert_eq!(read(csv, Some("MOBILE")).unwrap(), ["+85291234567"]);
        assert!(read(csv, Some("fax"))
            .unwrap_err()
            .contains("no column \"fax\""));
    }

    #[test]
    fn every_bad_line_is_reported_with_the_line_an_editor_shows() {
        // Line 3 holds a quoted field over two lines: the next record starts on line 5.
        let csv = "phone,note\n91234567,ok\n12ab,\"two\nlines\"\n+8529043628,x\n\n1234567,y\n";
        let err = read(csv, None).unwrap_err();
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("f.csv:3: \"12ab\": not a phone number"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("f.csv:5: \"+8529043628\": not a phone number"),
            "{err}"
        );
        assert!(
            lines[2].starts_with("f.csv:7: \"1234567\": not a phone number"),
            "{err}"
        );
        assert!(err.starts_with("3 bad lines"), "{err}");
    }

    #[test]
    fn a_short_line_is_a_bad_line() {
        let err = read("name,phone\nAnn\n", None).unwrap_err();
        assert!(err.contains("f.csv:2: no column 2"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_text_is_refused_with_its_line() {
        let err = read_numbers(b"phone\n91234567\n\xff\xfe\n", "f.csv", None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("f.csv:3: "), "{err}");
    }

    #[test]
    fn a_file_without_numbers_is_refused() {
        assert!(read("phone\n", None).unwrap_err().contains("no numbers"));
    }
}
