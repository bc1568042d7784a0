//! Phone numbers, parsed once at the edge into E.164.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The hint every rejection ends with: API users see it as the reason their number was refused.
const EXPECTED: &str = "must be 8 digits (optionally `1234 5678`) or E.164 like +85212345678";

/// Country calling code prefixed to Hong Kong local numbers.
const HONG_KONG_PREFIX: &str = "+852";

/// Digits in a Hong Kong local number.
const LOCAL_DIGITS: usize = 8;

/// Digits accepted after `+`, country code included. E.164 allows at most 15. Fewer than 8 is
/// nearly always a truncated number; the few plans that short (Niue, +683 and 4 digits) are
/// not destinations we send to.
const E164_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// An E.164 phone number such as `+85212345678`. Holding one is proof it was parsed:
/// it is always `+` followed by 8 to 15 ASCII digits.
///
/// Ordering and equality compare the E.164 form, so `1234 5678` and `+85212345678` are the
/// same number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Why a string is not a phone number. Carries counts and the offending character, never the
/// number itself, so the error can be logged and returned to API users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// Nothing but whitespace was given.
    #[error("phone number is empty; {EXPECTED}")]
    Empty,
    /// A character other than a digit (or the one space, or a leading `+`) was found.
    #[error("phone number contains the character {found:?}; {EXPECTED}")]
    InvalidCharacter {
        /// The first character that is not allowed.
        found: char,
    },
    /// A local (no `+`) number did not have exactly 8 digits.
    #[error("phone number has {digits} digits; {EXPECTED}")]
    WrongLength {
        /// How many digits the input had.
        digits: usize,
    },
    /// A local number had 8 digits, but a space elsewhere than after the 4th or more than one.
    #[error("phone number may only have one space, after the 4th digit; {EXPECTED}")]
    MisplacedSpace,
    /// An international number did not have 8 to 15 digits after the `+`.
    #[error("phone number has {digits} digits after `+`, E.164 allows 8 to 15; {EXPECTED}")]
    E164Length {
        /// How many digits followed the `+`.
        digits: usize,
    },
    /// An international number that no numbering plan has: `+852` and seven digits, say.
    #[error("phone number is not a valid number for country code +{country_code}: check its digits after the country code; {EXPECTED}")]
    NotInNumberingPlan {
        /// The country calling code the number starts with.
        country_code: u16,
    },
    /// An international number whose country calling code no plan has.
    #[error("phone number starts with no known country calling code; {EXPECTED}")]
    UnknownCountryCode,
}

impl PhoneNumber {
    /// Parses a Hong Kong local number (`12345678` or `1234 5678`, stored as `+852…`) or an
    /// E.164 number (`+` and 8 to 15 digits, stored as given). Surrounding whitespace is
    /// ignored; anything else that is not a digit is rejected with the reason.
    pub fn parse(raw: &str) -> Result<Self, PhoneNumberError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        match raw.strip_prefix('+') {
            Some(digits) => parse_e164(digits),
            None => parse_hong_kong_local(raw),
        }
    }

    /// The E.164 form with its `+`, e.g. `+85212345678`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The E.164 digits without the `+`, e.g. `85212345678`: the form the HKT gateway expects.
    pub fn hkt_digits(&self) -> &str {
        // The constructor guarantees a leading ASCII `+`, so byte 1 is a char boundary.
        &self.0[1..]
    }
}

#[cfg(feature = "numbering-plan")]
impl PhoneNumber {
    /// Parses a number a person typed: as [`PhoneNumber::parse`], and an international
    /// number must also be a valid number of its country's numbering plan
    /// (libphonenumber's metadata), in its canonical E.164 form. A Hong Kong local number
    /// (8 digits) keeps the replaced panel's rule: any 8 digits.
    pub fn parse_dialable(raw: &str) -> Result<Self, PhoneNumberError> {
        let number = PhoneNumber::parse(raw)?;
        if !raw.trim_start().starts_with('+') {
            return Ok(number);
        }
        let parsed = phonenumber::parse(None, number.as_str())
            .map_err(|_| PhoneNumberError::UnknownCountryCode)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneNumberError::NotInNumberingPlan {
                country_code: parsed.code().value(),
            });
        }
        Ok(PhoneNumber(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }
}

fn parse_e164(digits: &str) -> Result<PhoneNumber, PhoneNumberError> {
    if let Some(found) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(PhoneNumberError::InvalidCharacter { found });
    }
    // Only ASCII digits remain, so the byte length is the digit count.
    if !E164_DIGITS.contains(&digits.len()) {
        return Err(PhoneNumberError::E164Length {
            digits: digits.len(),
        });
    }
    Ok(PhoneNumber(format!("+{digits}")))
}

fn parse_hong_kong_local(raw: &str) -> Result<PhoneNumber, PhoneNumberError> {
    if let Some(found) = raw.chars().find(|c| !c.is_ascii_digit() && *c != ' ') {
        return Err(PhoneNumberError::InvalidCharacter { found });
    }
    // Only ASCII digits and spaces remain, so byte positions are character positions.
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != LOCAL_DIGITS {
        return Err(PhoneNumberError::WrongLength {
            digits: digits.len(),
        });
    }
    let spaces: Vec<usize> = raw.match_indices(' ').map(|(at, _)| at).collect();
    // The old panel accepted `\d{4} ?\d{4}` and its users type numbers that way; any other
    // spacing is more likely a typo than a number, so it is refused rather than squeezed.
    if !(spaces.is_empty() || spaces == [LOCAL_DIGITS / 2]) {
        return Err(PhoneNumberError::MisplacedSpace);
    }
    Ok(PhoneNumber(format!("{HONG_KONG_PREFIX}{digits}")))
}

impl fmt::Display for PhoneNumber {
    /// Writes the E.164 form, e.g. `+85212345678`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PhoneNumber {
    /// The E.164 form, as [`PhoneNumber::as_str`].
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;

    /// Parses as [`PhoneNumber::parse`]; lets serde reject invalid numbers while deserialising.
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<PhoneNumber> for String {
    /// The E.164 form, e.g. `+85212345678`.
    fn from(number: PhoneNumber) -> Self {
        number.0
    }
}

#[cfg(all(test, feature = "numbering-plan"))]
mod numbering_plan_tests {
    use super::*;

    #[test]
    fn international_numbers_must_be_in_their_numbering_plan() {
        // +852 and seven digits: no Hong Kong number is that short.
        assert_eq!(
            PhoneNumber::parse_dialable("+8529043628"),
            Err(PhoneNumberError::NotInNumberingPlan { country_code: 852 })
        );
        let reason = PhoneNumber::parse_dialable("+8529043628")
            .unwrap_err()
            .to_string();
        assert!(reason.contains("+852"), "{reason}");
        for valid in [
            "+85291234567",
            "+85261110001",
            "+447911123456",
            "+8613912345678",
            "+14155552671",
        ] {
            assert_eq!(PhoneNumber::parse_dialable(valid).unwrap().as_str(), valid);
        }
        // A country code that does not exist.
        assert!(PhoneNumber::parse_dialable("+99912345678").is_err());
    }

    /// Not a benchmark (timed assertions have no place in tests): prints what a check
    /// costs, for `cargo test --release -p smsgate-shared --features numbering-plan -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_the_cost_of_a_numbering_plan_check() {
        let numbers: Vec<String> = (0..100_000)
            .map(|i| format!("+8529{:07}", 1_000_000 + i))
            .collect();
        let _ = PhoneNumber::parse_dialable("+85291234567"); // loads the metadata
        let started = std::time::Instant::now();
        let valid = numbers
            .iter()
            .filter(|n| PhoneNumber::parse_dialable(n).is_ok())
            .count();
        println!("{valid} of 100000 valid in {:?}", started.elapsed());
    }

    #[test]
    fn hong_kong_local_numbers_keep_the_old_panels_rule() {
        // Any 8 digits, as the replaced panel accepted, even where the plan has no numbers.
        assert_eq!(
            PhoneNumber::parse_dialable("1234 5678").unwrap().as_str(),
            "+85212345678"
        );
        assert_eq!(
            PhoneNumber::parse_dialable("9043628"),
            Err(PhoneNumberError::WrongLength { digits: 7 })
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parsed(raw: &str) -> String {
        PhoneNumber::parse(raw)
            .unwrap_or_else(|e| panic!("{raw:?} should parse, got {e}"))
            .as_str()
            .to_owned()
    }

    fn rejected(raw: &str) -> PhoneNumberError {
        PhoneNumber::parse(raw).expect_err("should be rejected")
    }

    #[test]
    fn hong_kong_number_without_space_is_stored_as_e164() {
        assert_eq!(parsed("12345678"), "+85212345678");
    }

    #[test]
    fn hong_kong_number_with_space_is_stored_as_e164() {
        assert_eq!(parsed("1234 5678"), "+85212345678");
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parsed("  1234 5678\t\n"), "+85212345678");
        assert_eq!(parsed(" +447911123456 "), "+447911123456");
    }

    #[test]
    fn hong_kong_e164_number_is_kept_as_given() {
        assert_eq!(parsed("+85212345678"), "+85212345678");
    }

    #[test]
    fn foreign_e164_number_is_kept_as_given() {
        assert_eq!(parsed("+447911123456"), "+447911123456");
    }

    #[test]
    fn e164_lengths_of_8_and_15_digits_are_accepted() {
        assert_eq!(parsed("+12345678"), "+12345678");
        assert_eq!(parsed("+123456789012345"), "+123456789012345");
    }

    #[test]
    fn hyphenated_number_is_rejected_naming_the_hyphen() {
        assert_eq!(
            rejected("1234-5678"),
            PhoneNumberError::InvalidCharacter { found: '-' }
        );
    }

    #[test]
    fn nine_digit_local_number_is_rejected_as_wrong_length() {
        assert_eq!(
            rejected("123456789"),
            PhoneNumberError::WrongLength { digits: 9 }
        );
    }

    #[test]
    fn short_number_with_space_is_rejected_as_wrong_length() {
        assert_eq!(
            rejected("12 3456"),
            PhoneNumberError::WrongLength { digits: 6 }
        );
    }

    #[test]
    fn empty_string_is_rejected_as_empty() {
        assert_eq!(rejected(""), PhoneNumberError::Empty);
    }

    #[test]
    fn whitespace_only_is_rejected_as_empty() {
        assert_eq!(rejected(" \t\n "), PhoneNumberError::Empty);
    }

    #[test]
    fn letters_are_rejected_naming_the_first_letter() {
        assert_eq!(
            rejected("1234abcd"),
            PhoneNumberError::InvalidCharacter { found: 'a' }
        );
        assert_eq!(
            rejected("+852x2345678"),
            PhoneNumberError::InvalidCharacter { found: 'x' }
        );
    }

    #[test]
    fn plus_alone_is_rejected_as_too_short_e164() {
        assert_eq!(rejected("+"), PhoneNumberError::E164Length { digits: 0 });
    }

    #[test]
    fn seven_digit_e164_is_rejected_as_too_short() {
        assert_eq!(
            rejected("+1234567"),
            PhoneNumberError::E164Length { digits: 7 }
        );
    }

    #[test]
    fn sixteen_digit_e164_is_rejected_as_too_long() {
        assert_eq!(
            rejected("+1234567890123456"),
            PhoneNumberError::E164Length { digits: 16 }
        );
    }

    #[test]
    fn two_spaces_are_rejected_as_misplaced() {
        assert_eq!(rejected("1234  5678"), PhoneNumberError::MisplacedSpace);
    }

    #[test]
    fn space_not_after_fourth_digit_is_rejected_as_misplaced() {
        assert_eq!(rejected("123 45678"), PhoneNumberError::MisplacedSpace);
        assert_eq!(rejected("1 234 5678"), PhoneNumberError::MisplacedSpace);
    }

    #[test]
    fn e164_with_spaces_is_rejected_naming_the_space() {
        assert_eq!(
            rejected("+852 1234 5678"),
            PhoneNumberError::InvalidCharacter { found: ' ' }
        );
    }

    #[test]
    fn error_messages_explain_the_expected_format_without_echoing_the_number() {
        let errors = [
            rejected(""),
            rejected("9876-5432"),
            rejected("987654321"),
            rejected("9876  5432"),
            rejected("+9876543"),
            rejected("+98765432109876543"),
        ];
        for error in errors {
            let shown = error.to_string();
            let debug = format!("{error:?}");
            assert!(shown.ends_with(EXPECTED), "{shown}");
            assert!(!shown.contains("9876"), "{shown}");
            assert!(!debug.contains("9876"), "{debug}");
        }
    }

    #[test]
    fn hkt_digits_drop_the_plus() {
        let number = PhoneNumber::parse("1234 5678").unwrap();
        assert_eq!(number.hkt_digits(), "85212345678");
    }

    #[test]
    fn display_and_as_ref_show_the_e164_form() {
        let number = PhoneNumber::parse("1234 5678").unwrap();
        assert_eq!(number.to_string(), "+85212345678");
        assert_eq!(number.as_ref(), "+85212345678");
        assert_eq!(String::from(number), "+85212345678");
    }

    #[test]
    fn serde_round_trips_as_an_e164_string() {
        let number = PhoneNumber::parse("1234 5678").unwrap();
        let json = serde_json::to_string(&number).unwrap();
        assert_eq!(json, r#""+85212345678""#);
        let back: PhoneNumber = serde_json::from_str(&json).unwrap();
        assert_eq!(back, number);
    }

    #[test]
    fn serde_parses_local_numbers_while_deserialising() {
        let number: PhoneNumber = serde_json::from_str(r#""1234 5678""#).unwrap();
        assert_eq!(number.as_str(), "+85212345678");
    }

    #[test]
    fn serde_rejects_an_invalid_number_with_the_reason() {
        let error = serde_json::from_str::<PhoneNumber>(r#""1234-5678""#).unwrap_err();
        assert!(error.to_string().contains(EXPECTED), "{error}");
        assert!(serde_json::from_str::<PhoneNumber>("12345678").is_err());
    }

    proptest! {
        #[test]
        fn any_eight_digits_parse_to_hong_kong_e164(digits in "[0-9]{8}") {
            prop_assert_eq!(parsed(&digits), format!("+852{digits}"));
        }

        #[test]
        fn eight_digits_split_four_four_parse_like_unsplit(digits in "[0-9]{8}") {
            let spaced = format!("{} {}", &digits[..4], &digits[4..]);
            prop_assert_eq!(parsed(&spaced), parsed(&digits));
        }

        #[test]
        fn any_plus_and_8_to_15_digits_parse_to_themselves(raw in "\\+[0-9]{8,15}") {
            prop_assert_eq!(parsed(&raw), raw);
        }

        #[test]
        fn parsing_the_e164_form_again_is_identity(
            raw in prop_oneof!["[0-9]{8}", "[0-9]{4} [0-9]{4}", "\\+[0-9]{8,15}"]
        ) {
            let number = PhoneNumber::parse(&raw).unwrap();
            prop_assert_eq!(PhoneNumber::parse(number.as_str()).unwrap(), number);
        }

        #[test]
        fn strings_containing_a_letter_never_parse(
            before in "[+0-9 ]{0,10}",
            letter in "[a-zA-Z]",
            after in "[0-9 ]{0,10}",
        ) {
            let raw = format!("{before}{letter}{after}");
            prop_assert!(PhoneNumber::parse(&raw).is_err());
        }
    }
}
