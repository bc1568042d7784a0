//! Helpers that turn domain values into what templates show.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The time zone pages show times in (DISPLAY_TZ); everything is stored in UTC.
#[derive(Debug, Clone, Copy)]
pub struct DisplayTz(pub Tz);

impl Default for DisplayTz {
    fn default() -> Self {
        DisplayTz(chrono_tz::Asia::Hong_Kong)
    }
}

impl DisplayTz {
    /// Parses an IANA name such as `Asia/Hong_Kong`.
    pub fn parse(name: &str) -> Option<DisplayTz> {
        name.parse::<Tz>().ok().map(DisplayTz)
    }

    /// `2026-11-22 18:04:05 HKT`.
    pub fn format(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    /// `2026-11-22T18:04:05+08:00`, for `<time datetime>`.
    pub fn machine(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0).to_rfc3339()
    }

    /// The UTC instant local midnight of `date` starts at (the earliest, if a DST change
    /// makes it ambiguous or skips it).
    pub fn start_of_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self.0.from_local_datetime(&midnight) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                t.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                let one_am = date.and_hms_opt(1, 0, 0).expect("1 am exists");
                self.0.from_local_datetime(&one_am).earliest().map_or_else(
                    || Utc.from_utc_datetime(&midnight),
                    |t| t.with_timezone(&Utc),
                )
            }
        }
    }

    /// Today's date in the display zone.
    pub fn today(&self) -> NaiveDate {
        Utc::now().with_timezone(&self.0).date_naive()
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// A text cut to `max` characters with an ellipsis, for previews in tables.
pub fn preview(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_hong_kong_time_by_default() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 4, 5).unwrap();
        assert_eq!(DisplayTz::default().format(at), "2026-11-22 18:04:05 HKT");
    }

    #[test]
    fn a_local_day_starts_at_its_utc_instant() {
        let tz = DisplayTz::default();
        let date = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(
            tz.start_of_day(date),
            Utc.with_ymd_and_hms(2026, 11, 21, 16, 0, 0).unwrap()
        );
        assert!(DisplayTz::parse("Europe/London").is_some());
        assert!(DisplayTz::parse("Mars/Olympus").is_none());
    }

    #[test]
    fn previews_cut_on_characters_not_bytes() {
        assert_eq!(preview("你好世界", 2), "你好…");
        assert_eq!(preview("hi", 5), "hi");
    }
}
