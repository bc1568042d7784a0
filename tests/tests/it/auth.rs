//! Login, tokens and account state.
