//! Secrets at rest and on the wire: argon2id password hashes, HS256 JWTs and API tokens
//! that are stored only as SHA-256 hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest password accepted anywhere (login, change, reset), in bytes. Checked before any
/// hashing: argon2 would otherwise be handed whatever a request body can carry.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a password with argon2id and a random salt (PHC string format).
/// CPU-heavy by design: call it from `spawn_blocking`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// True when `password` matches the stored PHC hash. A malformed hash never matches.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A freshly issued API token. The plain text exists only until it is shown once.
pub struct ApiToken {
    pub plain: String,
    pub hash: Vec<u8>,
}

impl ApiToken {
    /// Prefix that makes leaked tokens easy to recognise (secret scanners, logs).
    const PREFIX: &'static str = "sgk_";

    /// 256 random bits, base64url, with the recognisable prefix.
    pub fn generate() -> ApiToken {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let plain = format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let hash = Self::hash(&plain);
        ApiToken { plain, hash }
    }

    /// The lookup key stored in `api_tokens.token_hash` ([`token_digest`]).
    pub fn hash(plain: &str) -> Vec<u8> {
        token_digest(plain)
    }
}

/// The lookup key a random token is stored under (API tokens, panel sessions): its
/// SHA-256, so a copy of the table opens nothing. A fast hash is right here: the token is
/// 256 random bits, so there is nothing to brute-force.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Claims of the access tokens `POST /api/auth/login` issues.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string per RFC 7519.
    pub sub: String,
    pub username: String,
    pub iat: i64,
    pub exp: i64,
    /// The user's `credentials_epoch` at issue. A password change or reset bumps it, which
    /// ends this token. Tokens from before the claim existed count as epoch 0.
    #[serde(default)]
    pub cep: i32,
}

/// What a valid JWT says: whose it is and under which credentials epoch it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedJwt {
    pub user_id: i64,
    pub epoch: i32,
}

/// HS256 signing and verification keys, made once from JWT_SECRET_KEY.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub lifetime: chrono::Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], lifetime: chrono::Duration) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime,
        }
    }

    /// A signed token for a user whose credentials were never changed (epoch 0); for a
    /// token that must keep working, use [`Self::issue_with_epoch`] with the user's epoch.
    pub fn issue(&self, user_id: i64, username: &str) -> anyhow::Result<String> {
        self.issue_with_epoch(user_id, username, 0)
    }

    /// A signed token for `user_id` under credentials `epoch`, valid for `lifetime` from now.
    pub fn issue_with_epoch(
        &self,
        user_id: i64,
        username: &str,
        epoch: i32,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now();
        let claims = Claims {
            sub: user_id.to_string(),
            username: username.to_owned(),
            iat: now.timestamp(),
            exp: (now + self.lifetime).timestamp(),
            cep: epoch,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid, unexpired token signed with our key; `None` otherwise. The
    /// caller still compares the epoch with the user's.
    pub fn verify(&self, token: &str) -> Option<VerifiedJwt> {
        let validation = Validation::new(Algorithm::HS256);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(VerifiedJwt {
            user_id: data.claims.sub.parse().ok()?,
            epoch: data.claims.cep,
        })
    }
}

/// JWTs have exactly two dots; our API tokens (base64url with a prefix) have none.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("SMSpass#12").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("SMSpass#12", &hash));
        assert!(!verify_password("SMSpass#13", &hash));
        assert!(!verify_password("SMSpass#12", "not a hash"));
    }

    #[test]
    fn api_tokens_are_random_and_hash_deterministically() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a.plain, b.plain);
        assert_eq!(ApiToken::hash(&a.plain), a.hash);
        assert_eq!(a.hash.len(), 32);
        assert!(!looks_like_jwt(&a.plain));
    }

    #[test]
    fn a_jwt_round_trips_and_a_foreign_one_is_refused() {
        let keys = JwtKeys::new(b"secret-one", chrono::Duration::hours(24));
        let token = keys.issue_with_epoch(42, "alice", 3).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(
            keys.verify(&token),
            Some(VerifiedJwt {
                user_id: 42,
                epoch: 3
            })
        );
        let other = JwtKeys::new(b"secret-two", chrono::Duration::hours(24));
        assert_eq!(other.verify(&token), None);
    }

    #[test]
    fn an_expired_jwt_is_refused() {
        let keys = JwtKeys::new(b"secret", chrono::Duration::hours(-2));
        let token = keys.issue(1, "bob").unwrap();
        assert_eq!(keys.verify(&token), None);
    }
}
