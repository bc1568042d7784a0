//! Who is calling: password login, JWTs, per-user API tokens and the default admin, and
//! the one login throttle.

mod credentials;
mod gate;
pub mod repo;
mod sender;
pub mod service;
pub mod sessions;
mod settings;
pub mod throttle;

pub use credentials::{
    hash_password, token_digest, verify_password, ApiToken, JwtKeys, VerifiedJwt,
    MAX_PASSWORD_BYTES,
};
pub use gate::{Busy, GateError, PasswordGate};
pub use sender::{confirm_sender, SendCredential, TokenOwners};
pub use settings::LoginSettings;
