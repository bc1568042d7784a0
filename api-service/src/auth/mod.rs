//! Who is calling: password login, JWTs, per-user API tokens and the default admin.

mod credentials;
mod extract;
pub mod repo;
mod routes;
mod sender;
pub mod service;

pub use credentials::{hash_password, verify_password, ApiToken, JwtKeys};
pub use extract::{bearer_token, AuthSender, AuthUser};
pub use routes::router;
pub use sender::{confirm_sender, SendCredential, TokenOwners};
