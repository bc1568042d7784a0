//! Administration shared by the web panel and the JSON admin API: users (create, password,
//! enable/disable, admin flag, sending limits, delete, API tokens), dead letters and the
//! audit log.
//! No HTTP types here; both front ends call these functions and map the errors.

pub mod audit;
pub mod dead_letters;
pub mod limits;
pub mod password;
pub mod repo;
pub mod users;
