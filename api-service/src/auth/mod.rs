//! Who is calling: password login, JWTs, per-user API tokens and the default admin.

mod credentials;
mod extract;
mod gate;
pub mod repo;
mod routes;
mod sender;
pub mod service;
mod settings;
pub mod throttle;

pub use credentials::{
    hash_password, verify_password, ApiToken, JwtKeys, VerifiedJwt, MAX_PASSWORD_BYTES,
};
pub use extract::{bearer_token, tcp_peer, AdminUser, AuthSender, AuthUser, ClientAddress};
pub use gate::{Busy, GateError, PasswordGate};
pub use routes::router;
pub use sender::{confirm_sender, SendCredential, TokenOwners};
pub use settings::LoginSettings;
