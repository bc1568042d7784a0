//! What the agent asks of a modem, in AT commands: initialise, send, read, delete, report.

use std::time::Duration;

use smsgate_shared::domain::{MessageBody, PhoneNumber};
use smsgate_shared::queue::edge::Registration;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::at::{AtError, AtSession, Urc};
use crate::pdu::encode_submit;

/// How long the modem may take to answer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Ordinary commands answer in milliseconds; seconds mean the modem hangs.
    pub command: Duration,
    /// `AT+CMGS` waits for the network to accept the part; 3GPP allows tens of seconds on a
    /// congested cell, so this is far longer than `command`.
    pub send: Duration,
}

/// Why a modem could not be initialised.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("the SIM asks for a PIN and SIM_PIN is not set")]
    PinRequired,
    #[error("the SIM asks for {0}; it needs a person (PUK, another SIM)")]
    SimLocked(String),
    #[error(transparent)]
    At(#[from] AtError),
}

/// Signal, registration and operator, as a heartbeat reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemStatus {
    pub signal: Option<u8>,
    pub registration: Registration,
    pub operator: Option<String>,
}

/// A message stored on the SIM: its index and PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPdu {
    pub index: u32,
    pub pdu: String,
}

/// An initialised modem. Holding one means echo is off, errors are numeric, the SIM is
/// unlocked, PDU mode is on and new messages and status reports are indicated.
pub struct Modem<L> {
    session: AtSession<L>,
    timeouts: Timeouts,
    next_concat_ref: u8,
}

impl<L: AsyncRead + AsyncWrite + Send + 'static> Modem<L> {
    pub async fn initialise(
        link: L,
        pin: Option<&str>,
        timeouts: Timeouts,
    ) -> Result<Modem<L>, InitError> {
        let mut session = AtSession::new(link);
        let t = timeouts.command;
        session.cancel_input().await?;
        // A modem that just powered up may swallow the first commands: try a few times.
        let mut ready = Err(AtError::Closed);
        for _ in 0..3 {
            ready = session.command("AT", t).await.map(drop);
            if ready.is_ok() {
                break;
            }
        }
        ready?;
        session.command("ATE0", t).await?;
        // Numeric error codes: the classification of +CMS errors needs the number, and the
        // verbose texts (AT+CMEE=2) differ from vendor to vendor.
        session.command("AT+CMEE=1", t).await?;
        let pin_state = session.command("AT+CPIN?", t).await?;
        match pin_state
            .iter()
            .find_map(|l| l.strip_prefix("+CPIN:"))
            .map(str::trim)
        {
            Some("READY") | None => {}
            Some("SIM PIN") => {
                let pin = pin.ok_or(InitError::PinRequired)?;
                session.command(&format!("AT+CPIN=\"{pin}\""), t).await?;
                info!("SIM unlocked with the configured PIN");
            }
            Some(other) => return Err(InitError::SimLocked(other.to_owned())),
        }
        session.command("AT+CMGF=0", t).await?;
        // mode 2: buffer indications while the link is busy; mt 1: store SMS on the SIM and
        // announce the index (+CMTI), so nothing received is lost while the broker is away;
        // ds 1: status reports as +CDS.
        session.command("AT+CNMI=2,1,0,1,0", t).await?;
        Ok(Modem {
            session,
            timeouts,
            next_concat_ref: rand_ref(),
        })
    }

    /// Sends every part of `body` to `to` and returns the part references, in order.
    /// A failure after some parts went out fails the whole message: the retry resends all
    /// parts under a new concatenation reference, so the handset never mixes two attempts.
    pub async fn send_sms(
        &mut self,
        to: &PhoneNumber,
        body: &MessageBody,
        status_report: bool,
    ) -> Result<Vec<u8>, AtError> {
        let concat_ref = self.next_concat_ref;
        self.next_concat_ref = self.next_concat_ref.wrapping_add(1);
        let mut references = Vec::new();
        for part in encode_submit(to, body, concat_ref, status_report) {
            references.push(self.session.send_pdu(&part, self.timeouts.send).await?);
        }
        Ok(references)
    }

    /// The PDU stored at `index`, `None` when the slot is empty.
    pub async fn read(&mut self, index: u32) -> Result<Option<String>, AtError> {
        match self
            .session
            .command(&format!("AT+CMGR={index}"), self.timeouts.command)
            .await
        {
            Ok(lines) => Ok(pdu_after_header(&lines, "+CMGR:")),
            // 321: invalid memory index, i.e. nothing stored there.
            Err(AtError::Cms {
                code: Some(321), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every message stored on the SIM, read or not (`AT+CMGL=4`).
    pub async fn list(&mut self) -> Result<Vec<StoredPdu>, AtError> {
        let lines = self
            .session
            .command("AT+CMGL=4", self.timeouts.command)
            .await?;
        Ok(parse_cmgl(lines))
    }

    pub async fn delete(&mut self, index: u32) -> Result<(), AtError> {
        self.session
            .command(&format!("AT+CMGD={index}"), self.timeouts.command)
            .await
            .map(drop)
    }

    /// A cheap "are you there": the agent sends it when the modem has been quiet too long.
    pub async fn probe(&mut self) -> Result<(), AtError> {
        self.session
            .command("AT", self.timeouts.command)
            .await
            .map(drop)
    }

    /// Signal (`AT+CSQ`), registration (`AT+CREG?`) and operator (`AT+COPS?`).
    pub async fn status(&mut self) -> Result<ModemStatus, AtError> {
        let t = self.timeouts.command;
        let csq = self.session.command("AT+CSQ", t).await?;
        let creg = self.session.command("AT+CREG?", t).await?;
        // Some modems answer ERROR to COPS? while searching: the operator is then unknown.
        let cops = match self.session.command("AT+COPS?", t).await {
            Ok(lines) => lines,
            Err(e) if e.needs_reset() => return Err(e),
            Err(e) => {
                debug!(error = %e, "operator unknown");
                Vec::new()
            }
        };
        Ok(ModemStatus {
            signal: parse_csq(&csq),
            registration: parse_creg(&creg),
            operator: parse_cops(&cops),
        })
    }

    pub async fn next_urc(&mut self) -> Result<Urc, AtError> {
        self.session.next_urc().await
    }
}

/// Starts concatenation references at a varying value, so a restarted agent does not
/// reuse the reference of the message it sent last (a handset could join them).
fn rand_ref() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos >> 8) as u8
}

/// `+CMGL: <index>,<stat>,[<alpha>],<length>` lines, each followed by its PDU line.
pub(crate) fn parse_cmgl(lines: Vec<String>) -> Vec<StoredPdu> {
    let mut stored = Vec::new();
    let mut lines = lines.into_iter();
    while let Some(line) = lines.next() {
        let Some(header) = line.strip_prefix("+CMGL:") else {
            continue;
        };
        let index = header.split(',').next().and_then(|i| i.trim().parse().ok());
        if let (Some(index), Some(pdu)) = (index, lines.next()) {
            stored.push(StoredPdu { index, pdu });
        }
    }
    stored
}

pub(crate) fn pdu_after_header(lines: &[String], header: &str) -> Option<String> {
    let at = lines.iter().position(|l| l.starts_with(header))?;
    lines.get(at + 1).filter(|l| !l.is_empty()).cloned()
}

/// `+CSQ: <rssi>,<ber>`: rssi 0..=31, 99 for unknown.
pub fn parse_csq(lines: &[String]) -> Option<u8> {
    let rest = lines.iter().find_map(|l| l.strip_prefix("+CSQ:"))?;
    let rssi: u8 = rest.split(',').next()?.trim().parse().ok()?;
    (rssi <= 31).then_some(rssi)
}

/// `+CREG: <n>,<stat>[,...]`.
pub fn parse_creg(lines: &[String]) -> Registration {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("+CREG:"))
        .and_then(|rest| rest.split(',').nth(1))
        .and_then(|stat| stat.trim().parse().ok())
        .map_or(Registration::Unknown, Registration::from_creg_stat)
}

/// `+COPS: <mode>,<format>,"<oper>"[,<AcT>]`; just `+COPS: 0` when not registered.
pub fn parse_cops(lines: &[String]) -> Option<String> {
    let rest = lines.iter().find_map(|l| l.strip_prefix("+COPS:"))?;
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_owned()).filter(|o| !o.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn heartbeat_answers_parse() {
        assert_eq!(parse_csq(&lines(&["+CSQ: 21,99"])), Some(21));
        assert_eq!(parse_csq(&lines(&["+CSQ: 99,99"])), None);
        assert_eq!(parse_creg(&lines(&["+CREG: 0,5"])), Registration::Roaming);
        assert_eq!(parse_creg(&lines(&["+CREG: 0"])), Registration::Unknown);
        assert_eq!(
            parse_cops(&lines(&["+COPS: 0,0,\"csl.\",7"])),
            Some("csl.".to_owned())
        );
        assert_eq!(parse_cops(&lines(&["+COPS: 0"])), None);
    }

    #[test]
    fn the_pdu_follows_the_cmgr_header() {
        assert_eq!(
            pdu_after_header(&lines(&["+CMGR: 0,,23", "0791AB"]), "+CMGR:"),
            Some("0791AB".to_owned())
        );
        assert_eq!(pdu_after_header(&lines(&[]), "+CMGR:"), None);
    }
}
