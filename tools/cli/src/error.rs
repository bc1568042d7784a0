//! The CLI's one error type, and the exit code each kind of failure gets (documented in
//! `docs/cli.md`; scripts branch on them).

use std::path::PathBuf;

/// Exit codes. 0 is success.
pub mod exit {
    /// The API refused the request (a 4xx answer).
    pub const API_REFUSED: u8 = 1;
    /// Bad usage or bad input (arguments, a CSV line, a config file): nothing was sent.
    pub const BAD_INPUT: u8 = 2;
    /// The API could not be reached or failed (network error, 5xx).
    pub const UNAVAILABLE: u8 = 3;
    /// `--timeout` ran out while following a message; the message itself goes on.
    pub const TIMED_OUT: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that parse but make no sense together, or a missing login.
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error status; `code` and `message` come from its
    /// `{"error":{"code","message"}}` body (or stand in for a body that is not one).
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: `cause` is the chain of reasons (refused, DNS, timeout…).
    #[error("cannot reach {url}: {cause}")]
    Network { url: String, cause: String },
    /// Lines of an input file that are not what they must be, each already formatted as
    /// `file.csv:17: "12ab": not a phone number (…)`. Every bad line is listed.
    #[error("{}", bad_lines(.0))]
    BadLines(Vec<String>),
    /// A file the CLI reads or writes (credentials, CSV, export target).
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The credentials file exists but is not ours to read.
    #[error("{}: {reason}; run `smsctl login` again", .path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error(
        "gave up waiting after {seconds} s (--timeout); message {id} goes on: `smsctl watch {id}`"
    )]
    TimedOut { id: i64, seconds: u64 },
}

fn bad_lines(lines: &[String]) -> String {
    let noun = if lines.len() == 1 { "line" } else { "lines" };
    format!(
        "{} bad {noun}, nothing was sent:\n{}",
        lines.len(),
        lines.join("\n")
    )
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { status, .. } if *status >= 500 => exit::UNAVAILABLE,
            CliError::Api { .. } => exit::API_REFUSED,
            CliError::Network { .. } => exit::UNAVAILABLE,
            CliError::Usage(_)
            | CliError::BadLines(_)
            | CliError::File { .. }
            | CliError::Credentials { .. } => exit::BAD_INPUT,
            CliError::TimedOut { .. } => exit::TIMED_OUT,
        }
    }

    /// Worth trying again with the same idempotency key: nothing answered, or the server
    /// failed or was busy with the same key.
    pub fn is_transient(&self) -> bool {
        match self {
            CliError::Network { .. } => true,
            CliError::Api { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "IDEMPOTENCY_KEY_IN_USE"
            }
            _ => false,
        }
    }

    /// A reqwest failure, with every cause in its chain (reqwest's own message is only
    /// "error sending request"; the reason, e.g. "Connection refused", is deeper).
    pub fn network(url: &str, err: &reqwest::Error) -> CliError {
        let mut causes = vec![err.to_string()];
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !causes.iter().any(|c| c.contains(&text)) {
                causes.push(text);
            }
            source = cause.source();
        }
        // reqwest repeats the URL (with its query) in its own message; ours names it once.
        let cause = causes
            .into_iter()
            .map(|c| c.replace(&format!(" for url ({url})"), ""))
            .collect::<Vec<_>>()
            .join(": ");
        CliError::Network {
            url: url.to_owned(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_the_contract_says() {
        let err = CliError::Api {
            status: 400,
            code: "EMPTY_CONTENT".into(),
            message: "content must not be empty".into(),
        };
        assert_eq!(
            err.to_string(),
            "content must not be empty (EMPTY_CONTENT, HTTP 400)"
        );
        assert_eq!(err.exit_code(), exit::API_REFUSED);
        assert!(!err.is_transient());
    }

    #[test]
    fn server_failures_and_network_errors_exit_3_and_are_retried() {
        let err = CliError::Api {
            status: 503,
            code: "SERVICE_UNAVAILABLE".into(),
            message: "down".into(),
        };
        assert_eq!(err.exit_code(), exit::UNAVAILABLE);
        assert!(err.is_transient());
        let err = CliError::Network {
            url: "http://127.0.0.1:9".into(),
            cause: "Connection refused".into(),
        };
        assert_eq!(err.exit_code(), exit::UNAVAILABLE);
    }

    #[test]
    fn bad_lines_are_all_listed() {
        let err = CliError::BadLines(vec!["a.csv:2: x".into(), "a.csv:9: y".into()]);
        assert_eq!(
            err.to_string(),
            "2 bad lines, nothing was sent:\na.csv:2: x\na.csv:9: y"
        );
        assert_eq!(err.exit_code(), exit::BAD_INPUT);
    }
}
