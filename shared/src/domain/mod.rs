//! Domain types. A value that exists is valid: each has one constructor that parses.

mod body;
mod phone;
mod status;

pub use body::{Encoding, MessageBody, MessageBodyError};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use status::{MessageStatus, Priority, RecipientStatus, StatusParseError, Tally};
