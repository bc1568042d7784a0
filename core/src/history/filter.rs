//! The history filters as the JSON API takes them (`status`, `from`, `to`, `q`,
//! `recipient`), parsed strictly into the [`HistoryFilter`] the panel's search uses, and
//! that filter turned into SQL-ready values once for every query that reads it.

use chrono::{DateTime, NaiveDate, Utc};
use smsgate_shared::domain::{MessageStatus, PhoneNumber, PhoneNumberError};

use super::repo::Filter;
use super::service::{HistoryFilter, Viewer};

/// The filters as typed, before parsing. An empty (or blank) value is no filter, so a
/// client that always sends every parameter (`?status=&q=`) gets everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawFilter<'a> {
    pub status: Option<&'a str>,
    /// First day, `YYYY-MM-DD`, UTC, inclusive.
    pub from: Option<&'a str>,
    /// Last day, `YYYY-MM-DD`, UTC, inclusive.
    pub to: Option<&'a str>,
    pub q: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

/// Why a filter value was refused. The API answers 400 rather than ignoring it: a
/// misspelt status silently listing everything would look like a correct answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("status {given:?} is not one of {}", statuses())]
    Status { given: String },
    #[error("{field} {given:?} is not a date written YYYY-MM-DD")]
    Date { field: &'static str, given: String },
    #[error("from ({from}) is after to ({to})")]
    Range { from: NaiveDate, to: NaiveDate },
    #[error("recipient: {0}")]
    Recipient(#[source] PhoneNumberError),
}

fn statuses() -> String {
    let all: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    all.join(", ")
}

fn given(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|v| !v.is_empty())
}

fn day(field: &'static str, raw: Option<&str>) -> Result<Option<NaiveDate>, FilterError> {
    given(raw)
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| FilterError::Date {
                field,
                given: v.to_owned(),
            })
        })
        .transpose()
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

impl HistoryFilter {
    /// Parses the API's filters: dates are whole UTC days (`to` included), the number is
    /// read in either accepted form (E.164 or the 8-digit Hong Kong one) and matched in its
    /// stored E.164 form.
    pub fn parse_utc(raw: RawFilter<'_>) -> Result<HistoryFilter, FilterError> {
        let status = given(raw.status)
            .map(|s| {
                s.parse::<MessageStatus>().map_err(|_| FilterError::Status {
                    given: s.to_owned(),
                })
            })
            .transpose()?;
        let (from, to) = (day("from", raw.from)?, day("to", raw.to)?);
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(FilterError::Range { from, to });
            }
        }
        // A search, not a send: a number stored before numbering plans were checked can
        // still be found, so the lenient parse (the panel's) is the right one.
        let phone = given(raw.recipient)
            .map(PhoneNumber::parse)
            .transpose()
            .map_err(FilterError::Recipient)?;
        Ok(HistoryFilter {
            user: None,
            text: given(raw.q).map(str::to_owned),
            phone,
            status,
            from: from.map(start_of),
            // The day after `to` (none after the last representable day: no bound).
            until: to.and_then(|d| d.succ_opt()).map(start_of),
        })
    }

    /// No filter at all: the listing can use the kept per-user count.
    pub fn is_empty(&self) -> bool {
        self.user.is_none()
            && self.text.as_deref().is_none_or(str::is_empty)
            && self.phone.is_none()
            && self.status.is_none()
            && self.from.is_none()
            && self.until.is_none()
    }

    /// The SQL values of this filter as `viewer` may apply it. Every query over the
    /// history (the panel's keyset pages, the API's numbered pages, the CSV export) reads
    /// this, so a filter means the same wherever it is used.
    pub(crate) fn to_sql(&self, viewer: Viewer) -> Filter {
        Filter {
            user_id: viewer.scope(self.user),
            status: self.status,
            from: self.from,
            until: self.until,
            content_like: self
                .text
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(like_pattern),
            phone: self.phone.as_ref().map(|p| p.as_str().to_owned()),
        }
    }
}

/// LIKE metacharacters in the search text are literal.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: RawFilter<'_>) -> Result<HistoryFilter, FilterError> {
        HistoryFilter::parse_utc(raw)
    }

    #[test]
    fn search_text_is_literal_in_like() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn dates_are_whole_utc_days_with_to_included() {
        let filter = parse(RawFilter {
            from: Some("2026-12-01"),
            to: Some("2026-12-01"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            filter.from.unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            filter.until.unwrap().to_rfc3339(),
            "2026-12-02T00:00:00+00:00"
        );
    }

    #[test]
    fn blank_values_are_no_filter() {
        let filter = parse(RawFilter {
            status: Some(""),
            from: Some(" "),
            to: Some(""),
            q: Some("  "),
            recipient: Some(""),
        })
        .unwrap();
        assert!(filter.is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_what_was_given() {
        let bad_status = parse(RawFilter {
            status: Some("sent-ish"),
            ..Default::default()
        });
        assert!(
            matches!(bad_status, Err(FilterError::Status { ref given }) if given == "sent-ish")
        );
        assert!(bad_status.unwrap_err().to_string().contains("partial"));
        for raw in ["2026-13-01", "01/12/2026", "2026-12-1x", "yesterday"] {
            assert!(matches!(
                parse(RawFilter {
                    to: Some(raw),
                    ..Default::default()
                }),
                Err(FilterError::Date { field: "to", .. })
            ));
        }
        assert!(matches!(
            parse(RawFilter {
                from: Some("2026-12-02"),
                to: Some("2026-12-01"),
                ..Default::default()
            }),
            Err(FilterError::Range { .. })
        ));
        assert!(matches!(
            parse(RawFilter {
                recipient: Some("12ab"),
                ..Default::default()
            }),
            Err(FilterError::Recipient(_))
        ));
    }

    #[test]
    fn both_number_forms_mean_the_same_recipient() {
        let local = parse(RawFilter {
            recipient: Some("9123 4567"),
            ..Default::default()
        })
        .unwrap();
        let e164 = parse(RawFilter {
            recipient: Some("+85291234567"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(local.phone, e164.phone);
        assert_eq!(local.phone.unwrap().as_str(), "+85291234567");
    }
}
