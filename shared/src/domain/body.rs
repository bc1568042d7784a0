//! SMS text that knows how it will be encoded and how many parts it will be sent as.
//!
//! Encoding follows 3GPP TS 23.038: GSM-7 when every character is in the default alphabet or
//! its extension table, UCS-2 otherwise. Part sizes follow TS 23.040 with the 6-octet
//! concatenation header (8-bit reference) that gateways and modems use.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Septets in a single-part GSM-7 message (140 octets).
const GSM7_SINGLE_PART: usize = 160;
/// Septets per part of a multipart GSM-7 message: the 6-octet concatenation header takes 48
/// bits, padded to 7 septets.
const GSM7_MULTI_PART: usize = 153;
/// UTF-16 code units in a single-part UCS-2 message (140 octets).
const UCS2_SINGLE_PART: usize = 70;
/// UTF-16 code units per part of a multipart UCS-2 message: the header takes 3 units.
const UCS2_MULTI_PART: usize = 67;

/// How a message is encoded on the air interface, which decides how much text fits in a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet with its extension table: 160 septets per single part.
    Gsm7,
    /// UCS-2 (sent as UTF-16): 70 code units per single part.
    Ucs2,
}

impl Encoding {
    /// The stable name used in JSON, the database and metrics: `"gsm7"` or `"ucs2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Gsm7 => "gsm7",
            Self::Ucs2 => "ucs2",
        }
    }

    /// Whether `c` can be sent in GSM-7 (default alphabet or extension table). The escape
    /// code 0x1B is not a character users type, so it is not one.
    pub fn is_gsm7_char(c: char) -> bool {
        Self::gsm7_septets(c).is_some()
    }

    /// Septets `c` takes in GSM-7: 1 for the default alphabet, 2 for the extension table
    /// (escape + code), `None` when `c` cannot be sent in GSM-7 at all.
    pub fn gsm7_septets(c: char) -> Option<u32> {
        match c {
            // Default alphabet, in 3GPP TS 23.038 table order (0x1B, the escape, left out).
            '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
            | 'Å' | 'å' => Some(1),
            // Greek capitals by code point: Latin look-alikes (A, B, E, …) are separate entries.
            '\u{0394}' | '_' | '\u{03A6}' | '\u{0393}' | '\u{039B}' | '\u{03A9}' | '\u{03A0}'
            | '\u{03A8}' | '\u{03A3}' | '\u{0398}' | '\u{039E}' => Some(1),
            'Æ' | 'æ' | 'ß' | 'É' => Some(1),
            ' '
            | '!'
            | '"'
            | '#'
            | '¤'
            | '%'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | '+'
            | ','
            | '-'
            | '.'
            | '/'
            | '0'..='9'
            | ':'
            | ';'
            | '<'
            | '='
            | '>'
            | '?' => Some(1),
            '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' => Some(1),
            '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
            // Extension table: sent as escape + code.
            '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
            _ => None,
        }
    }
}

impl fmt::Display for Encoding {
    /// Writes [`Encoding::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text of an SMS. Holding one is proof it is not blank and fits the segment limit it was
/// parsed with; its encoding and segment count are computed once, here, and never re-checked
/// downstream.
///
/// The text is kept exactly as given (not trimmed). `Debug` omits the text, because message
/// bodies are personal data and must not reach logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageBody {
    text: String,
    encoding: Encoding,
    segments: u32,
}

/// Why a text is not an acceptable SMS body. Shown to API users as the reason; never contains
/// the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageBodyError {
    /// The text is empty or only whitespace.
    #[error("content must not be empty")]
    Empty,
    /// The text needs more parts than allowed.
    #[error("content is {segments} segments long; at most {max_segments} allowed")]
    TooLong {
        /// Parts the text would be sent as.
        segments: u32,
        /// The limit it was parsed with.
        max_segments: u32,
    },
}

impl MessageBody {
    /// The segment limit the API applies when the caller does not choose one.
    pub const DEFAULT_MAX_SEGMENTS: u32 = 10;

    /// Accepts any text that is not blank and is at most `max_segments` parts long, keeping it
    /// as given. The encoding is GSM-7 when every character is GSM-7, else UCS-2.
    ///
    /// Segments: a GSM-7 text of up to 160 septets (extension characters count 2) is one part;
    /// a longer one is split into parts of up to 153 septets. A UCS-2 text of up to 70 UTF-16
    /// units is one part; a longer one is split into parts of up to 67 units. Parts are filled
    /// greedily without splitting an extension character's escape from its code, or a
    /// surrogate pair, because handsets render a split one as garbage; so a multipart message
    /// can need one part more than `ceil(units / 153)` (or `/ 67`).
    pub fn parse(raw: &str, max_segments: u32) -> Result<Self, MessageBodyError> {
        Self::from_text(raw.to_owned(), max_segments)
    }

    fn from_text(text: String, max_segments: u32) -> Result<Self, MessageBodyError> {
        if text.trim().is_empty() {
            return Err(MessageBodyError::Empty);
        }
        let (encoding, segments) = match gsm7_total_septets(&text) {
            Some(septets) => {
                let costs = text.chars().map(|c| gsm7_cost(c).unwrap_or(1));
                let parts = count_parts(costs, septets, GSM7_SINGLE_PART, GSM7_MULTI_PART);
                (Encoding::Gsm7, parts)
            }
            None => {
                let units = text.encode_utf16().count();
                let costs = text.chars().map(char::len_utf16);
                let parts = count_parts(costs, units, UCS2_SINGLE_PART, UCS2_MULTI_PART);
                (Encoding::Ucs2, parts)
            }
        };
        let segments = saturate(segments);
        if segments > max_segments {
            return Err(MessageBodyError::TooLong {
                segments,
                max_segments,
            });
        }
        Ok(Self {
            text,
            encoding,
            segments,
        })
    }

    /// The text exactly as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The encoding the text will be sent in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How many parts the text will be sent as (at least 1).
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// Length in the units of its encoding: septets for GSM-7 (extension characters count 2),
    /// UTF-16 code units for UCS-2 (characters outside the BMP count 2).
    pub fn len_units(&self) -> u32 {
        let units = match self.encoding {
            Encoding::Gsm7 => gsm7_total_septets(&self.text).unwrap_or(0),
            Encoding::Ucs2 => self.text.encode_utf16().count(),
        };
        saturate(units)
    }

    /// Gives up the text, e.g. to hand it to a gateway client.
    pub fn into_string(self) -> String {
        self.text
    }
}

fn gsm7_cost(c: char) -> Option<usize> {
    // At most 2, so the conversion is lossless.
    Encoding::gsm7_septets(c).map(|septets| septets as usize)
}

/// Total septets if every character is GSM-7, `None` as soon as one is not.
fn gsm7_total_septets(text: &str) -> Option<usize> {
    text.chars().map(gsm7_cost).sum()
}

/// Parts needed for a text of `total` units whose characters cost `costs` units each: one
/// part if it fits `single`, else parts of `per_part` filled without splitting a character.
fn count_parts(
    costs: impl Iterator<Item = usize>,
    total: usize,
    single: usize,
    per_part: usize,
) -> usize {
    if total <= single {
        return 1;
    }
    let mut parts = 1;
    let mut used = 0;
    for cost in costs {
        if used + cost > per_part {
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

/// Counts beyond `u32::MAX` would need a text of gigabytes; saturating keeps the limit check
/// correct (it still fails) without a panic path.
fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBody")
            .field("encoding", &self.encoding)
            .field("segments", &self.segments)
            .field("len_units", &self.len_units())
            .finish_non_exhaustive()
    }
}

impl TryFrom<String> for MessageBody {
    type Error = MessageBodyError;

    /// Parses with no segment limit: bodies read back from the queue or the database were
    /// limited when the API accepted them, and consumers need the encoding, not the limit.
    /// Blank text is still rejected.
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_text(text, u32::MAX)
    }
}

impl From<MessageBody> for String {
    /// The text exactly as given.
    fn from(body: MessageBody) -> Self {
        body.text
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The default alphabet in 3GPP TS 23.038 order, 0x00..=0x7F without the escape at 0x1B.
    const GSM7_BASIC: &str = concat!(
        "@£$¥èéùìòÇ\nØø\rÅå",
        "\u{0394}_\u{03A6}\u{0393}\u{039B}\u{03A9}\u{03A0}\u{03A8}\u{03A3}\u{0398}\u{039E}",
        "ÆæßÉ",
        " !\"#¤%&'()*+,-./0123456789:;<=>?",
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§",
        "¿abcdefghijklmnopqrstuvwxyzäöñüà",
    );
    /// The extension table: form feed, then the characters at 0x14, 0x28, 0x29, 0x2F, 0x3C,
    /// 0x3D, 0x3E, 0x40 and 0x65.
    const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

    fn body(text: &str) -> MessageBody {
        MessageBody::parse(text, u32::MAX).unwrap_or_else(|e| panic!("should parse, got {e}"))
    }

    fn repeat(c: char, n: usize) -> String {
        c.to_string().repeat(n)
    }

    #[test]
    fn default_alphabet_has_127_one_septet_characters_and_nothing_else() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let expected = if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            };
            assert_eq!(
                Encoding::gsm7_septets(c),
                expected,
                "{c:?} U+{:04X}",
                c as u32
            );
            assert_eq!(Encoding::is_gsm7_char(c), expected.is_some());
        }
    }

    #[test]
    fn escape_lowercase_c_cedilla_and_backtick_are_not_gsm7() {
        assert_eq!(Encoding::gsm7_septets('\u{001B}'), None);
        assert_eq!(Encoding::gsm7_septets('ç'), None);
        assert_eq!(Encoding::gsm7_septets('`'), None);
    }

    #[test]
    fn latin_look_alike_greek_letters_are_not_gsm7() {
        // Greek capital alpha and omicron look like A and O, but only the Latin ones are GSM.
        assert!(!Encoding::is_gsm7_char('\u{0391}'));
        assert!(!Encoding::is_gsm7_char('\u{039F}'));
        // The ohm sign looks like omega; only U+03A9 is GSM.
        assert!(!Encoding::is_gsm7_char('\u{2126}'));
    }

    #[test]
    fn one_hundred_sixty_gsm_characters_are_one_segment() {
        let b = body(&repeat('a', 160));
        assert_eq!(b.encoding(), Encoding::Gsm7);
        assert_eq!((b.len_units(), b.segments()), (160, 1));
    }

    #[test]
    fn one_hundred_sixty_one_gsm_characters_are_two_segments() {
        assert_eq!(body(&repeat('a', 161)).segments(), 2);
    }

    #[test]
    fn three_hundred_six_gsm_characters_are_two_segments() {
        assert_eq!(body(&repeat('a', 306)).segments(), 2);
    }

    #[test]
    fn three_hundred_seven_gsm_characters_are_three_segments() {
        assert_eq!(body(&repeat('a', 307)).segments(), 3);
    }

    #[test]
    fn euro_sign_counts_two_septets() {
        assert_eq!(Encoding::gsm7_septets('€'), Some(2));
        let b = body("€");
        assert_eq!(b.encoding(), Encoding::Gsm7);
        assert_eq!(b.len_units(), 2);
    }

    #[test]
    fn eighty_euro_signs_fill_one_segment() {
        let b = body(&repeat('€', 80));
        assert_eq!((b.len_units(), b.segments()), (160, 1));
    }

    #[test]
    fn eighty_one_euro_signs_are_two_segments() {
        let b = body(&repeat('€', 81));
        assert_eq!((b.len_units(), b.segments()), (162, 2));
    }

    #[test]
    fn extension_character_is_not_split_across_parts() {
        // 306 septets would fit two parts of 153, but the euro sign would straddle them.
        let text = format!("{}€{}", repeat('a', 152), repeat('a', 152));
        let b = body(&text);
        assert_eq!((b.len_units(), b.segments()), (306, 3));
    }

    #[test]
    fn seventy_cjk_characters_are_one_ucs2_segment() {
        let b = body(&repeat('中', 70));
        assert_eq!(b.encoding(), Encoding::Ucs2);
        assert_eq!((b.len_units(), b.segments()), (70, 1));
    }

    #[test]
    fn seventy_one_cjk_characters_are_two_segments() {
        assert_eq!(body(&repeat('中', 71)).segments(), 2);
    }

    #[test]
    fn one_hundred_thirty_four_cjk_characters_are_two_segments() {
        assert_eq!(body(&repeat('中', 134)).segments(), 2);
    }

    #[test]
    fn one_hundred_thirty_five_cjk_characters_are_three_segments() {
        assert_eq!(body(&repeat('中', 135)).segments(), 3);
    }

    #[test]
    fn emoji_counts_two_utf16_units() {
        let b = body("😀");
        assert_eq!(b.encoding(), Encoding::Ucs2);
        assert_eq!(b.len_units(), 2);
    }

    #[test]
    fn thirty_five_emoji_fill_one_segment() {
        let b = body(&repeat('😀', 35));
        assert_eq!((b.len_units(), b.segments()), (70, 1));
    }

    #[test]
    fn thirty_six_emoji_are_two_segments() {
        let b = body(&repeat('😀', 36));
        assert_eq!((b.len_units(), b.segments()), (72, 2));
    }

    #[test]
    fn surrogate_pair_is_not_split_across_parts() {
        // 134 units would fit two parts of 67, but the emoji would straddle them.
        let text = format!("{}😀{}", repeat('中', 66), repeat('中', 66));
        let b = body(&text);
        assert_eq!((b.len_units(), b.segments()), (134, 3));
    }

    #[test]
    fn one_cjk_character_makes_the_whole_message_ucs2() {
        let b = body("Your code is 1234. 謝謝");
        assert_eq!(b.encoding(), Encoding::Ucs2);
        assert_eq!(b.len_units(), 21);
    }

    #[test]
    fn accented_gsm_letters_and_newlines_stay_gsm7() {
        let b = body("Café à 10€\r\nMañana {ok}");
        assert_eq!(b.encoding(), Encoding::Gsm7);
        assert_eq!(b.len_units(), 26);
    }

    #[test]
    fn empty_text_is_rejected() {
        assert_eq!(MessageBody::parse("", 10), Err(MessageBodyError::Empty));
    }

    #[test]
    fn whitespace_only_text_is_rejected_as_empty() {
        assert_eq!(MessageBody::parse("   ", 10), Err(MessageBodyError::Empty));
        assert_eq!(
            MessageBody::parse("\r\n\t", 10),
            Err(MessageBodyError::Empty)
        );
    }

    #[test]
    fn text_is_kept_exactly_as_given() {
        let b = body("  hello \n");
        assert_eq!(b.as_str(), "  hello \n");
        assert_eq!(b.into_string(), "  hello \n");
    }

    #[test]
    fn too_many_segments_are_rejected_with_both_numbers() {
        let error = MessageBody::parse(&repeat('a', 307), 2).unwrap_err();
        assert_eq!(
            error,
            MessageBodyError::TooLong {
                segments: 3,
                max_segments: 2
            }
        );
        assert_eq!(
            error.to_string(),
            "content is 3 segments long; at most 2 allowed"
        );
    }

    #[test]
    fn segment_limit_is_honoured_exactly_at_the_boundary() {
        let max = MessageBody::DEFAULT_MAX_SEGMENTS;
        let at_limit = repeat('a', 153 * max as usize);
        let over_limit = repeat('a', 153 * max as usize + 1);
        assert_eq!(MessageBody::parse(&at_limit, max).unwrap().segments(), max);
        assert_eq!(
            MessageBody::parse(&over_limit, max),
            Err(MessageBodyError::TooLong {
                segments: max + 1,
                max_segments: max
            })
        );
    }

    #[test]
    fn single_segment_limit_accepts_a_full_single_part() {
        assert!(MessageBody::parse(&repeat('a', 160), 1).is_ok());
        assert!(MessageBody::parse(&repeat('a', 161), 1).is_err());
    }

    #[test]
    fn empty_error_message_is_human_readable() {
        assert_eq!(
            MessageBodyError::Empty.to_string(),
            "content must not be empty"
        );
    }

    #[test]
    fn debug_output_never_contains_the_text() {
        let shown = format!("{:?}", body("secret code 4242"));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("Gsm7"), "{shown}");
    }

    #[test]
    fn encoding_names_are_lowercase_everywhere() {
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.to_string(), "ucs2");
        assert_eq!(serde_json::to_string(&Encoding::Gsm7).unwrap(), r#""gsm7""#);
        let back: Encoding = serde_json::from_str(r#""ucs2""#).unwrap();
        assert_eq!(back, Encoding::Ucs2);
        assert!(serde_json::from_str::<Encoding>(r#""UCS2""#).is_err());
    }

    #[test]
    fn serde_round_trips_as_a_plain_string() {
        let original = body("Hello 你好 😀");
        let json = serde_json::to_string(&original).unwrap();
        assert_eq!(json, r#""Hello 你好 😀""#);
        let back: MessageBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back, original);
        assert_eq!(back.encoding(), Encoding::Ucs2);
    }

    #[test]
    fn deserialising_ignores_the_segment_limit() {
        let long = repeat('a', 153 * 20);
        let back: MessageBody = serde_json::from_value(serde_json::Value::String(long)).unwrap();
        assert_eq!(back.segments(), 20);
    }

    #[test]
    fn deserialising_rejects_blank_text() {
        let error = serde_json::from_str::<MessageBody>(r#""  ""#).unwrap_err();
        assert!(
            error.to_string().contains("content must not be empty"),
            "{error}"
        );
    }

    fn basic_gsm_char() -> impl Strategy<Value = char> {
        proptest::sample::select(GSM7_BASIC.chars().collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn basic_gsm_text_needs_ceil_of_length_over_153_parts_beyond_160(
            chars in proptest::collection::vec(basic_gsm_char(), 1..=1600)
        ) {
            let text: String = chars.iter().collect();
            prop_assume!(!text.trim().is_empty());
            let n = chars.len();
            let b = body(&text);
            let expected = if n <= 160 { 1 } else { n.div_ceil(153) };
            prop_assert_eq!(b.encoding(), Encoding::Gsm7);
            prop_assert_eq!(b.len_units() as usize, n);
            prop_assert_eq!(b.segments() as usize, expected);
        }

        #[test]
        fn any_non_empty_ascii_letter_text_is_gsm7(text in "[a-zA-Z]{1,500}") {
            prop_assert_eq!(body(&text).encoding(), Encoding::Gsm7);
        }

        #[test]
        fn segments_never_fall_below_the_naive_count(text in "\\PC{1,400}") {
            prop_assume!(!text.trim().is_empty());
            let b = body(&text);
            let units = b.len_units() as usize;
            let (single, per_part) = match b.encoding() {
                Encoding::Gsm7 => (160, 153),
                Encoding::Ucs2 => (70, 67),
            };
            let naive = if units <= single { 1 } else { units.div_ceil(per_part) };
            prop_assert!(b.segments() as usize >= naive);
            prop_assert!(b.segments() as usize <= naive.max(units.div_ceil(per_part - 1)));
        }

        #[test]
        fn serde_round_trip_preserves_text_encoding_and_segments(text in "\\PC{1,400}") {
            prop_assume!(!text.trim().is_empty());
            let original = body(&text);
            let json = serde_json::to_string(&original).unwrap();
            let back: MessageBody = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, original);
        }
    }
}
