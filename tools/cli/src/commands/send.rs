//! `send` and `bulk`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Map, Value};
use smsgate_shared::domain::PhoneNumber;

use crate::args::{BulkArgs, SendArgs, SendOptions};
use crate::client::{new_idempotency_key, Api, Body, Call};
use crate::error::CliError;
use crate::follow::follow;
use crate::numbers;
use crate::output::{self, Output};

/// The API's limit of recipients per `send-bulk` request; a larger CSV is sent as several
/// messages.
const MAX_PER_REQUEST: usize = 100_000;
/// Uploading 100,000 numbers and storing them takes seconds, not the default 30 s cap.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn send(api: &Api, args: SendArgs, out: Output) -> Result<(), CliError> {
    let mut recipients = Vec::new();
    let mut bad = Vec::new();
    for raw in &args.to {
        match numbers::parse_arg(raw) {
            Ok(number) => recipients.push(number),
            Err(e) => bad.push(format!("--to {e}")),
        }
    }
    if !bad.is_empty() {
        return Err(CliError::Usage(bad.join("\n")));
    }
    let key = args
        .options
        .idempotency_key
        .clone()
        .unwrap_or_else(new_idempotency_key);
    let mut body = request_body(&args.options, &args.text);
    // One number is the plain send; several are one message with several recipients.
    let path = if let [one] = recipients.as_slice() {
        body.insert("recipient".into(), one.as_str().into());
        "/api/sms"
    } else {
        body.insert("recipients".into(), numbers_json(&recipients));
        "/api/sms/send-bulk"
    };
    let body = Value::Object(body);
    let call = Call {
        body: Body::Json(&body),
        idempotency_key: Some(&key),
        ..Call::new(Method::POST, path)
    };
    let data = api.call_once(&call).await?.data();
    out.result(&data, |d| {
        format!(
            "message {} accepted: {} recipient(s), {}",
            d["id"],
            recipients.len(),
            d["status"].as_str().unwrap_or("?")
        )
    });
    out.note(format!("follow it with: smsctl watch {}", data["id"]));
    Ok(())
}

pub async fn bulk(api: &Api, args: BulkArgs, out: Output) -> Result<(), CliError> {
    let recipients = numbers::read_csv(&args.csv, args.column.as_deref())?;
    let key = args
        .options
        .idempotency_key
        .clone()
        .unwrap_or_else(new_idempotency_key);
    let chunks: Vec<&[PhoneNumber]> = recipients.chunks(MAX_PER_REQUEST).collect();
    let mut accepted = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        // One key per request: the same run retried sends none of them twice.
        let key = if chunks.len() == 1 {
            key.clone()
        } else {
            format!("{key}-{}", i + 1)
        };
        let mut body = request_body(&args.options, &args.text);
        body.insert("recipients".into(), numbers_json(chunk));
        let body = Value::Object(body);
        out.note(format!(
            "uploading {} numbers from {}…",
            chunk.len(),
            args.csv.display()
        ));
        let call = Call {
            body: Body::Json(&body),
            idempotency_key: Some(&key),
            timeout: UPLOAD_TIMEOUT,
            ..Call::new(Method::POST, "/api/sms/send-bulk")
        };
        let data = api.call_once(&call).await?.data();
        out.note(format!(
            "bulk {} accepted: {} recipients",
            data["id"], data["total"]
        ));
        accepted.push(data);
    }
    let ids: Vec<i64> = accepted.iter().filter_map(|d| d["id"].as_i64()).collect();
    let results = if args.no_wait {
        accepted
    } else {
        out.note("following it (Ctrl-C stops following, not the bulk)");
        follow(api, &ids, Duration::from_secs(args.timeout)).await?
    };
    let data = match <[Value; 1]>::try_from(results) {
        Ok([one]) => one,
        Err(several) => Value::Array(several),
    };
    out.result(&data, |d| match d {
        Value::Array(messages) => messages.iter().map(summary).collect::<Vec<_>>().join("\n"),
        one => summary(one),
    });
    Ok(())
}

/// One message on one line: the 202's data (`total`) or a followed message's counters.
fn summary(m: &Value) -> String {
    if m.get("recipient_count").is_some() {
        format!(
            "message {}: {} ({})",
            m["id"],
            m["status"].as_str().unwrap_or("?"),
            output::counters(m)
        )
    } else {
        format!(
            "message {}: {} recipients, {}; follow it with: smsctl watch {}",
            m["id"],
            m["total"],
            m["status"].as_str().unwrap_or("?"),
            m["id"]
        )
    }
}

/// The fields every send takes: the text and the traffic options given.
fn request_body(options: &SendOptions, text: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("content".into(), text.into());
    if let Some(priority) = options.priority {
        body.insert("priority".into(), priority.as_str().into());
    }
    if let Some(send_at) = &options.send_at {
        body.insert("send_at".into(), send_at.as_str().into());
    }
    if let Some(valid_for) = options.valid_for {
        body.insert("valid_for".into(), valid_for.into());
    }
    if let Some(valid_until) = &options.valid_until {
        body.insert("valid_until".into(), valid_until.as_str().into());
    }
    body
}

fn numbers_json(numbers: &[PhoneNumber]) -> Value {
    json!(numbers.iter().map(PhoneNumber::as_str).collect::<Vec<_>>())
}
