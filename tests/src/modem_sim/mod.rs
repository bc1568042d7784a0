//! A GSM modem simulator over a pseudo-terminal, speaking the AT dialect the modem agent
//! uses (3GPP TS 27.007/27.005, PDU mode). Tests run the real agent against it: the agent
//! opens the pty's slave side with tokio-serial, exactly as it opens `/dev/ttyUSB2`.
//!
//! It accepts SMS-SUBMIT PDUs and answers `+CMGS` with references, and can be told to fail
//! sends with a `+CMS ERROR`, to go silent (until the agent reopens the port, as a hung USB
//! modem recovers when it is reset), to receive SMS (stored on its "SIM" and announced with
//! `+CMTI`, concatenated ones as several parts) and to emit `+CDS` delivery reports.

mod harness;

pub use harness::{eventually, remember_sim_login, sim_login, EdgeApp};

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use smsgate_modem_agent::pdu::{self, Submit};
use smsgate_modem_agent::ModemPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::{ClearBuffer, SerialPort, SerialPortBuilderExt, SerialStream};

/// One SMS part the simulated network accepted.
#[derive(Debug, Clone)]
pub struct SentPart {
    pub reference: u8,
    pub submit: Submit,
    /// When the simulated network accepted it (spacing tests measure the gaps).
    pub at: std::time::Instant,
}

#[derive(Debug)]
struct State {
    echo: bool,
    silent: bool,
    fail_sends: VecDeque<u16>,
    auto_reports: bool,
    pin: Option<String>,
    unlocked: bool,
    next_reference: u8,
    next_concat_ref: u8,
    sent: Vec<SentPart>,
    storage: BTreeMap<u32, String>,
    opens: u32,
    commands: Vec<String>,
}

/// A running simulated modem. Cheap to clone; every clone controls the same modem.
#[derive(Clone)]
pub struct ModemSim {
    state: Arc<Mutex<State>>,
    slave_path: String,
    urcs: mpsc::UnboundedSender<String>,
    _task: Arc<TaskGuard>,
}

/// Aborts the simulator's task when the last clone goes; holds the pty's own slave fd.
struct TaskGuard {
    task: tokio::task::JoinHandle<()>,
    _slave: SerialStream,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModemSim {
    /// Starts a modem whose SIM needs no PIN.
    pub fn start() -> io::Result<ModemSim> {
        ModemSim::start_with_pin(None)
    }

    /// Starts a modem whose SIM asks for `pin` at every power-up.
    pub fn start_with_pin(pin: Option<&str>) -> io::Result<ModemSim> {
        let (master, slave) = SerialStream::pair().map_err(io::Error::from)?;
        let slave_path = slave
            .name()
            .ok_or_else(|| io::Error::other("the pty has no slave name"))?;
        let state = Arc::new(Mutex::new(State {
            echo: true,
            silent: false,
            fail_sends: VecDeque::new(),
            auto_reports: false,
            pin: pin.map(str::to_owned),
            unlocked: pin.is_none(),
            next_reference: 1,
            next_concat_ref: 1,
            sent: Vec::new(),
            storage: BTreeMap::new(),
            opens: 0,
            commands: Vec::new(),
        }));
        let (urcs, urc_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(master, state.clone(), urc_rx, urcs.clone()));
        // The pair's own slave fd stays open for the simulator's lifetime, so the pty lives
        // on while the agent closes and reopens its side.
        Ok(ModemSim {
            state,
            slave_path,
            urcs,
            _task: Arc::new(TaskGuard {
                task,
                _slave: slave,
            }),
        })
    }

    /// The pty the agent opens, e.g. `/dev/pts/7`.
    pub fn device_path(&self) -> &str {
        &self.slave_path
    }

    /// Stops answering anything until the port is reopened (the agent's reset).
    pub fn go_silent(&self) {
        self.state.lock().unwrap().silent = true;
    }

    pub fn is_silent(&self) -> bool {
        self.state.lock().unwrap().silent
    }

    /// The next sends fail with these `+CMS ERROR` codes, one per send attempt.
    pub fn fail_next_sends(&self, codes: &[u16]) {
        self.state.lock().unwrap().fail_sends.extend(codes);
    }

    /// Emit a `+CDS` "delivered" report shortly after every accepted part.
    pub fn auto_delivery_reports(&self, on: bool) {
        self.state.lock().unwrap().auto_reports = on;
    }

    /// Every part accepted so far, in order.
    pub fn sent(&self) -> Vec<SentPart> {
        self.state.lock().unwrap().sent.clone()
    }

    /// SMS parts currently stored on the simulated SIM.
    pub fn stored(&self) -> usize {
        self.state.lock().unwrap().storage.len()
    }

    /// How often the port was opened (1 at start, +1 per reset).
    pub fn opens(&self) -> u32 {
        self.state.lock().unwrap().opens
    }

    /// Command names received (arguments cut off), for assertions on the dialect.
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().commands.clone()
    }

    /// The network delivers an SMS: its parts are stored and each announced with `+CMTI`
    /// (unless the modem is silent; a sweep after the reset finds them).
    pub fn receive_sms(&self, from: &str, text: &str) {
        let (indices, silent) = {
            let mut state = self.state.lock().unwrap();
            let concat_ref = state.next_concat_ref;
            state.next_concat_ref = state.next_concat_ref.wrapping_add(1);
            let mut indices = Vec::new();
            for pdu in pdu::encode_deliver(from, text, Utc::now(), concat_ref) {
                let index = (0..).find(|i| !state.storage.contains_key(i)).unwrap();
                state.storage.insert(index, pdu);
                indices.push(index);
            }
            (indices, state.silent)
        };
        if !silent {
            for index in indices {
                let _ = self.urcs.send(format!("\r\n+CMTI: \"SM\",{index}\r\n"));
            }
        }
    }

    /// The network delivers raw SMS-DELIVER PDUs, stored and announced as `receive_sms`
    /// stores its parts: for what no whole SMS produces, such as a part whose siblings
    /// never come.
    pub fn receive_pdus(&self, pdus: &[String]) {
        let (indices, silent) = {
            let mut state = self.state.lock().unwrap();
            let mut indices = Vec::new();
            for pdu in pdus {
                let index = (0..).find(|i| !state.storage.contains_key(i)).unwrap();
                state.storage.insert(index, pdu.clone());
                indices.push(index);
            }
            (indices, state.silent)
        };
        if !silent {
            for index in indices {
                let _ = self.urcs.send(format!("\r\n+CMTI: \"SM\",{index}\r\n"));
            }
        }
    }

    /// The network reports part `reference` delivered (`+CDS`).
    pub fn report_delivered(&self, reference: u8) {
        let to = {
            let state = self.state.lock().unwrap();
            state
                .sent
                .iter()
                .rev()
                .find(|p| p.reference == reference)
                .map(|p| p.submit.to.clone())
        };
        if let Some(to) = to {
            let _ = self.urcs.send(status_report_urc(reference, &to));
        }
    }
}

fn status_report_urc(reference: u8, to: &str) -> String {
    let hex = pdu::encode_status_report(reference, to, 0x00, Utc::now());
    let len = pdu::tpdu_len(&hex).unwrap_or(0);
    format!("\r\n+CDS: {len}\r\n{hex}\r\n")
}

impl ModemPort for ModemSim {
    type Link = SerialStream;

    /// Opening is a power cycle: a silent modem answers again.
    async fn open(&self) -> io::Result<SerialStream> {
        {
            let mut state = self.state.lock().unwrap();
            state.silent = false;
            state.echo = true;
            state.unlocked = state.pin.is_none();
            state.opens += 1;
        }
        // Not exclusive: the simulator keeps its own fd on the slave side open.
        let stream = tokio_serial::new(&self.slave_path, 115_200)
            .exclusive(false)
            .open_native_async()
            .map_err(io::Error::from)?;
        // Drop what the previous session left unread (answers to commands it gave up on).
        stream.clear(ClearBuffer::All).map_err(io::Error::from)?;
        Ok(stream)
    }

    fn describe(&self) -> String {
        format!("simulated modem on {}", self.slave_path)
    }
}

async fn serve(
    master: SerialStream,
    state: Arc<Mutex<State>>,
    mut urcs: mpsc::UnboundedReceiver<String>,
    urc_tx: mpsc::UnboundedSender<String>,
) {
    let (mut reader, mut writer) = tokio::io::split(master);
    let mut buf = Vec::new();
    // After `AT+CMGS=<n>`: collecting the PDU up to Ctrl-Z.
    let mut pdu_mode = false;
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        // No reader on the slave side at the moment: wait for the agent.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let reply = if pdu_mode {
                        let Some(end) = buf.iter().position(|b| *b == 0x1A || *b == 0x1B) else { break };
                        let raw: Vec<u8> = buf.drain(..=end).collect();
                        pdu_mode = false;
                        if raw[end] == 0x1B {
                            continue; // cancelled
                        }
                        let hex = String::from_utf8_lossy(&raw[..end]).trim().to_owned();
                        submit(&state, &hex, &urc_tx)
                    } else {
                        let Some(end) = buf.iter().position(|b| *b == b'\r') else { break };
                        let raw: Vec<u8> = buf.drain(..=end).collect();
                        // ESC outside a PDU cancels nothing and is ignored, as modems do.
                        let bytes: Vec<u8> = raw[..end].iter().copied().filter(|b| *b != 0x1B).collect();
                        let line = String::from_utf8_lossy(&bytes).trim().to_owned();
                        if line.is_empty() {
                            continue;
                        }
                        let (reply, enters_pdu) = command(&state, &line);
                        pdu_mode = enters_pdu;
                        reply
                    };
                    if state.lock().unwrap().silent {
                        continue;
                    }
                    if writer.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
            Some(urc) = urcs.recv() => {
                if !state.lock().unwrap().silent {
                    let _ = writer.write_all(urc.as_bytes()).await;
                }
            }
        }
    }
}

const OK: &str = "\r\nOK\r\n";

/// Answers one command line; the bool says whether a PDU follows.
fn command(state: &Mutex<State>, line: &str) -> (String, bool) {
    let mut s = state.lock().unwrap();
    let name: String = line
        .chars()
        .take_while(|c| *c != '=' && *c != '?')
        .collect();
    s.commands.push(name.to_ascii_uppercase());
    let echo = if s.echo {
        format!("{line}\r")
    } else {
        String::new()
    };
    let upper = line.to_ascii_uppercase();
    let reply = match upper.as_str() {
        "AT" | "ATZ" | "AT+CMEE=1" | "AT+CMEE=2" => OK.to_owned(),
        "ATE0" => {
            s.echo = false;
            OK.to_owned()
        }
        "AT+CPIN?" if s.unlocked => format!("\r\n+CPIN: READY\r\n{OK}"),
        "AT+CPIN?" => format!("\r\n+CPIN: SIM PIN\r\n{OK}"),
        _ if upper.starts_with("AT+CPIN=") => {
            let given = line[8..].trim_matches('"');
            if s.pin.as_deref() == Some(given) {
                s.unlocked = true;
                OK.to_owned()
            } else {
                "\r\n+CME ERROR: 16\r\n".to_owned()
            }
        }
        // Everything below needs the SIM unlocked, as on a real modem.
        _ if !s.unlocked => "\r\n+CME ERROR: 11\r\n".to_owned(),
        "AT+CMGF=0" => OK.to_owned(),
        _ if upper.starts_with("AT+CNMI=") => OK.to_owned(),
        "AT+CSQ" => format!("\r\n+CSQ: 21,99\r\n{OK}"),
        "AT+CREG?" => format!("\r\n+CREG: 0,1\r\n{OK}"),
        "AT+COPS?" => format!("\r\n+COPS: 0,0,\"SimNet\",7\r\n{OK}"),
        "AT+CMGL=4" => {
            let mut out = String::new();
            for (index, pdu) in &s.storage {
                let len = pdu::tpdu_len(pdu).unwrap_or(0);
                out.push_str(&format!("\r\n+CMGL: {index},0,,{len}\r\n{pdu}"));
            }
            out.push_str("\r\n");
            out.push_str(OK);
            out
        }
        _ if upper.starts_with("AT+CMGR=") => match line[8..].trim().parse::<u32>() {
            Ok(index) => match s.storage.get(&index) {
                Some(pdu) => {
                    let len = pdu::tpdu_len(pdu).unwrap_or(0);
                    format!("\r\n+CMGR: 0,,{len}\r\n{pdu}\r\n{OK}")
                }
                None => "\r\n+CMS ERROR: 321\r\n".to_owned(),
            },
            Err(_) => "\r\nERROR\r\n".to_owned(),
        },
        _ if upper.starts_with("AT+CMGD=") => match line[8..].trim().parse::<u32>() {
            Ok(index) => {
                s.storage.remove(&index);
                OK.to_owned()
            }
            Err(_) => "\r\nERROR\r\n".to_owned(),
        },
        _ if upper.starts_with("AT+CMGS=") => return (format!("{echo}\r\n> "), true),
        _ => "\r\nERROR\r\n".to_owned(),
    };
    (format!("{echo}{reply}"), false)
}

/// Accepts (or fails) one SMS-SUBMIT.
fn submit(state: &Mutex<State>, hex: &str, urcs: &mpsc::UnboundedSender<String>) -> String {
    let mut s = state.lock().unwrap();
    if let Some(code) = s.fail_sends.pop_front() {
        return format!("\r\n+CMS ERROR: {code}\r\n");
    }
    let Ok(submit) = pdu::decode_submit(hex) else {
        return "\r\n+CMS ERROR: 304\r\n".to_owned();
    };
    let reference = s.next_reference;
    s.next_reference = s.next_reference.wrapping_add(1);
    if s.auto_reports && submit.status_report {
        let urc = status_report_urc(reference, &submit.to);
        let urcs = urcs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = urcs.send(urc);
        });
    }
    s.sent.push(SentPart {
        reference,
        submit,
        at: std::time::Instant::now(),
    });
    format!("\r\n+CMGS: {reference}\r\n{OK}")
}
