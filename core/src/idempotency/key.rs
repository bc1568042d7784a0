//! The `Idempotency-Key` a client sends, parsed at the edge.

/// The header a client names a request with, so that a retry can't send twice.
pub const HEADER: &str = "idempotency-key";

/// A client's name for one request: 1 to 255 visible ASCII characters (a UUID fits, as do
/// the keys Stripe's and the IETF draft's clients generate). Holding one is proof it parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("Idempotency-Key must not be empty")]
    Empty,
    #[error("Idempotency-Key is {0} characters long; at most {max} are allowed", max = IdempotencyKey::MAX_LEN)]
    TooLong(usize),
    #[error("Idempotency-Key may only contain visible ASCII characters (no spaces)")]
    InvalidCharacter,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<IdempotencyKey, IdempotencyKeyError> {
        if raw.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyKeyError::InvalidCharacter);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(IdempotencyKeyError::TooLong(raw.len()));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuids_and_short_tokens_parse() {
        for raw in [
            "7f3c1d2e-9b8a-4c5d-8e7f-0a1b2c3d4e5f",
            "a",
            "order-42:retry",
        ] {
            assert_eq!(IdempotencyKey::parse(raw).unwrap().as_str(), raw);
        }
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }

    #[test]
    fn empty_long_and_non_ascii_keys_are_refused_with_a_reason() {
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::TooLong(256))
        );
        for raw in ["has space", "tab\there", "café", "new\nline"] {
            assert_eq!(
                IdempotencyKey::parse(raw),
                Err(IdempotencyKeyError::InvalidCharacter),
                "{raw:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_key_parses_exactly_when_it_is_1_to_255_visible_ascii(raw in "\\PC{0,300}") {
            let valid = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(IdempotencyKey::parse(&raw).is_ok(), valid);
        }
    }
}
