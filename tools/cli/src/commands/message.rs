//! `status`, `watch`, `cancel` and `export`: one message after it was sent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::args::{ExportArgs, WatchArgs};
use crate::client::{Api, Call};
use crate::error::CliError;
use crate::follow::{follow, message};
use crate::output::{self, Output};

pub async fn status(api: &Api, id: i64, out: Output) -> Result<(), CliError> {
    let data = message(api, id).await?;
    out.result(&data, output::message);
    Ok(())
}

pub async fn watch(api: &Api, args: WatchArgs, out: Output) -> Result<(), CliError> {
    let mut messages = follow(api, &[args.id], Duration::from_secs(args.timeout)).await?;
    out.result(&messages.remove(0), output::message);
    Ok(())
}

pub async fn cancel(api: &Api, id: i64, out: Output) -> Result<(), CliError> {
    let path = format!("/api/sms/{id}/cancel");
    let data = api.call(&Call::new(Method::POST, &path)).await?.data();
    out.result(&data, |d| {
        format!(
            "message {id}: {}; {} recipient(s) cancelled now ({} sent, {} failed, {} cancelled in all)",
            d["status"].as_str().unwrap_or("?"),
            d["cancelled_now"],
            d["success_count"],
            d["failed_count"],
            d["cancelled_count"],
        )
    });
    Ok(())
}

/// Streams the CSV chunk by chunk as it arrives: a 100,000-row export is never held in
/// memory. To stdout it is the output whatever `--json` says (CSV is already for
/// machines); to a file, `--json` describes what was written.
pub async fn export(api: &Api, args: ExportArgs, out: Output) -> Result<(), CliError> {
    let path = format!("/api/sms/{}/recipients.csv", args.id);
    let response = api.stream(&path).await?;
    let url = format!("{}{path}", api.base_url());
    match &args.output {
        None => {
            let stdout = std::io::stdout().lock();
            match copy(response, BufWriter::new(stdout), &url).await {
                // `smsctl export 42 | head` closes the pipe early: not a failure.
                Err(CliError::File { source, .. })
                    if source.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        Some(file) => {
            let written = export_to_file(response, file, &url).await?;
            let data = json!({"message_id": args.id, "path": file, "bytes": written});
            out.result(&data, |_| {
                format!("wrote {written} bytes to {}", file.display())
            });
            Ok(())
        }
    }
}

async fn export_to_file(
    response: reqwest::Response,
    file: &Path,
    url: &str,
) -> Result<u64, CliError> {
    let handle = File::create(file).map_err(|source| CliError::File {
        path: file.to_owned(),
        source,
    })?;
    let result = copy(response, BufWriter::new(handle), url).await;
    let result = result.map_err(|e| match e {
        CliError::File { source, .. } => CliError::File {
            path: file.to_owned(),
            source,
        },
        other => other,
    });
    if result.is_err() {
        // Half an export looks like a whole one: better none.
        let _ = std::fs::remove_file(file);
    }
    result
}

async fn copy(
    mut response: reqwest::Response,
    mut to: impl Write,
    url: &str,
) -> Result<u64, CliError> {
    let io_error = |source| CliError::File {
        path: "<stdout>".into(),
        source,
    };
    let mut written = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CliError::network(url, &e))?
    {
        to.write_all(&chunk).map_err(io_error)?;
        written += chunk.len() as u64;
    }
    to.flush().map_err(io_error)?;
    Ok(written)
}
