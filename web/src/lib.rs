//! The staff web panel. Its pages (login, compose, history, live detail, administration)
//! are issue #3; the crate exists now so the workspace has its final shape and the API
//! service's dependency on it is in place.
