//! SMS PDUs as modems exchange them in PDU mode (3GPP TS 27.005 `AT+CMGF=0`): the service
//! centre address followed by a TPDU of 3GPP TS 23.040, text in the alphabets of 3GPP
//! TS 23.038.
//!
//! Written here rather than taken from a crate: the Rust PDU crates on crates.io either only
//! decode (sms-pdu-decoder) or are bound to an old tokio (huawei-modem), and the agent must
//! split long texts exactly as `MessageBody` counted them. Both directions of each TPDU are
//! here because the modem simulator in the tests crate needs the other half (it decodes
//! SMS-SUBMIT and encodes SMS-DELIVER and SMS-STATUS-REPORT).

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use smsgate_shared::domain::{Encoding, MessageBody, PhoneNumber};

/// The default alphabet in TS 23.038 §6.2.1 order; the escape at 0x1B is a placeholder.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];
/// The extension table (TS 23.038 §6.2.1.1): code after the escape, and its character.
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];
const ESCAPE: u8 = 0x1B;

/// Septets of a single-part GSM-7 message, and per part of a concatenated one (the 6-octet
/// UDH takes 7 septets). Must agree with `MessageBody`'s segment count.
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
/// UTF-16 units of a single UCS-2 message, and per part with the UDH (3 units).
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// TP-DCS values: default alphabet, and UCS2 (TS 23.038 §4, general data coding group).
const DCS_GSM7: u8 = 0x00;
const DCS_UCS2: u8 = 0x08;
/// Relative validity period of one day (TS 23.040 §9.2.3.12.1: 167 → 24 hours). Long
/// enough to ride out a handset switched off overnight, short enough not to arrive stale.
const VALIDITY_ONE_DAY: u8 = 0xA7;

/// A PDU that does not decode. Never contains the text or number it was decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("PDU is not hexadecimal")]
    NotHex,
    #[error("PDU ends early: {0}")]
    Truncated(&'static str),
    #[error("PDU is a TP-MTI {0} message, expected {1}")]
    WrongType(u8, &'static str),
    #[error("unsupported data coding scheme 0x{0:02X}")]
    UnsupportedDcs(u8),
}

/// Concatenation info of one part (TS 23.040 §9.2.3.24.1 and .8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

/// One SMS-SUBMIT ready for `AT+CMGS=<tpdu_len>`: the hex PDU (with an empty service centre
/// address, so the SIM's own SMSC is used) and its TPDU length in octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPart {
    pub hex: String,
    pub tpdu_len: usize,
}

/// The SMS-SUBMIT PDUs of one message: one, or several with a concatenation UDH carrying
/// `concat_ref`. Parts are split exactly where `MessageBody` counted them: never between an
/// escape and its extension code, never inside a surrogate pair.
pub fn encode_submit(
    to: &PhoneNumber,
    body: &MessageBody,
    concat_ref: u8,
    status_report: bool,
) -> Vec<SubmitPart> {
    let parts = split_user_data(body.as_str(), body.encoding());
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let concat = (total > 1).then_some(Concat {
                reference: u16::from(concat_ref),
                total: total as u8,
                seq: (i + 1) as u8,
            });
            let mut tpdu = Vec::with_capacity(160);
            // TP-MTI SUBMIT, TP-VPF relative; TP-SRR asks for a status report; TP-UDHI.
            let mut first = 0x01 | 0x10;
            if status_report {
                first |= 0x20;
            }
            if concat.is_some() {
                first |= 0x40;
            }
            tpdu.push(first);
            tpdu.push(0x00); // TP-MR: the modem assigns it and answers it in +CMGS.
            tpdu.extend(encode_address(to.as_str()));
            tpdu.push(0x00); // TP-PID: plain short message.
            tpdu.push(match body.encoding() {
                Encoding::Gsm7 => DCS_GSM7,
                Encoding::Ucs2 => DCS_UCS2,
            });
            tpdu.push(VALIDITY_ONE_DAY);
            tpdu.extend(encode_user_data(&part, concat));
            let tpdu_len = tpdu.len();
            let mut pdu = vec![0x00]; // empty SCA: use the SMSC stored on the SIM
            pdu.extend(tpdu);
            SubmitPart {
                hex: hex_upper(&pdu),
                tpdu_len,
            }
        })
        .collect()
}

/// User data of one part before packing: GSM-7 septets or UTF-16 units.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UserData {
    Septets(Vec<u8>),
    Ucs2(Vec<u16>),
}

fn split_user_data(text: &str, encoding: Encoding) -> Vec<UserData> {
    match encoding {
        Encoding::Gsm7 => {
            let chars: Vec<Vec<u8>> = text.chars().map(gsm7_codes).collect();
            let total: usize = chars.iter().map(Vec::len).sum();
            split_units(chars, total, GSM7_SINGLE, GSM7_PART)
                .into_iter()
                .map(UserData::Septets)
                .collect()
        }
        Encoding::Ucs2 => {
            let chars: Vec<Vec<u16>> = text
                .chars()
                .map(|c| c.encode_utf16(&mut [0; 2]).to_vec())
                .collect();
            let total: usize = chars.iter().map(Vec::len).sum();
            split_units(chars, total, UCS2_SINGLE, UCS2_PART)
                .into_iter()
                .map(UserData::Ucs2)
                .collect()
        }
    }
}

/// Greedy split of per-character unit groups into parts, never splitting a group.
fn split_units<T: Copy>(
    chars: Vec<Vec<T>>,
    total: usize,
    single: usize,
    per_part: usize,
) -> Vec<Vec<T>> {
    if total <= single {
        return vec![chars.into_iter().flatten().collect()];
    }
    let mut parts = vec![Vec::new()];
    for group in chars {
        if parts.last().expect("one part").len() + group.len() > per_part {
            parts.push(Vec::new());
        }
        parts.last_mut().expect("one part").extend(group);
    }
    parts
}

/// The septet codes of `c`: one for the default alphabet, escape + code for the extension
/// table. A character outside GSM-7 cannot reach here (the body's encoding would be UCS-2);
/// should one anyway, it is sent as `?` rather than corrupting the packing.
fn gsm7_codes(c: char) -> Vec<u8> {
    if c != '\u{1B}' {
        if let Some(code) = GSM7_BASIC.iter().position(|b| *b == c) {
            return vec![code as u8];
        }
    }
    if let Some((code, _)) = GSM7_EXTENSION.iter().find(|(_, e)| *e == c) {
        return vec![ESCAPE, *code];
    }
    vec![0x3F]
}

fn encode_user_data(data: &UserData, concat: Option<Concat>) -> Vec<u8> {
    let header = concat.map(|c| vec![0x05, 0x00, 0x03, c.reference as u8, c.total, c.seq]);
    let header_len = header.as_ref().map_or(0, Vec::len);
    match data {
        UserData::Septets(septets) => {
            // The header is followed by fill bits up to the next septet boundary, so that
            // phones ignoring the UDH still decode the text (TS 23.040 §9.2.3.24).
            let header_septets = (header_len * 8).div_ceil(7);
            let udl = header_septets + septets.len();
            let mut out = vec![udl as u8];
            out.extend(pack_septets(
                header.as_deref().unwrap_or(&[]),
                header_septets,
                septets,
            ));
            out
        }
        UserData::Ucs2(units) => {
            let mut body = header.unwrap_or_default();
            for unit in units {
                body.extend(unit.to_be_bytes());
            }
            let mut out = vec![body.len() as u8];
            out.extend(body);
            out
        }
    }
}

/// Packs septets LSB first (TS 23.038 §6.1.2.1.1) after `header`, which occupies the first
/// `header_septets` septet positions.
fn pack_septets(header: &[u8], header_septets: usize, septets: &[u8]) -> Vec<u8> {
    let total_bits = (header_septets + septets.len()) * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    out[..header.len()].copy_from_slice(header);
    for (i, septet) in septets.iter().enumerate() {
        let bit = (header_septets + i) * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let value = u16::from(septet & 0x7F) << shift;
        out[byte] |= value as u8;
        if shift > 1 {
            out[byte + 1] |= (value >> 8) as u8;
        }
    }
    out
}

/// Septets `skip..count` of packed data.
fn unpack_septets(data: &[u8], skip: usize, count: usize) -> Result<Vec<u8>, PduError> {
    if (count * 7).div_ceil(8) > data.len() {
        return Err(PduError::Truncated("user data"));
    }
    Ok((skip..count)
        .map(|i| {
            let bit = i * 7;
            let (byte, shift) = (bit / 8, bit % 8);
            let low = u16::from(data[byte]);
            let high = data.get(byte + 1).copied().map_or(0, u16::from);
            (((high << 8 | low) >> shift) & 0x7F) as u8
        })
        .collect())
}

fn decode_gsm7(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut codes = septets.iter();
    while let Some(&code) = codes.next() {
        if code == ESCAPE {
            if let Some(&ext) = codes.next() {
                match GSM7_EXTENSION.iter().find(|(c, _)| *c == ext) {
                    Some((_, ch)) => text.push(*ch),
                    // TS 23.038: an unknown extension code shows as the basic character.
                    None => text.push(GSM7_BASIC[usize::from(ext & 0x7F)]),
                }
            }
        } else {
            text.push(GSM7_BASIC[usize::from(code & 0x7F)]);
        }
    }
    text
}

/// A semi-octet address (TS 23.040 §9.1.2.5): digit count, type of address, swapped BCD.
fn encode_address(number: &str) -> Vec<u8> {
    let (toa, digits) = match number.strip_prefix('+') {
        Some(d) => (0x91, d),
        None => (0x81, number),
    };
    let mut out = vec![digits.len() as u8, toa];
    out.extend(swapped_bcd(digits));
    out
}

fn swapped_bcd(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let low = pair[0] - b'0';
            let high = pair.get(1).map_or(0xF, |d| d - b'0');
            high << 4 | low
        })
        .collect()
}

/// An address written as an alphanumeric sender name (TON 101), GSM-7 packed.
fn encode_alphanumeric_address(name: &str) -> Vec<u8> {
    let septets: Vec<u8> = name.chars().flat_map(gsm7_codes).collect();
    let packed = pack_septets(&[], 0, &septets);
    let mut out = vec![(septets.len() * 7).div_ceil(4) as u8, 0xD0];
    out.extend(packed);
    out
}

/// A cursor over a PDU's octets.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn octet(&mut self, what: &'static str) -> Result<u8, PduError> {
        let b = *self.data.get(self.at).ok_or(PduError::Truncated(what))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        let slice = self
            .data
            .get(self.at..self.at + n)
            .ok_or(PduError::Truncated(what))?;
        self.at += n;
        Ok(slice)
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.at.min(self.data.len())..]
    }

    /// Skips the service centre address that PDU-mode responses start with.
    fn skip_sca(&mut self) -> Result<(), PduError> {
        let len = self.octet("SMSC length")?;
        self.take(usize::from(len), "SMSC address")?;
        Ok(())
    }

    fn address(&mut self) -> Result<String, PduError> {
        let digits = usize::from(self.octet("address length")?);
        let toa = self.octet("type of address")?;
        let raw = self.take(digits.div_ceil(2), "address")?;
        if toa & 0x70 == 0x50 {
            // Alphanumeric: `digits` counts semi-octets of packed GSM-7.
            let septets = digits * 4 / 7;
            return Ok(decode_gsm7(&unpack_septets(raw, 0, septets)?));
        }
        let mut number: String = raw
            .iter()
            .flat_map(|b| [b & 0x0F, b >> 4])
            .take(digits)
            .map(|d| match d {
                0..=9 => char::from(b'0' + d),
                0xA => '*',
                0xB => '#',
                _ => 'x',
            })
            .collect();
        if toa & 0x70 == 0x10 {
            number.insert(0, '+');
        }
        Ok(number)
    }

    fn timestamp(&mut self) -> Result<Option<DateTime<Utc>>, PduError> {
        let raw = self.take(7, "time stamp")?;
        Ok(decode_timestamp(raw))
    }
}

fn swapped_digit_pair(b: u8) -> u32 {
    u32::from(b & 0x0F) * 10 + u32::from(b >> 4)
}

/// TS 23.040 §9.2.3.11; `None` for a stamp no calendar has (some networks send zeros).
fn decode_timestamp(raw: &[u8]) -> Option<DateTime<Utc>> {
    let year = 2000 + swapped_digit_pair(raw[0]) as i32;
    let date =
        NaiveDate::from_ymd_opt(year, swapped_digit_pair(raw[1]), swapped_digit_pair(raw[2]))?;
    let time = date.and_hms_opt(
        swapped_digit_pair(raw[3]),
        swapped_digit_pair(raw[4]),
        swapped_digit_pair(raw[5]),
    )?;
    let tz = raw[6];
    let quarters = (u32::from(tz & 0x07) * 10 + u32::from(tz >> 4)) as i32;
    let offset_secs = quarters * 15 * 60 * if tz & 0x08 != 0 { -1 } else { 1 };
    let offset = FixedOffset::east_opt(offset_secs)?;
    offset
        .from_local_datetime(&time)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn encode_timestamp(at: DateTime<Utc>) -> Vec<u8> {
    use chrono::{Datelike, Timelike};
    let pair = |v: u32| {
        let v = v % 100;
        ((v % 10) as u8) << 4 | (v / 10) as u8
    };
    vec![
        pair(at.year() as u32),
        pair(at.month()),
        pair(at.day()),
        pair(at.hour()),
        pair(at.minute()),
        pair(at.second()),
        0x00, // UTC
    ]
}

/// The alphabet a TP-DCS selects (TS 23.038 §4), for the groups phones send.
fn alphabet(dcs: u8) -> Result<Encoding, PduError> {
    let bits = match dcs & 0xF0 {
        // General data coding (optionally compressed/auto-deleted): bits 3..2.
        0x00..=0x70 if dcs & 0x20 == 0 => (dcs >> 2) & 0x03,
        0xC0 | 0xD0 => 0, // message waiting, default alphabet
        0xE0 => 2,        // message waiting, UCS2
        0xF0 => (dcs >> 2) & 0x01,
        _ => return Err(PduError::UnsupportedDcs(dcs)),
    };
    match bits {
        0 => Ok(Encoding::Gsm7),
        2 => Ok(Encoding::Ucs2),
        _ => Err(PduError::UnsupportedDcs(dcs)),
    }
}

/// Decodes user data (with its UDL already read) into text and concatenation info.
fn decode_user_data(
    data: &[u8],
    udl: usize,
    has_header: bool,
    encoding: Encoding,
) -> Result<(String, Option<Concat>), PduError> {
    let (concat, header_len) = if has_header {
        let udhl = usize::from(*data.first().ok_or(PduError::Truncated("UDH"))?);
        let header = data.get(1..1 + udhl).ok_or(PduError::Truncated("UDH"))?;
        (parse_concat(header), udhl + 1)
    } else {
        (None, 0)
    };
    let text = match encoding {
        Encoding::Gsm7 => {
            let skip = (header_len * 8).div_ceil(7);
            decode_gsm7(&unpack_septets(data, skip, udl)?)
        }
        Encoding::Ucs2 => {
            let body = data
                .get(header_len..udl)
                .ok_or(PduError::Truncated("user data"))?;
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
    };
    Ok((text, concat))
}

/// Finds the concatenation element (8- or 16-bit reference) among the header's elements.
fn parse_concat(header: &[u8]) -> Option<Concat> {
    let mut i = 0;
    while i + 1 < header.len() {
        let (iei, len) = (header[i], usize::from(header[i + 1]));
        let value = header.get(i + 2..i + 2 + len)?;
        match (iei, value) {
            (0x00, [reference, total, seq]) => {
                return Some(Concat {
                    reference: u16::from(*reference),
                    total: *total,
                    seq: *seq,
                })
            }
            (0x08, [hi, lo, total, seq]) => {
                return Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    seq: *seq,
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    None
}

/// A received SMS part (SMS-DELIVER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub sender: String,
    pub text: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub concat: Option<Concat>,
}

/// Decodes an SMS-DELIVER as `+CMGR`, `+CMGL` and `+CMT` give it (SMSC address first).
pub fn decode_deliver(hex: &str) -> Result<Deliver, PduError> {
    let bytes = hex_decode(hex)?;
    let mut r = Reader {
        data: &bytes,
        at: 0,
    };
    r.skip_sca()?;
    let first = r.octet("first octet")?;
    if first & 0x03 != 0x00 {
        return Err(PduError::WrongType(first & 0x03, "SMS-DELIVER"));
    }
    let sender = r.address()?;
    let _pid = r.octet("TP-PID")?;
    let encoding = alphabet(r.octet("TP-DCS")?)?;
    let sent_at = r.timestamp()?;
    let udl = usize::from(r.octet("TP-UDL")?);
    let (text, concat) = decode_user_data(r.rest(), udl, first & 0x40 != 0, encoding)?;
    Ok(Deliver {
        sender,
        text,
        sent_at,
        concat,
    })
}

/// A `+CDS` status report (SMS-STATUS-REPORT) for one sent part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The TP-MR `+CMGS` answered for the part.
    pub reference: u8,
    pub recipient: String,
    /// TP-ST: 0x00..=0x1F delivered, 0x20..=0x3F still trying, above that failed.
    pub status: u8,
}

impl StatusReport {
    pub fn delivered(&self) -> bool {
        self.status < 0x20
    }

    /// True once the network stopped trying (delivered or failed for good).
    pub fn is_final(&self) -> bool {
        !(0x20..0x40).contains(&self.status)
    }
}

pub fn decode_status_report(hex: &str) -> Result<StatusReport, PduError> {
    let bytes = hex_decode(hex)?;
    let mut r = Reader {
        data: &bytes,
        at: 0,
    };
    r.skip_sca()?;
    let first = r.octet("first octet")?;
    if first & 0x03 != 0x02 {
        return Err(PduError::WrongType(first & 0x03, "SMS-STATUS-REPORT"));
    }
    let reference = r.octet("TP-MR")?;
    let recipient = r.address()?;
    let _sc_time = r.take(7, "TP-SCTS")?;
    let _discharge_time = r.take(7, "TP-DT")?;
    let status = r.octet("TP-ST")?;
    Ok(StatusReport {
        reference,
        recipient,
        status,
    })
}

/// An SMS-SUBMIT as the modem receives it from `AT+CMGS`; the simulator's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub to: String,
    pub text: String,
    pub encoding: Encoding,
    pub concat: Option<Concat>,
    pub status_report: bool,
}

pub fn decode_submit(hex: &str) -> Result<Submit, PduError> {
    let bytes = hex_decode(hex)?;
    let mut r = Reader {
        data: &bytes,
        at: 0,
    };
    r.skip_sca()?;
    let first = r.octet("first octet")?;
    if first & 0x03 != 0x01 {
        return Err(PduError::WrongType(first & 0x03, "SMS-SUBMIT"));
    }
    let _mr = r.octet("TP-MR")?;
    let to = r.address()?;
    let _pid = r.octet("TP-PID")?;
    let encoding = alphabet(r.octet("TP-DCS")?)?;
    match (first >> 3) & 0x03 {
        0b10 => {
            r.take(1, "TP-VP")?;
        }
        0b01 | 0b11 => {
            r.take(7, "TP-VP")?;
        }
        _ => {}
    }
    let udl = usize::from(r.octet("TP-UDL")?);
    let (text, concat) = decode_user_data(r.rest(), udl, first & 0x40 != 0, encoding)?;
    Ok(Submit {
        to,
        text,
        encoding,
        concat,
        status_report: first & 0x20 != 0,
    })
}

/// The SMS-DELIVER PDUs (with an SMSC address, as modems list them) a network would hand
/// a SIM for `text` from `sender`: one, or concatenated parts with `concat_ref`.
/// The simulator's view; the agent only decodes these.
pub fn encode_deliver(
    sender: &str,
    text: &str,
    sent_at: DateTime<Utc>,
    concat_ref: u8,
) -> Vec<String> {
    let encoding = if text.chars().all(Encoding::is_gsm7_char) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    };
    let parts = split_user_data(text, encoding);
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let concat = (total > 1).then_some(Concat {
                reference: u16::from(concat_ref),
                total: total as u8,
                seq: (i + 1) as u8,
            });
            let mut pdu = vec![0x07, 0x91];
            pdu.extend(swapped_bcd("85290000000"));
            pdu.push(if concat.is_some() { 0x44 } else { 0x04 }); // DELIVER, no more messages to send
            let is_number = sender
                .strip_prefix('+')
                .unwrap_or(sender)
                .bytes()
                .all(|b| b.is_ascii_digit());
            if is_number {
                pdu.extend(encode_address(sender));
            } else {
                pdu.extend(encode_alphanumeric_address(sender));
            }
            pdu.push(0x00);
            pdu.push(match encoding {
                Encoding::Gsm7 => DCS_GSM7,
                Encoding::Ucs2 => DCS_UCS2,
            });
            pdu.extend(encode_timestamp(sent_at));
            pdu.extend(encode_user_data(&part, concat));
            hex_upper(&pdu)
        })
        .collect()
}

/// An SMS-STATUS-REPORT for part `reference` sent to `recipient`; the simulator's view.
pub fn encode_status_report(
    reference: u8,
    recipient: &str,
    status: u8,
    at: DateTime<Utc>,
) -> String {
    let mut pdu = vec![0x00, 0x06, reference];
    pdu.extend(encode_address(recipient));
    pdu.extend(encode_timestamp(at));
    pdu.extend(encode_timestamp(at));
    pdu.push(status);
    hex_upper(&pdu)
}

/// The TPDU length `AT+CMGS`/`+CMT` announce for a PDU: its octets after the SMSC address.
pub fn tpdu_len(hex: &str) -> Result<usize, PduError> {
    let bytes = hex_decode(hex)?;
    let sca = usize::from(*bytes.first().ok_or(PduError::Truncated("SMSC length"))?);
    Ok(bytes.len().saturating_sub(1 + sca))
}

pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_decode(hex: &str) -> Result<Vec<u8>, PduError> {
    let hex = hex.trim();
    if hex.len() & 1 != 0 {
        return Err(PduError::NotHex);
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or(PduError::NotHex)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    fn body(text: &str) -> MessageBody {
        MessageBody::parse(text, u32::MAX).unwrap()
    }

    #[test]
    fn packs_hello_as_in_ts_23_038_examples() {
        // "hellohello" → E8329BFD4697D9EC37, the classic packing example.
        let septets: Vec<u8> = "hellohello".chars().flat_map(gsm7_codes).collect();
        assert_eq!(
            hex_upper(&pack_septets(&[], 0, &septets)),
            "E8329BFD4697D9EC37"
        );
        let unpacked = unpack_septets(&pack_septets(&[], 0, &septets), 0, 10).unwrap();
        assert_eq!(decode_gsm7(&unpacked), "hellohello");
    }

    #[test]
    fn eight_septets_fill_exactly_seven_octets() {
        let septets: Vec<u8> = "12345678".chars().flat_map(gsm7_codes).collect();
        let packed = pack_septets(&[], 0, &septets);
        assert_eq!(hex_upper(&packed), "31D98C56B3DD70");
        assert_eq!(
            decode_gsm7(&unpack_septets(&packed, 0, 8).unwrap()),
            "12345678"
        );
    }

    #[test]
    fn single_gsm7_submit_matches_a_hand_built_pdu() {
        let parts = encode_submit(&number("+85212345678"), &body("hellohello"), 0, false);
        assert_eq!(parts.len(), 1);
        // SCA 00 | 11 SUBMIT+VPF | MR 00 | DA 0B 91 5812325476F8 | PID 00 | DCS 00 | VP A7 |
        // UDL 0A | UD
        assert_eq!(
            parts[0].hex,
            "0011000B915812325476F80000A70AE8329BFD4697D9EC37"
        );
        assert_eq!(parts[0].tpdu_len, 23);
        assert_eq!(tpdu_len(&parts[0].hex).unwrap(), 23);
    }

    #[test]
    fn extension_characters_take_an_escape_and_round_trip() {
        let parts = encode_submit(&number("12345678"), &body("10€ [ok]"), 0, true);
        let decoded = decode_submit(&parts[0].hex).unwrap();
        assert_eq!(decoded.text, "10€ [ok]");
        assert_eq!(decoded.to, "+85212345678");
        assert!(decoded.status_report);
        assert_eq!(decoded.encoding, Encoding::Gsm7);
    }

    #[test]
    fn ucs2_submit_is_utf16_big_endian() {
        let parts = encode_submit(&number("12345678"), &body("你好"), 0, false);
        // DCS 08, VP A7, UDL 04, 4F60 597D.
        assert!(parts[0].hex.ends_with("08A7044F60597D"), "{}", parts[0].hex);
        assert_eq!(decode_submit(&parts[0].hex).unwrap().text, "你好");
    }

    #[test]
    fn long_gsm7_text_is_split_into_153_septet_parts_with_a_udh() {
        let text = "a".repeat(307);
        let parts = encode_submit(&number("12345678"), &body(&text), 0x42, false);
        assert_eq!(parts.len(), 3);
        let decoded: Vec<Submit> = parts
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap())
            .collect();
        for (i, part) in decoded.iter().enumerate() {
            assert_eq!(
                part.concat,
                Some(Concat {
                    reference: 0x42,
                    total: 3,
                    seq: i as u8 + 1
                })
            );
        }
        assert_eq!(decoded[0].text.len(), 153);
        assert_eq!(decoded[2].text.len(), 1);
        let joined: String = decoded.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(joined, text);
        // The UDH sits right after the UDL, then one fill bit: 'a' (0x61) shifted left by 1.
        let tpdu = &parts[0].hex[2..];
        let ud_start = tpdu.find("050003420301").unwrap();
        assert_eq!(&tpdu[ud_start - 2..ud_start], "A0"); // UDL 160 septets = 7 + 153
        assert_eq!(&tpdu[ud_start + 12..ud_start + 14], "C2");
    }

    #[test]
    fn parts_never_split_an_escape_or_a_surrogate_pair() {
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        let b = body(&text);
        let parts = encode_submit(&number("12345678"), &b, 1, false);
        assert_eq!(parts.len() as u32, b.segments());
        let texts: Vec<String> = parts
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap().text)
            .collect();
        assert_eq!(texts.concat(), text);

        let emoji = format!("{}😀{}", "中".repeat(66), "中".repeat(66));
        let b = body(&emoji);
        let parts = encode_submit(&number("12345678"), &b, 1, false);
        assert_eq!(parts.len() as u32, b.segments());
        let texts: Vec<String> = parts
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap().text)
            .collect();
        assert_eq!(texts.concat(), emoji);
    }

    #[test]
    fn part_count_always_equals_the_bodys_segment_count() {
        for text in [
            "a".repeat(160),
            "a".repeat(161),
            "€".repeat(81),
            "中".repeat(70),
            "中".repeat(71),
            "😀".repeat(36),
            "x".repeat(1530),
        ] {
            let b = body(&text);
            let parts = encode_submit(&number("12345678"), &b, 9, false);
            assert_eq!(
                parts.len() as u32,
                b.segments(),
                "{} chars",
                text.chars().count()
            );
        }
    }

    #[test]
    fn decodes_a_real_world_deliver_pdu() {
        // Widely published SMS-DELIVER example: from +31641600986, "How are you?" in GSM-7.
        let pdu = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
        let d = decode_deliver(pdu).unwrap();
        assert_eq!(d.sender, "+31641600986");
        assert_eq!(d.text, "How are you?");
        assert_eq!(d.concat, None);
    }

    #[test]
    fn time_stamps_honour_the_signed_quarter_hour_zone() {
        // 2026-11-22 18:30:00 at +08:00 (32 quarters: semi-octets 3,2 → 0x23).
        let hk = [0x62, 0x11, 0x22, 0x81, 0x03, 0x00, 0x23];
        assert_eq!(
            decode_timestamp(&hk).unwrap().to_rfc3339(),
            "2026-11-22T10:30:00+00:00"
        );
        // 05:00 at -05:00 (20 quarters, sign bit in the tens digit: 0x0A).
        let ny = [0x62, 0x11, 0x22, 0x50, 0x00, 0x00, 0x0A];
        assert_eq!(
            decode_timestamp(&ny).unwrap().to_rfc3339(),
            "2026-11-22T10:00:00+00:00"
        );
        assert_eq!(decode_timestamp(&[0; 7]), None);
    }

    #[test]
    fn concatenated_ucs2_deliver_parts_round_trip() {
        let text = "你好，世界！".repeat(20); // 120 units → 2 parts of 67
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 30, 0).unwrap();
        let pdus = encode_deliver("+85298765432", &text, at, 7);
        assert_eq!(pdus.len(), 2);
        let parts: Vec<Deliver> = pdus.iter().map(|p| decode_deliver(p).unwrap()).collect();
        assert_eq!(parts[0].sender, "+85298765432");
        assert_eq!(parts[0].sent_at, Some(at));
        assert_eq!(parts[1].concat.unwrap().seq, 2);
        assert_eq!(parts[0].text.clone() + &parts[1].text, text);
    }

    #[test]
    fn alphanumeric_senders_and_16_bit_references_decode() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let pdu = encode_deliver("HKT", "Top-up done", at, 0).remove(0);
        let d = decode_deliver(&pdu).unwrap();
        assert_eq!((d.sender.as_str(), d.text.as_str()), ("HKT", "Top-up done"));
        assert_eq!(
            parse_concat(&[0x08, 0x04, 0x12, 0x34, 0x02, 0x01]),
            Some(Concat {
                reference: 0x1234,
                total: 2,
                seq: 1
            })
        );
    }

    #[test]
    fn status_reports_round_trip_and_classify() {
        let at = Utc::now();
        let hex = encode_status_report(42, "+85212345678", 0x00, at);
        let report = decode_status_report(&hex).unwrap();
        assert_eq!(report.reference, 42);
        assert_eq!(report.recipient, "+85212345678");
        assert!(report.delivered() && report.is_final());
        let pending = StatusReport {
            status: 0x21,
            ..report.clone()
        };
        assert!(!pending.is_final());
        let failed = StatusReport {
            status: 0x41,
            ..report
        };
        assert!(failed.is_final() && !failed.delivered());
    }

    #[test]
    fn a_deliver_is_not_a_status_report() {
        let pdu = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
        assert_eq!(
            decode_status_report(pdu),
            Err(PduError::WrongType(0, "SMS-STATUS-REPORT"))
        );
        assert_eq!(
            decode_deliver("0791"),
            Err(PduError::Truncated("SMSC address"))
        );
        assert_eq!(decode_deliver("zz"), Err(PduError::NotHex));
    }

    #[test]
    fn every_default_alphabet_character_survives_a_round_trip() {
        let all: String = GSM7_BASIC
            .iter()
            .filter(|c| **c != '\u{1B}')
            .chain(GSM7_EXTENSION.iter().map(|(_, c)| c))
            .collect();
        for c in all.chars() {
            assert!(
                Encoding::is_gsm7_char(c),
                "{c:?} disagrees with MessageBody"
            );
        }
        let b = body(&all);
        let parts = encode_submit(&number("12345678"), &b, 3, false);
        let texts: Vec<String> = parts
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap().text)
            .collect();
        assert_eq!(texts.concat(), all);
    }
}
