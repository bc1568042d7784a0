//! Secrets the processes must read back (webhook signing keys), encrypted at rest.
//!
//! XChaCha20-Poly1305 (AEAD) under keys from the environment (`WEBHOOK_SECRET_KEYS`): a
//! random 192-bit nonce per encryption, and associated data that names the row a secret
//! belongs to, so a ciphertext copied to another row does not open there. The stored form
//! names the key it was sealed under, so keys can rotate:
//!
//! ```text
//! v1:<key id>:<base64 of nonce || ciphertext || tag>
//! ```
//!
//! The first key of a [`SecretBox`] seals; every key opens what was sealed under its id.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::config::ConfigError;

/// Version tag of the stored form; a new layout gets a new tag.
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Key ids end up in every stored secret: short, and without the form's `:` separator.
const MAX_KEY_ID_LEN: usize = 32;

/// A keyring that seals with its first key and opens with any. Cheap to clone; its
/// `Debug` shows key ids only.
#[derive(Clone)]
pub struct SecretBox {
    keys: Arc<[(String, XChaCha20Poly1305)]>,
}

/// Why a key list was refused; names the entry (by position and id), never its bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyListError {
    #[error(
        "no key given; expected one or more `key_id:base64-of-32-bytes` entries, comma-separated"
    )]
    Empty,
    #[error("entry {position} is not `key_id:base64-of-32-bytes`")]
    Malformed { position: usize },
    #[error("entry {position}: key id `{id}` must be 1 to 32 letters, digits, `-` or `_`")]
    BadKeyId { position: usize, id: String },
    #[error("key `{id}` is not valid base64")]
    NotBase64 { id: String },
    #[error("key `{id}` is {len} bytes; it must be exactly 32 (e.g. `openssl rand -base64 32`)")]
    WrongLength { id: String, len: usize },
    #[error("key id `{id}` is given twice")]
    DuplicateId { id: String },
}

/// Why a stored secret did not open. Never carries the secret or the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the stored value is not an encrypted secret (plain text, or a format this version does not know)")]
    NotSealed,
    #[error("the stored value is sealed under key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("the stored value was altered, belongs to another row, or key `{0}` is not the key it was sealed with")]
    Tampered(String),
}

impl SecretBox {
    /// Parses `key_id:base64,key_id:base64,…` (whitespace around entries is ignored); the
    /// first entry is the key that seals.
    pub fn parse(list: &str) -> Result<SecretBox, KeyListError> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for (index, entry) in list.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            if entry.is_empty() {
                if list.trim().is_empty() {
                    return Err(KeyListError::Empty);
                }
                return Err(KeyListError::Malformed { position });
            }
            let (id, encoded) = entry
                .split_once(':')
                .ok_or(KeyListError::Malformed { position })?;
            if !valid_key_id(id) {
                return Err(KeyListError::BadKeyId {
                    position,
                    id: id.to_owned(),
                });
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(KeyListError::DuplicateId { id: id.to_owned() });
            }
            let bytes = BASE64
                .decode(encoded.trim())
                .map_err(|_| KeyListError::NotBase64 { id: id.to_owned() })?;
            if bytes.len() != KEY_LEN {
                return Err(KeyListError::WrongLength {
                    id: id.to_owned(),
                    len: bytes.len(),
                });
            }
            keys.push((
                id.to_owned(),
                XChaCha20Poly1305::new(Key::from_slice(&bytes)),
            ));
        }
        Ok(SecretBox { keys: keys.into() })
    }

    /// The id of the key that seals.
    pub fn primary_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Encrypts `secret` under the first key, bound to `context` (which must be given
    /// again to open it). A fresh random nonce each time: sealing twice gives two values.
    pub fn seal(&self, secret: &str, context: &[u8]) -> String {
        let (id, cipher) = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{VERSION}:{id}:{}", BASE64.encode(blob))
    }

    /// Decrypts a value [`seal`](Self::seal) made, with the key its id names and the same
    /// `context`.
    pub fn open(&self, stored: &str, context: &[u8]) -> Result<String, OpenError> {
        let (id, blob) = split_sealed(stored).ok_or(OpenError::NotSealed)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let tampered = || OpenError::Tampered(id.to_owned());
        let blob = BASE64.decode(blob).map_err(|_| tampered())?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(tampered());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| tampered())?;
        String::from_utf8(plain).map_err(|_| tampered())
    }

    /// The prefix of every value sealed under the first key, for finding the rest in SQL.
    pub fn sealed_prefix(&self) -> String {
        format!("{VERSION}:{}:", self.primary_key_id())
    }

    /// Whether `stored` should be sealed again: plain text, or sealed under a key other
    /// than the first (a rotation in progress).
    pub fn needs_resealing(&self, stored: &str) -> bool {
        split_sealed(stored).is_none_or(|(id, _)| id != self.primary_key_id())
    }
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SecretBox")
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// The setting both the API and the dispatchers read their webhook keys from.
pub const WEBHOOK_SECRET_KEYS: &str = "WEBHOOK_SECRET_KEYS";

/// `WEBHOOK_SECRET_KEYS`, required in every environment: a development key made up at
/// start would leave every stored secret unreadable after a restart, and a fixed one
/// would be no encryption at all. `make up` writes a random key into `.env`.
pub fn webhook_keys_from_env() -> Result<SecretBox, ConfigError> {
    let list = crate::config::var(WEBHOOK_SECRET_KEYS).ok_or_else(|| {
        ConfigError::new(
            WEBHOOK_SECRET_KEYS,
            "is required: the key that encrypts webhook secrets at rest, as `key_id:base64-of-32-bytes`, \
             e.g. WEBHOOK_SECRET_KEYS=k1:$(openssl rand -base64 32) (`make up` writes one into .env)",
        )
    })?;
    SecretBox::parse(&list).map_err(|e| ConfigError::new(WEBHOOK_SECRET_KEYS, e.to_string()))
}

/// The WEBHOOK_SECRET_KEYS of tests, one key with id `test` (it is in this file: it
/// protects nothing).
pub const TEST_KEY_LIST: &str = "test:VGVzdCBrZXkgLSBub3QgYSBzZWNyZXQgLSAzMiBieXQ=";

/// [`TEST_KEY_LIST`], parsed.
pub fn test_keys() -> SecretBox {
    SecretBox::parse(TEST_KEY_LIST).expect("the test key parses")
}

/// The associated data of a webhook's signing secret: the API seals and the dispatcher
/// opens with it, so a secret only opens in the row it was written to.
pub fn webhook_secret_context(webhook_id: i64) -> Vec<u8> {
    format!("smsgate.webhooks.secret:{webhook_id}").into_bytes()
}

/// `(key id, base64 blob)` of a value in the stored form; `None` for anything else.
fn split_sealed(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix(VERSION)?.strip_prefix(':')?;
    let (id, blob) = rest.split_once(':')?;
    valid_key_id(id).then_some((id, blob))
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="; // bytes 32..64

    fn keyring(list: &str) -> SecretBox {
        SecretBox::parse(list).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_with_its_context_and_hides_the_plain_text() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let sealed = keys.seal("whsec_abc", &webhook_secret_context(7));
        assert!(sealed.starts_with("v1:k1:"), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            keys.open(&sealed, &webhook_secret_context(7)).unwrap(),
            "whsec_abc"
        );
    }

    #[test]
    fn sealing_twice_uses_a_fresh_nonce() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let context = webhook_secret_context(1);
        assert_ne!(keys.seal("same", &context), keys.seal("same", &context));
    }

    #[test]
    fn a_secret_moved_to_another_row_does_not_open() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let sealed = keys.seal("whsec_abc", &webhook_secret_context(7));
        assert_eq!(
            keys.open(&sealed, &webhook_secret_context(8)),
            Err(OpenError::Tampered("k1".into()))
        );
    }

    #[test]
    fn an_altered_ciphertext_does_not_open() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let context = webhook_secret_context(7);
        let sealed = keys.seal("whsec_abc", &context);
        let (head, blob) = sealed.rsplit_once(':').unwrap();
        let mut bytes = BASE64.decode(blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{head}:{}", BASE64.encode(&bytes));
        assert_eq!(
            keys.open(&altered, &context),
            Err(OpenError::Tampered("k1".into()))
        );
        assert_eq!(
            keys.open("v1:k1:bm90IGVub3VnaA==", &context),
            Err(OpenError::Tampered("k1".into()))
        );
        assert_eq!(
            keys.open("v1:k1:%%%", &context),
            Err(OpenError::Tampered("k1".into()))
        );
    }

    #[test]
    fn a_wrong_or_missing_key_is_named_in_the_error() {
        let old = keyring(&format!("k1:{KEY_A}"));
        let context = webhook_secret_context(3);
        let sealed = old.seal("whsec_abc", &context);
        assert_eq!(
            keyring(&format!("k2:{KEY_B}")).open(&sealed, &context),
            Err(OpenError::UnknownKey("k1".into()))
        );
        // The same id with other bytes: the key was replaced instead of rotated.
        assert_eq!(
            keyring(&format!("k1:{KEY_B}")).open(&sealed, &context),
            Err(OpenError::Tampered("k1".into()))
        );
    }

    #[test]
    fn plain_text_is_not_taken_for_a_sealed_secret() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let context = webhook_secret_context(3);
        for stored in [
            "whsec_abc",
            "",
            "v1:",
            "v1:k1",
            "v2:k1:AAAA",
            "v1:bad id:AAAA",
        ] {
            assert_eq!(
                keys.open(stored, &context),
                Err(OpenError::NotSealed),
                "{stored}"
            );
        }
    }

    #[test]
    fn rotation_opens_old_secrets_and_seals_under_the_first_key() {
        let old = keyring(&format!("k1:{KEY_A}"));
        let rotated = keyring(&format!("k2:{KEY_B}, k1:{KEY_A}"));
        let context = webhook_secret_context(9);
        let sealed_old = old.seal("whsec_abc", &context);
        assert!(rotated.needs_resealing(&sealed_old));
        assert!(rotated.needs_resealing("whsec_plain"));
        assert_eq!(rotated.open(&sealed_old, &context).unwrap(), "whsec_abc");
        let sealed_new = rotated.seal("whsec_abc", &context);
        assert!(sealed_new.starts_with(&rotated.sealed_prefix()));
        assert!(!sealed_old.starts_with(&rotated.sealed_prefix()));
        assert!(!rotated.needs_resealing(&sealed_new));
        assert_eq!(rotated.primary_key_id(), "k2");
    }

    #[test]
    fn bad_key_lists_name_the_entry_and_never_the_key() {
        assert_eq!(SecretBox::parse("").unwrap_err(), KeyListError::Empty);
        assert_eq!(SecretBox::parse("  ").unwrap_err(), KeyListError::Empty);
        assert_eq!(
            SecretBox::parse(&format!("k1:{KEY_A},")).unwrap_err(),
            KeyListError::Malformed { position: 2 }
        );
        assert_eq!(
            SecretBox::parse(KEY_A).unwrap_err(),
            KeyListError::Malformed { position: 1 }
        );
        assert_eq!(
            SecretBox::parse(&format!("k:1:{KEY_A}")).unwrap_err(),
            KeyListError::NotBase64 { id: "k".into() }
        );
        assert_eq!(
            SecretBox::parse(&format!("bad id:{KEY_A}")).unwrap_err(),
            KeyListError::BadKeyId {
                position: 1,
                id: "bad id".into()
            }
        );
        assert_eq!(
            SecretBox::parse("k1:c2hvcnQ=").unwrap_err(),
            KeyListError::WrongLength {
                id: "k1".into(),
                len: 5
            }
        );
        assert_eq!(
            SecretBox::parse(&format!("k1:{KEY_A},k1:{KEY_B}")).unwrap_err(),
            KeyListError::DuplicateId { id: "k1".into() }
        );
        let error = SecretBox::parse("k1:!!notbase64!!")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("k1") && !error.contains("notbase64"),
            "{error}"
        );
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let keys = keyring(&format!("k2:{KEY_B},k1:{KEY_A}"));
        let shown = format!("{keys:?}");
        assert!(shown.contains("k2") && shown.contains("k1"), "{shown}");
        assert!(!shown.contains(KEY_A) && !shown.contains(KEY_B), "{shown}");
    }
}
