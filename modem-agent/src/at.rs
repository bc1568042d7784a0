//! The AT command session (3GPP TS 27.007 / 27.005 over V.250 framing): one command at a
//! time, final result codes, the `> ` prompt of `AT+CMGS`, and unsolicited result codes
//! (URCs) that can arrive at any moment, also in the middle of a command's response.
//!
//! The session never logs PDUs or command arguments: they carry phone numbers and text.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::{debug, instrument};

use crate::pdu::SubmitPart;

/// Why an AT exchange did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    #[error("serial I/O failed")]
    Io(#[from] io::Error),
    /// No final result code in time: the modem hangs, or the link is dead.
    #[error("{command} got no answer within {after:?}")]
    Timeout {
        command: &'static str,
        after: Duration,
    },
    /// Plain `ERROR` (no extended error reporting, or a syntax error).
    #[error("{command} answered ERROR")]
    Error { command: &'static str },
    /// `+CMS ERROR: <n>`, the message service's errors (TS 27.005 §3.2.5).
    #[error("{command} answered +CMS ERROR {code:?} {text}")]
    Cms {
        command: &'static str,
        code: Option<u16>,
        text: String,
    },
    /// `+CME ERROR: <n>`, the mobile equipment's errors (TS 27.007 §9.2).
    #[error("{command} answered +CME ERROR {code:?} {text}")]
    Cme {
        command: &'static str,
        code: Option<u16>,
        text: String,
    },
    /// The modem answered something the dialect does not allow here.
    #[error("{command}: unexpected answer")]
    Unexpected { command: &'static str },
    /// The serial link reached end of file (a USB modem unplugged).
    #[error("the serial link closed")]
    Closed,
}

impl AtError {
    /// True when the link itself is in doubt, so the session must be reset and the modem
    /// re-initialised: a timeout, an I/O error, a closed port.
    pub fn needs_reset(&self) -> bool {
        matches!(
            self,
            AtError::Io(_) | AtError::Timeout { .. } | AtError::Closed
        )
    }
}

/// An unsolicited result code the agent acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: "SM",3`: an SMS was stored at index 3.
    NewMessage { index: u32 },
    /// `+CMT: ,<len>` followed by the PDU: an SMS delivered without storing it.
    Deliver { pdu: String },
    /// `+CDS: <len>` followed by the PDU: a status report.
    StatusReport { pdu: String },
    /// `+CDSI: "SM",4`: a status report stored at index 4.
    StoredStatusReport { index: u32 },
}

/// A line of modem output, or the `> ` prompt that has no line end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Text(String),
    Prompt,
}

/// Longest line kept. The longest the dialect has is a PDU line: a 176-octet TPDU and its
/// SMSC address in hex, under 400 characters. A modem at the wrong baud rate (or line
/// noise) can send bytes with no line end at all; past this they are dropped, so memory
/// stays bounded whatever comes over the link.
pub(crate) const MAX_LINE: usize = 4096;

/// Splits the modem's byte stream into lines. Reading is cancel-safe: bytes read but not yet
/// a full line stay in the buffer, so `select!` can wait for URCs and drop the wait.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`]: dropping bytes up to its end.
    overlong: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(512),
            overlong: false,
        }
    }

    fn extract(&mut self) -> Option<Line> {
        if self.overlong {
            let end = self.buf.iter().position(|b| *b == b'\r' || *b == b'\n');
            self.buf.drain(..end.unwrap_or(self.buf.len()));
            self.overlong = end.is_none();
        }
        let start = self
            .buf
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(self.buf.len());
        self.buf.drain(..start);
        if self.buf.first() == Some(&b'>') {
            let take = if self.buf.get(1) == Some(&b' ') { 2 } else { 1 };
            self.buf.drain(..take);
            return Some(Line::Prompt);
        }
        let end = self.buf.iter().position(|b| *b == b'\r' || *b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..end).collect();
        Some(Line::Text(String::from_utf8_lossy(&line).trim().to_owned()))
    }

    async fn next(&mut self) -> Result<Line, AtError> {
        loop {
            if let Some(line) = self.extract() {
                return Ok(line);
            }
            let mut chunk = [0u8; 256];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return Err(AtError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() > MAX_LINE && !self.buf.iter().any(|b| *b == b'\r' || *b == b'\n') {
                debug!("dropping an overlong line of modem output");
                self.buf.clear();
                self.overlong = true;
            }
        }
    }

    /// Bytes buffered towards the next line.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What one line means while a command is running.
enum Parsed {
    Final(Result<(), AtError>),
    Urc(UrcHead),
    Info(String),
}

/// A URC line; `+CMT`/`+CDS` still need their PDU line.
enum UrcHead {
    Complete(Urc),
    NeedsPdu(fn(String) -> Urc),
    Ignored,
}

fn parse_line(line: &str, command: &'static str) -> Parsed {
    match line {
        "OK" => return Parsed::Final(Ok(())),
        "ERROR" | "NO CARRIER" => return Parsed::Final(Err(AtError::Error { command })),
        _ => {}
    }
    if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
        let (code, text) = error_code(rest);
        return Parsed::Final(Err(AtError::Cms {
            command,
            code,
            text,
        }));
    }
    if let Some(rest) = line.strip_prefix("+CME ERROR:") {
        let (code, text) = error_code(rest);
        return Parsed::Final(Err(AtError::Cme {
            command,
            code,
            text,
        }));
    }
    match parse_urc(line) {
        Some(head) => Parsed::Urc(head),
        None => Parsed::Info(line.to_owned()),
    }
}

/// Numeric (`AT+CMEE=1`) or verbose (`AT+CMEE=2`) error; verbose texts vary per vendor, so
/// only the number is used to classify.
fn error_code(rest: &str) -> (Option<u16>, String) {
    let rest = rest.trim();
    (rest.parse().ok(), rest.to_owned())
}

fn parse_urc(line: &str) -> Option<UrcHead> {
    let index_of = |rest: &str| rest.rsplit(',').next()?.trim().parse::<u32>().ok();
    if let Some(rest) = line.strip_prefix("+CMTI:") {
        return Some(match index_of(rest) {
            Some(index) => UrcHead::Complete(Urc::NewMessage { index }),
            None => UrcHead::Ignored,
        });
    }
    if let Some(rest) = line.strip_prefix("+CDSI:") {
        return Some(match index_of(rest) {
            Some(index) => UrcHead::Complete(Urc::StoredStatusReport { index }),
            None => UrcHead::Ignored,
        });
    }
    if line.starts_with("+CMT:") {
        return Some(UrcHead::NeedsPdu(|pdu| Urc::Deliver { pdu }));
    }
    if line.starts_with("+CDS:") {
        return Some(UrcHead::NeedsPdu(|pdu| Urc::StatusReport { pdu }));
    }
    // Ring, registration changes and vendor URCs (^RSSI, ^BOOT…): nothing to do.
    if line == "RING" || line.starts_with('^') || line.starts_with("+CREG:") && !line.contains(',')
    {
        return Some(UrcHead::Ignored);
    }
    None
}

/// Names a command for logs and errors without its arguments (which can be personal data).
fn command_name(cmd: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "AT+CMGS", "AT+CMGR", "AT+CMGL", "AT+CMGD", "AT+CMGF", "AT+CNMI", "AT+CPIN", "AT+CMEE",
        "AT+CSQ", "AT+CREG", "AT+COPS", "AT+CPMS", "AT+CSMS", "ATE0", "ATZ",
    ];
    KNOWN
        .iter()
        .find(|k| cmd.starts_with(**k))
        .copied()
        .unwrap_or("AT")
}

/// One AT session over a byte link (a serial port, or the simulator's pseudo-terminal).
pub struct AtSession<L> {
    reader: LineReader<ReadHalf<L>>,
    writer: WriteHalf<L>,
    urcs: VecDeque<Urc>,
    /// A `+CMT`/`+CDS` header whose PDU line has not arrived yet.
    pending_pdu: Option<fn(String) -> Urc>,
}

impl<L: AsyncRead + AsyncWrite + Send + 'static> AtSession<L> {
    pub fn new(link: L) -> Self {
        let (read, write) = tokio::io::split(link);
        AtSession {
            reader: LineReader::new(read),
            writer: write,
            urcs: VecDeque::new(),
            pending_pdu: None,
        }
    }

    /// Sends ESC, which ends a half-entered `AT+CMGS` PDU without sending it. A modem
    /// abandoned at the `> ` prompt (the agent timed out and reset) would otherwise take
    /// every later command as PDU text and seem dead.
    pub async fn cancel_input(&mut self) -> Result<(), AtError> {
        self.writer.write_all(&[0x1B]).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Runs `cmd` and returns its information lines once the modem answered `OK`.
    #[instrument(name = "modem.at_command", skip_all, fields(command = command_name(cmd)))]
    pub async fn command(&mut self, cmd: &str, timeout: Duration) -> Result<Vec<String>, AtError> {
        let name = command_name(cmd);
        self.writer.write_all(cmd.as_bytes()).await?;
        self.writer.write_all(b"\r").await?;
        self.writer.flush().await?;
        let read = async {
            let mut info = Vec::new();
            loop {
                match self.next_line(name).await? {
                    Parsed::Final(result) => return result.map(|()| info),
                    // With echo still on (before ATE0) the modem repeats the command.
                    Parsed::Info(line) if line.starts_with("AT") => {}
                    Parsed::Info(line) => info.push(line),
                    Parsed::Urc(_) => {}
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| AtError::Timeout {
                command: name,
                after: timeout,
            })?
    }

    /// Sends one SMS-SUBMIT with `AT+CMGS` and returns the message reference (TP-MR) the
    /// modem answered. `timeout` covers the network round trip, which takes seconds.
    #[instrument(name = "modem.at_command", skip_all, fields(command = "AT+CMGS"))]
    pub async fn send_pdu(&mut self, part: &SubmitPart, timeout: Duration) -> Result<u8, AtError> {
        const NAME: &str = "AT+CMGS";
        let exchange = async {
            self.writer
                .write_all(format!("AT+CMGS={}\r", part.tpdu_len).as_bytes())
                .await?;
            self.writer.flush().await?;
            loop {
                match self.reader.next().await? {
                    Line::Prompt => break,
                    Line::Text(line) => match parse_line(&line, NAME) {
                        Parsed::Final(Ok(())) => return Err(AtError::Unexpected { command: NAME }),
                        Parsed::Final(Err(e)) => return Err(e),
                        Parsed::Urc(head) => self.take_urc(head, NAME).await?,
                        Parsed::Info(_) => {}
                    },
                }
            }
            // Ctrl-Z ends the PDU.
            self.writer.write_all(part.hex.as_bytes()).await?;
            self.writer.write_all(&[0x1A]).await?;
            self.writer.flush().await?;
            let mut reference = None;
            loop {
                match self.next_line(NAME).await? {
                    Parsed::Final(Ok(())) => {
                        return reference.ok_or(AtError::Unexpected { command: NAME })
                    }
                    Parsed::Final(Err(e)) => return Err(e),
                    Parsed::Info(line) => {
                        if let Some(mr) = line.strip_prefix("+CMGS:") {
                            reference = mr
                                .trim()
                                .split(',')
                                .next()
                                .and_then(|v| v.trim().parse::<u16>().ok())
                                .map(|v| v as u8);
                        }
                    }
                    Parsed::Urc(_) => {}
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AtError::Timeout {
                command: NAME,
                after: timeout,
            })?
    }

    /// The next URC: one that arrived during a command, or the next one from the link.
    /// Cancel-safe, so the agent can wait for it in a `select!` beside its other work.
    pub async fn next_urc(&mut self) -> Result<Urc, AtError> {
        loop {
            if let Some(urc) = self.urcs.pop_front() {
                return Ok(urc);
            }
            match self.reader.next().await? {
                Line::Prompt => {}
                Line::Text(line) => {
                    if let Some(make) = self.pending_pdu.take() {
                        return Ok(make(line));
                    }
                    match parse_urc(&line) {
                        Some(UrcHead::Complete(urc)) => return Ok(urc),
                        Some(UrcHead::NeedsPdu(make)) => self.pending_pdu = Some(make),
                        // A stray final result or info line while idle: nothing waits for it.
                        Some(UrcHead::Ignored) | None => debug!("ignoring idle modem output"),
                    }
                }
            }
        }
    }

    /// Reads a line during a command, queueing any URC (with its PDU line) for later.
    async fn next_line(&mut self, command: &'static str) -> Result<Parsed, AtError> {
        loop {
            let Line::Text(line) = self.reader.next().await? else {
                continue;
            };
            if let Some(make) = self.pending_pdu.take() {
                self.urcs.push_back(make(line));
                continue;
            }
            match parse_line(&line, command) {
                Parsed::Urc(head) => {
                    self.take_urc(head, command).await?;
                    return Ok(Parsed::Urc(UrcHead::Ignored));
                }
                other => return Ok(other),
            }
        }
    }

    async fn take_urc(&mut self, head: UrcHead, _command: &'static str) -> Result<(), AtError> {
        match head {
            UrcHead::Complete(urc) => self.urcs.push_back(urc),
            UrcHead::NeedsPdu(make) => {
                if let Line::Text(pdu) = self.reader.next().await? {
                    self.urcs.push_back(make(pdu));
                }
            }
            UrcHead::Ignored => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    async fn session_with(script: &'static [u8]) -> (AtSession<DuplexStream>, DuplexStream) {
        let (ours, mut theirs) = duplex(4096);
        theirs.write_all(script).await.unwrap();
        (AtSession::new(ours), theirs)
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn info_lines_are_returned_and_echo_is_skipped() {
        let (mut s, _m) = session_with(b"AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\nOK\r\n").await;
        assert_eq!(
            s.command("AT+CSQ", SHORT).await.unwrap(),
            vec!["+CSQ: 21,99"]
        );
    }

    #[tokio::test]
    async fn cms_and_cme_errors_carry_their_numeric_code() {
        let (mut s, _m) = session_with(b"\r\n+CMS ERROR: 38\r\n").await;
        match s.command("AT+CMGR=1", SHORT).await {
            Err(AtError::Cms {
                code: Some(38),
                command: "AT+CMGR",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let (mut s, _m) = session_with(b"\r\n+CME ERROR: SIM PIN required\r\n").await;
        match s.command("AT+CMGF=0", SHORT).await {
            Err(AtError::Cme {
                code: None, text, ..
            }) => assert_eq!(text, "SIM PIN required"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_modem_times_out_and_asks_for_a_reset() {
        let (mut s, _m) = session_with(b"").await;
        let err = s.command("AT", SHORT).await.unwrap_err();
        assert!(matches!(err, AtError::Timeout { command: "AT", .. }));
        assert!(err.needs_reset());
    }

    #[tokio::test]
    async fn urcs_arriving_mid_command_are_kept_for_later() {
        let (mut s, _m) = session_with(
            b"\r\n+CMTI: \"SM\",4\r\n\r\n+CDS: 25\r\n0006...\r\n+CSQ: 10,0\r\n\r\nOK\r\n",
        )
        .await;
        assert_eq!(
            s.command("AT+CSQ", SHORT).await.unwrap(),
            vec!["+CSQ: 10,0"]
        );
        assert_eq!(s.next_urc().await.unwrap(), Urc::NewMessage { index: 4 });
        assert_eq!(
            s.next_urc().await.unwrap(),
            Urc::StatusReport {
                pdu: "0006...".into()
            }
        );
    }

    #[tokio::test]
    async fn cmgs_waits_for_the_prompt_then_returns_the_reference() {
        let (ours, mut modem) = duplex(4096);
        let mut s = AtSession::new(ours);
        let fake = tokio::spawn(async move {
            let mut buf = vec![0u8; 256];
            let n = modem.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"AT+CMGS=23\r");
            modem.write_all(b"\r\n> ").await.unwrap();
            let mut pdu = Vec::new();
            while !pdu.ends_with(&[0x1A]) {
                let n = modem.read(&mut buf).await.unwrap();
                pdu.extend_from_slice(&buf[..n]);
            }
            modem
                .write_all(b"\r\n+CMGS: 201\r\n\r\nOK\r\n")
                .await
                .unwrap();
            pdu
        });
        let part = SubmitPart {
            hex: "0011".into(),
            tpdu_len: 23,
        };
        assert_eq!(s.send_pdu(&part, SHORT).await.unwrap(), 201);
        assert_eq!(fake.await.unwrap(), b"0011\x1A");
    }

    #[tokio::test]
    async fn cmgs_refused_before_the_prompt_is_an_error() {
        let (mut s, _m) = session_with(b"\r\n+CMS ERROR: 304\r\n").await;
        let part = SubmitPart {
            hex: "00".into(),
            tpdu_len: 1,
        };
        assert!(matches!(
            s.send_pdu(&part, SHORT).await,
            Err(AtError::Cms {
                code: Some(304),
                ..
            })
        ));
    }

    #[tokio::test]
    async fn an_endless_line_is_dropped_and_memory_stays_bounded() {
        let (ours, mut modem) = duplex(64 * 1024);
        let mut s = AtSession::new(ours);
        let feed = tokio::spawn(async move {
            let noise = vec![b'A'; 1024];
            for _ in 0..1024 {
                modem.write_all(&noise).await.unwrap();
            }
            modem
                .write_all(b"TAIL\r\n+CSQ: 9,99\r\nOK\r\n")
                .await
                .unwrap();
            modem
        });
        // 1 MiB with no line end, then a real answer: the tail of the long line is not
        // taken for a line of its own.
        let lines = s.command("AT+CSQ", Duration::from_secs(5)).await.unwrap();
        assert_eq!(lines, vec!["+CSQ: 9,99"]);
        assert!(s.reader.buffered() <= MAX_LINE);
        assert!(s.reader.buf.capacity() <= 2 * MAX_LINE + 256);
        drop(feed.await.unwrap());
    }

    #[tokio::test]
    async fn an_unplugged_modem_closes_the_session() {
        let (ours, theirs) = duplex(64);
        drop(theirs);
        let mut s = AtSession::new(ours);
        let err = s.next_urc().await.unwrap_err();
        assert!(
            matches!(err, AtError::Closed) || matches!(err, AtError::Io(_)),
            "{err:?}"
        );
    }
}
