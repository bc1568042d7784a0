//! `/compose`: write a message, list recipients (typed or from a CSV file), send once.
//!
//! Invalid numbers are listed back with where they were (line of the text box or of the
//! file; the first 100, and how many in all) and nothing is sent until all are fixed; the
//! form keeps what was typed. The hidden
//! idempotency key makes a double click or a resubmitted form land on the same message.

use crate::{Flash, Page, WebError};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use smsgate_shared::domain::{Encoding, MessageBody, MessageBodyError, PhoneNumber};

use crate::view::DisplayTz;

use super::errors::db_error;
use super::session::{random_token, PanelUser, SignedIn};
use crate::state::WebState;
use smsgate_core::idempotency::{IdempotencyKey, KeyClaim};
use smsgate_core::sms::service::NewSend;
use smsgate_core::sms::{
    accept_send_once, echo, Problems, RecipientSet, RouteRequest, SendError, SendKind, SendOnce,
    SendRoute,
};
use smsgate_core::sms::{OptionsError, RawSendOptions, SendOptions};

/// One recipient as typed, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub source: &'static str,
    pub line: usize,
    pub value: String,
}

/// An entry that is not a phone number, shown beside the field.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvalidLine {
    pub source: &'static str,
    pub line: usize,
    pub value: String,
    pub reason: String,
}

/// Entries of the text box: one per line, or several per line separated by commas or
/// semicolons. Blank entries are skipped.
pub fn entries_from_text(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .flat_map(|(index, line)| {
            line.split([',', ';'])
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(move |value| Entry {
                    source: "Recipients",
                    line: index + 1,
                    value: value.to_owned(),
                })
        })
        .collect()
}

/// Splits one CSV line, honouring double-quoted fields (`"1234 5678"`, `"a ""b"""`).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// Entries of an uploaded CSV file: the column named `phone` (any case) if the first row
/// has one, else the first column; a first row that is text rather than a number is taken
/// as a header and skipped.
pub fn entries_from_csv(text: &str) -> Vec<Entry> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut column = 0;
    if let Some((_, first)) = rows.peek() {
        let cells = csv_cells(first);
        if let Some(i) = cells.iter().position(|c| c.eq_ignore_ascii_case("phone")) {
            column = i;
            rows.next();
        } else if cells.first().is_some_and(|c| {
            c.chars().any(|ch| ch.is_alphabetic()) && PhoneNumber::parse(c).is_err()
        }) {
            rows.next();
        }
    }
    rows.filter_map(|(index, line)| {
        let value = csv_cells(line).into_iter().nth(column).unwrap_or_default();
        (!value.is_empty()).then_some(Entry {
            source: "CSV",
            line: index + 1,
            value,
        })
    })
    .collect()
}

/// What a form's entries hold: their distinct numbers (first spelling wins, at most `max`
/// kept) and the first bad entries with a count of all of them.
pub struct ParsedEntries {
    pub recipients: RecipientSet,
    pub problems: Problems<InvalidLine>,
}

/// Parses every entry in one pass, in memory bounded by `max` and the report limit.
pub fn parse_entries(entries: &[Entry], max: usize) -> ParsedEntries {
    let mut recipients = RecipientSet::new(max);
    let mut problems = Problems::default();
    for entry in entries {
        if let Err(e) = recipients.add(&entry.value) {
            problems.push(InvalidLine {
                source: entry.source,
                line: entry.line,
                value: echo(&entry.value),
                reason: e.to_string(),
            });
        }
    }
    ParsedEntries {
        recipients,
        problems,
    }
}

/// What the counter under the text box says before the script takes over.
fn counter_text(content: &str) -> String {
    let chars = content.chars().count();
    let (encoding, segments) = match MessageBody::parse(content, u32::MAX) {
        Ok(body) => (body.encoding(), body.segments()),
        Err(_) => (Encoding::Gsm7, 1),
    };
    let name = match encoding {
        Encoding::Gsm7 => "GSM-7",
        Encoding::Ucs2 => "UCS-2",
    };
    format!(
        "{chars} character{} · {name} · {segments} segment{}",
        if chars == 1 { "" } else { "s" },
        if segments == 1 { "" } else { "s" }
    )
}

/// The form as typed, with whatever is wrong with it.
#[derive(Default)]
struct ComposeForm {
    csrf_token: String,
    idempotency_key: String,
    content: String,
    recipients: String,
    csv: Option<String>,
    priority: String,
    /// As a `datetime-local` input sends it, in the display zone.
    send_at: String,
    /// Whole minutes, or empty.
    valid_for: String,
}

/// What is wrong with the traffic options, by form field (`priority`, `send_at`,
/// `valid_for`).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct OptionErrors {
    priority: Option<String>,
    send_at: Option<String>,
    valid_for: Option<String>,
}

impl OptionErrors {
    fn is_empty(&self) -> bool {
        *self == OptionErrors::default()
    }

    fn one(field: &str, text: String) -> OptionErrors {
        let mut errors = OptionErrors::default();
        match field {
            "priority" => errors.priority = Some(text),
            "send_at" => errors.send_at = Some(text),
            _ => errors.valid_for = Some(text),
        }
        errors
    }
}

/// A `datetime-local` value (`2026-12-24T09:00`, seconds optional) as an RFC 3339 instant
/// in `tz`. `Err` names why, in the words the form shows.
fn local_to_rfc3339(raw: &str, tz: &DisplayTz) -> Result<String, String> {
    let local = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw.trim(), f).ok())
        .ok_or_else(|| "Enter a date and time, e.g. 2026-12-24 09:00.".to_owned())?;
    // A time a clock change skips does not exist; one it repeats is taken the first time.
    let at = local.and_local_timezone(tz.0).earliest().ok_or_else(|| {
        format!(
            "That time does not exist in {} (a clock change).",
            tz.name()
        )
    })?;
    Ok(at.to_rfc3339())
}

/// The form's words for an options error: the API's messages name JSON fields and
/// seconds, the form has a schedule and minutes.
fn option_error_text(error: &OptionsError) -> String {
    match error {
        OptionsError::UnknownPriority(_) => "Choose high, normal or low.".to_owned(),
        OptionsError::NotATime { .. } => "Enter a date and time, e.g. 2026-12-24 09:00.".to_owned(),
        OptionsError::SendAtPast => "The schedule must be in the future.".to_owned(),
        OptionsError::SendAtTooFar => "The schedule may be at most 35 days ahead.".to_owned(),
        OptionsError::ValidForRange => {
            "Valid for must be between 1 minute and 35 days (50400 minutes).".to_owned()
        }
        // The form offers no "valid until"; these cannot come from it, but say something true.
        other => other.to_string(),
    }
}

/// Parses the form's traffic options against `now`.
fn parse_options(
    form: &ComposeForm,
    tz: &DisplayTz,
    now: DateTime<Utc>,
) -> Result<SendOptions, OptionErrors> {
    let send_at = match form.send_at.trim() {
        "" => None,
        raw => Some(local_to_rfc3339(raw, tz).map_err(|e| OptionErrors::one("send_at", e))?),
    };
    let valid_for = match form.valid_for.trim() {
        "" => None,
        raw => Some(
            raw.parse::<i64>()
                .ok()
                .and_then(|minutes| minutes.checked_mul(60))
                .ok_or_else(|| {
                    OptionErrors::one("valid_for", "Enter a whole number of minutes.".to_owned())
                })?,
        ),
    };
    let raw = RawSendOptions {
        priority: Some(form.priority.as_str()),
        send_at: send_at.as_deref(),
        valid_for,
        valid_until: None,
    };
    SendOptions::parse(raw, now).map_err(|e| {
        let field = match e.field() {
            "valid_until" => "valid_for",
            field => field,
        };
        OptionErrors::one(field, option_error_text(&e))
    })
}

fn compose_page(
    app: &WebState,
    user: &PanelUser,
    form: &ComposeForm,
    content_error: Option<String>,
    recipient_errors: Problems<InvalidLine>,
    option_errors: OptionErrors,
) -> Page {
    let status =
        if content_error.is_some() || !recipient_errors.is_empty() || !option_errors.is_empty() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
    Page::new("compose.html", user.layout(app, "compose"))
        .with("idempotency_key", &form.idempotency_key)
        .with("content", &form.content)
        .with("recipients", &form.recipients)
        .with("counter", counter_text(&form.content))
        .with("max_segments", app.core.settings.max_segments)
        .with("content_error", content_error)
        .with("recipient_error_total", recipient_errors.total())
        .with("recipient_errors", recipient_errors.into_shown())
        .with("csv_again", form.csv.is_some())
        .with(
            "priority",
            if form.priority.is_empty() {
                "normal"
            } else {
                form.priority.as_str()
            },
        )
        // Normal first: it is the default, and the select shows the first option.
        .with("priorities", ["normal", "high", "low"])
        .with("send_at", &form.send_at)
        .with("valid_for", &form.valid_for)
        .with("option_errors", option_errors)
        .status(status)
}

pub async fn compose_form(State(app): State<WebState>, user: PanelUser) -> Page {
    let form = ComposeForm {
        idempotency_key: random_token(),
        ..Default::default()
    };
    compose_page(
        &app,
        &user,
        &form,
        None,
        Problems::default(),
        OptionErrors::default(),
    )
}

async fn read_form(mut multipart: Multipart) -> Result<ComposeForm, WebError> {
    let unreadable = |_| WebError::BadRequest("The form could not be read.".into());
    let mut form = ComposeForm::default();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "csv" => {
                let has_file = field.file_name().is_some_and(|n| !n.is_empty());
                let bytes = field.bytes().await.map_err(unreadable)?;
                if has_file && !bytes.is_empty() {
                    form.csv = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            "csrf_token" => form.csrf_token = field.text().await.map_err(unreadable)?,
            "idempotency_key" => form.idempotency_key = field.text().await.map_err(unreadable)?,
            "content" => form.content = field.text().await.map_err(unreadable)?,
            "recipients" => form.recipients = field.text().await.map_err(unreadable)?,
            "priority" => form.priority = field.text().await.map_err(unreadable)?,
            "send_at" => form.send_at = field.text().await.map_err(unreadable)?,
            "valid_for" => form.valid_for = field.text().await.map_err(unreadable)?,
            _ => {}
        }
    }
    Ok(form)
}

/// Keys are the 43-character tokens `compose_form` hands out; anything else is not ours.
fn valid_key(key: &str) -> bool {
    (16..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn send_message(
    State(app): State<WebState>,
    user: PanelUser,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_form(multipart).await?;
    user.session.verify_csrf(&form.csrf_token)?;
    if !valid_key(&form.idempotency_key) {
        return Err(WebError::BadRequest(
            "The form is missing its key; reload the page.".into(),
        ));
    }

    let body = MessageBody::parse(&form.content, app.core.settings.max_segments);
    let content_error = match &body {
        Ok(_) => None,
        Err(MessageBodyError::Empty) => Some("Write the message.".to_owned()),
        Err(e) => Some(format!("The message is too long: {e}.")),
    };
    let mut entries = entries_from_text(&form.recipients);
    if let Some(csv) = &form.csv {
        entries.extend(entries_from_csv(csv));
    }
    let max = app.core.settings.max_bulk_recipients;
    let ParsedEntries {
        recipients,
        problems,
    } = parse_entries(&entries, max);
    drop(entries);
    let tz = app.panel.display_tz;
    let (options, option_errors) = match parse_options(&form, &tz, Utc::now()) {
        Ok(options) => (Some(options), OptionErrors::default()),
        Err(errors) => (None, errors),
    };
    if problems.is_empty() && recipients.is_empty() {
        let page = compose_page(&app, &user, &form, content_error, problems, option_errors)
            .with("recipients_missing", "Add at least one recipient.")
            .status(StatusCode::UNPROCESSABLE_ENTITY);
        return Ok(page.into_response());
    }
    if recipients.overflowed() {
        return Ok(
            compose_page(&app, &user, &form, content_error, problems, option_errors)
                .with(
                    "recipients_missing",
                    format!("More than {max} recipients; at most {max} per message."),
                )
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response(),
        );
    }
    let Some(options) = options.filter(|_| content_error.is_none() && problems.is_empty()) else {
        return Ok(
            compose_page(&app, &user, &form, content_error, problems, option_errors)
                .into_response(),
        );
    };
    let recipients = recipients.into_numbers();
    let body = body.expect("checked above");
    let total = recipients.len();
    let key = IdempotencyKey::parse(&form.idempotency_key)
        .map_err(|_| WebError::BadRequest("The form's key is invalid; reload the page.".into()))?;
    let send = NewSend {
        recipients,
        body,
        options,
    };
    let claim = KeyClaim {
        fingerprint: send.fingerprint("panel.compose", "hkt"),
        key,
        ttl: app.core.settings.idempotency_key_ttl,
    };
    // A resubmitted form (the same key) lands on its first message, whatever it held: the
    // key names one form, and that form was sent.
    let outcome = accept_send_once(
        &app.core.db,
        &app.core.outbox,
        user.session.user_id,
        send,
        RouteRequest::Hkt,
        &claim,
    )
    .await;
    if let Ok(SendOnce::Stored(_)) = outcome {
        app.core
            .sends
            .accepted(SendRoute::Hkt, SendKind::Panel, total);
    }
    Ok(match outcome {
        Ok(SendOnce::Stored(sent)) => {
            let id = sent.accepted.id;
            let plural = if total == 1 { "" } else { "s" };
            Flash::success(match options.send_at {
                Some(at) => format!(
                    "Message #{id} scheduled for {} to {total} recipient{plural}.",
                    tz.format(at)
                ),
                None => format!("Message #{id} queued for {total} recipient{plural}."),
            })
            .redirect(&format!("/history/{id}"))
        }
        Ok(SendOnce::Replayed(sent)) => already_sent(sent.accepted.id),
        Err(SendError::KeyReused { message_id }) => already_sent(message_id),
        Err(SendError::KeyTaken) => Flash::error(
            "This form was just sent by another request; check the history before sending it again.",
        )
        .redirect("/history"),
        Err(SendError::Quota(e)) => Flash::error(format!("Not sent: {e}.")).redirect("/compose"),
        Err(SendError::Database(e)) => return Err(db_error(e)),
        // The HKT route asks for no SIM.
        Err(e @ (SendError::UnknownSim(_) | SendError::SimInactive(_))) => {
            return Err(WebError::Internal(e.into()))
        }
    })
}

/// Where a form sent before lands: its message, with a note that nothing was sent again.
fn already_sent(id: i64) -> Response {
    Flash::new(
        crate::FlashKind::Info,
        format!("This form was already sent as message #{id}; it was not sent again."),
    )
    .redirect(&format!("/history/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_entries_split_on_lines_and_commas_keeping_line_numbers() {
        let entries = entries_from_text("1234 5678, 23456789\n\n+85298765432;x\n");
        let got: Vec<(usize, &str)> = entries.iter().map(|e| (e.line, e.value.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, "1234 5678"),
                (1, "23456789"),
                (3, "+85298765432"),
                (3, "x")
            ]
        );
    }

    #[test]
    fn csv_uses_the_phone_column_or_the_first_one() {
        let named =
            entries_from_csv("\u{feff}name,Phone\nAlice,1234 5678\n\"Bob, Jr\",\"2345 6789\"\n");
        let values: Vec<&str> = named.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(values, vec!["1234 5678", "2345 6789"]);
        assert_eq!(named[1].line, 3);

        let first = entries_from_csv("12345678,Alice\n23456789,Bob\n");
        assert_eq!(first.len(), 2);
        let with_header = entries_from_csv("number,name\n12345678,Alice\n");
        assert_eq!(with_header.len(), 1);
        assert_eq!(with_header[0].line, 2);
    }

    #[test]
    fn every_invalid_entry_is_reported_and_duplicates_collapse() {
        let entries = entries_from_text("1234 5678\n12345678\n1234-5678\nabc");
        let invalid = parse_entries(&entries, 10).problems;
        assert_eq!(invalid.total(), 2);
        let first = &invalid.shown()[0];
        assert_eq!((first.line, first.value.as_str()), (3, "1234-5678"));
        let ok = parse_entries(&entries_from_text("9123 4567\n+85291234567"), 10);
        assert!(ok.problems.is_empty());
        assert_eq!(ok.recipients.len(), 1);
    }

    #[test]
    fn a_junk_upload_reports_the_first_hundred_lines_and_counts_the_rest() {
        let junk: String = (0..20_000).map(|i| format!("junk{i}\n")).collect();
        let parsed = parse_entries(&entries_from_csv(&format!("phone\n{junk}")), 100_000);
        assert_eq!(parsed.problems.total(), 20_000);
        assert_eq!(
            parsed.problems.shown().len(),
            smsgate_core::sms::MAX_REPORTED_PROBLEMS
        );
        assert_eq!(parsed.problems.shown()[0].line, 2);
    }

    #[test]
    fn more_distinct_numbers_than_allowed_overflow_without_being_kept() {
        let many: String = (0..50).map(|i| format!("900000{i:02}\n")).collect();
        let parsed = parse_entries(&entries_from_text(&many), 10);
        assert!(parsed.recipients.overflowed());
        assert_eq!(parsed.recipients.len(), 10);
    }

    #[test]
    fn the_counter_names_encoding_and_segments() {
        assert_eq!(counter_text("hello"), "5 characters · GSM-7 · 1 segment");
        assert_eq!(counter_text("你好"), "2 characters · UCS-2 · 1 segment");
        assert_eq!(
            counter_text(&"a".repeat(161)),
            "161 characters · GSM-7 · 2 segments"
        );
    }

    fn form(priority: &str, send_at: &str, valid_for: &str) -> ComposeForm {
        ComposeForm {
            priority: priority.to_owned(),
            send_at: send_at.to_owned(),
            valid_for: valid_for.to_owned(),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-06T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_schedule_is_read_in_the_display_zone() {
        let tz = DisplayTz::default();
        assert_eq!(
            local_to_rfc3339("2026-12-24T09:00", &tz).unwrap(),
            "2026-12-24T09:00:00+08:00"
        );
        let options = parse_options(&form("high", "2026-12-24T09:00", "90"), &tz, now()).unwrap();
        assert_eq!(
            options.send_at,
            Some("2026-12-24T01:00:00Z".parse().unwrap())
        );
        assert_eq!(options.priority.as_str(), "high");
        assert_eq!(
            options.validity,
            smsgate_core::sms::Validity::For(std::time::Duration::from_secs(5400))
        );
        assert!(parse_options(&form("", "", ""), &tz, now())
            .unwrap()
            .is_default());
    }

    #[test]
    fn option_errors_land_on_their_field_in_the_forms_words() {
        let tz = DisplayTz::default();
        let err = |f| parse_options(&f, &tz, now()).unwrap_err();
        // 10:00 UTC is 18:00 in Hong Kong: 17:59 local is past.
        assert_eq!(
            err(form("normal", "2026-12-06T17:59", ""))
                .send_at
                .as_deref(),
            Some("The schedule must be in the future.")
        );
        assert!(err(form("normal", "tomorrow", "")).send_at.is_some());
        assert!(err(form("urgent", "", "")).priority.is_some());
        assert!(err(form("normal", "", "0")).valid_for.is_some());
        assert_eq!(
            err(form("normal", "", "ten")).valid_for.as_deref(),
            Some("Enter a whole number of minutes.")
        );
    }
}
