//! Request parameters both edges (the JSON API and the panel) parse the same way.

/// A path id: a positive integer. Anything else names no resource.
pub fn positive_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

/// A 1-based page number of a paged list, at most [`PageNumber::MAX`]: with every list's
/// page size capped at 1,000, the row offset `(page - 1) * per_page` then always fits. A
/// query's `page` outside `1..=MAX` is a 400 naming the range, never an overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "i64")]
pub struct PageNumber(i64);

impl PageNumber {
    /// Far past the end of any list this service keeps.
    pub const MAX: i64 = 1_000_000;
    pub const FIRST: PageNumber = PageNumber(1);

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PageNumber {
    type Error = String;

    fn try_from(page: i64) -> Result<Self, Self::Error> {
        if (1..=Self::MAX).contains(&page) {
            Ok(PageNumber(page))
        } else {
            Err(format!("page must be between 1 and {}", Self::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_integers_only() {
        assert_eq!(positive_id("42"), Some(42));
        for raw in ["0", "-1", "1.5", "abc", "", "99999999999999999999"] {
            assert_eq!(positive_id(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn page_numbers_accept_one_to_the_maximum_only() {
        assert_eq!(PageNumber::try_from(1).unwrap().get(), 1);
        assert_eq!(
            PageNumber::try_from(PageNumber::MAX).unwrap().get(),
            PageNumber::MAX
        );
        for bad in [0, -1, PageNumber::MAX + 1, i64::MAX, i64::MIN] {
            assert!(PageNumber::try_from(bad).is_err(), "{bad}");
        }
    }
}
