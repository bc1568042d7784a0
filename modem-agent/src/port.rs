//! The byte link to the modem, behind a trait: the agent opens a serial device, the tests'
//! modem simulator hands out its pseudo-terminal.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::SerialPortBuilderExt;

/// Something that can (re)open a link to a modem. The agent calls `open` at start and again
/// whenever the modem stopped answering: reopening is the reset a hung USB modem needs
/// (the device node reappears once the modem re-enumerates).
pub trait ModemPort: Send + Sync + 'static {
    type Link: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    fn open(&self) -> impl Future<Output = io::Result<Self::Link>> + Send;

    /// What to call the port in logs (a device path, never anything personal).
    fn describe(&self) -> String;
}

/// A real serial device such as `/dev/ttyUSB2` or `/dev/serial/by-id/...`.
#[derive(Debug, Clone)]
pub struct SerialDevice {
    pub path: String,
    pub baud: u32,
}

impl ModemPort for SerialDevice {
    type Link = tokio_serial::SerialStream;

    async fn open(&self) -> io::Result<Self::Link> {
        // Exclusive (TIOCEXCL + flock, the builder's default), so a second agent or
        // ModemManager cannot interleave its own AT commands with ours.
        tokio_serial::new(&self.path, self.baud)
            .exclusive(true)
            .open_native_async()
            .map_err(io::Error::from)
    }

    fn describe(&self) -> String {
        format!("{} at {} baud", self.path, self.baud)
    }
}
