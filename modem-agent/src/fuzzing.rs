//! Entry points of the coverage-guided fuzz targets in `modem-agent/fuzz/` (cargo-fuzz,
//! libFuzzer): what the radio and the modem can send, through the code that reads it.
//! Not an API (hidden from the docs): the parsers stay private, and these functions only
//! drive them the way the agent does. Each panics only where the agent would, or where an
//! invariant the agent relies on breaks.

use std::io::Cursor;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::at::{AtSession, Urc};
use crate::inbound::{Assembled, Limits, PartSource, Reassembler};
use crate::modem::{parse_cmgl, parse_cops, parse_creg, parse_csq, pdu_after_header};
use crate::pdu::{self, SubmitPart};

/// One PDU as raw octets (hex-encoded here, as the modem lists it), then the same input as
/// text through the hex layer: every decoder the agent runs on a received PDU.
pub fn pdu(data: &[u8]) {
    decode_all(&pdu::hex_upper(data));
    if let Ok(text) = std::str::from_utf8(data) {
        decode_all(text);
    }
}

fn decode_all(hex: &str) {
    if let Ok(part) = pdu::decode_deliver(hex) {
        // A part alone is published at once, or waits and is given up: both assemble it.
        let mut reassembler = Reassembler::new(REASSEMBLY_LIMITS);
        let now = Instant::now();
        let _ = reassembler.add(1, PartSource::Sim(0), part, Utc::now(), now);
        let _ = reassembler.expire(1, Utc::now(), now + REASSEMBLY_LIMITS.max_age);
        assert_eq!(reassembler.waiting(), 0);
    }
    if let Ok(report) = pdu::decode_status_report(hex) {
        let _ = (report.delivered(), report.is_final());
    }
    let _ = pdu::decode_submit(hex);
    let _ = pdu::tpdu_len(hex);
}

/// Small, so that a short input already crowds the reassembler.
const REASSEMBLY_LIMITS: Limits = Limits {
    max_age: Duration::from_secs(600),
    max_parts: 8,
};

/// A stream of received parts, each as `<seconds since the last one> <length> <octets>`,
/// through the reassembler. Whatever arrives, it never holds more than its cap, and every
/// part that decoded is published exactly once: complete, or given up at the cap or age.
pub fn reassembly(data: &[u8]) {
    let mut reassembler = Reassembler::new(REASSEMBLY_LIMITS);
    let mut now = Instant::now();
    let mut taken = Vec::new();
    let mut published = Vec::new();
    let mut collect = |released: Vec<Assembled>| {
        for done in released {
            assert!(!done.sources.is_empty());
            published.extend(done.sources.into_iter().map(|s| match s {
                PartSource::Sim(index) => index,
                PartSource::Spool(_) => unreachable!("only SIM parts here"),
            }));
        }
    };
    let mut rest = data;
    let mut index = 0u32;
    while let [step, len, tail @ ..] = rest {
        let (raw, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        now += Duration::from_secs(u64::from(*step) * 10);
        collect(reassembler.expire(1, Utc::now(), now));
        if let Ok(part) = pdu::decode_deliver(&pdu::hex_upper(raw)) {
            taken.push(index);
            collect(reassembler.add(1, PartSource::Sim(index), part, Utc::now(), now));
        }
        assert!(reassembler.waiting() <= REASSEMBLY_LIMITS.max_parts);
        assert!(reassembler.groups() <= reassembler.waiting());
        index += 1;
    }
    collect(reassembler.expire(1, Utc::now(), now + REASSEMBLY_LIMITS.max_age));
    assert_eq!((reassembler.waiting(), reassembler.groups()), (0, 0));
    published.sort_unstable();
    assert_eq!(published, taken, "every part published exactly once");
}

/// Modem output: the answers to a listing, a read, a status query and a send, then URCs
/// until the input ends, through the AT session and the parsers of each answer.
pub fn at(data: &[u8]) {
    runtime().block_on(async {
        let mut session = AtSession::new(Replay(Cursor::new(data.to_vec())));
        // Input ends long before this; only a hang would reach it.
        let t = Duration::from_secs(5);
        if let Ok(lines) = session.command("AT+CMGL=4", t).await {
            for stored in parse_cmgl(lines) {
                decode_all(&stored.pdu);
            }
        }
        if let Ok(lines) = session.command("AT+CMGR=1", t).await {
            if let Some(raw) = pdu_after_header(&lines, "+CMGR:") {
                decode_all(&raw);
            }
        }
        if let Ok(lines) = session.command("AT+CSQ;+CREG?;+COPS?", t).await {
            let _ = (parse_csq(&lines), parse_creg(&lines), parse_cops(&lines));
        }
        let part = SubmitPart {
            hex: "00".into(),
            tpdu_len: 1,
        };
        let _ = session.send_pdu(&part, t).await;
        while let Ok(urc) = session.next_urc().await {
            if let Urc::Deliver { pdu } | Urc::StatusReport { pdu } = urc {
                decode_all(&pdu);
            }
        }
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// A modem link that plays back recorded output and swallows what is written to it.
struct Replay(Cursor<Vec<u8>>);

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The committed seed corpus (`fuzz/corpus/<target>/`) runs clean through each entry
    /// point, so the seeds stay valid inputs and the targets stay runnable without the
    /// fuzzer.
    #[test]
    fn the_seed_corpus_runs_clean() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for target in ["pdu", "reassembly", "at"] {
            let run = match target {
                "pdu" => pdu,
                "reassembly" => reassembly,
                _ => at,
            };
            let mut seeds = 0;
            for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
                run(&std::fs::read(entry.unwrap().path()).unwrap());
                seeds += 1;
            }
            assert!(seeds >= 3, "{target} has {seeds} seeds");
        }
    }
}
