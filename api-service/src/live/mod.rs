//! Live status for the edge gateway's clients: Socket.IO `sms_status_update` events, fed
//! by `smsgate_core::live`.

mod sockets;

pub use sockets::{status_sockets, STATUS_EVENT};
