//! The command line, as clap parses it. Every command carries examples in its `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  smsctl login --url http://localhost:3570 --username SMSadmin
  smsctl send --to '9123 4567' --text 'Hello'
  smsctl bulk --csv customers.csv --column mobile --text 'Sale starts today'
  smsctl watch 42
  smsctl export 42 -o report.csv
  SMSCTL_URL=https://sms.example.com SMSCTL_TOKEN=... smsctl status 42 --json

Exit codes: 0 ok, 1 the API refused (4xx), 2 usage or bad input (nothing sent),
3 network error or server failure (5xx), 4 --timeout ran out while following.";

/// Command-line client of the smsgate SMS API.
#[derive(Parser)]
#[command(name = "smsctl", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// API base URL [default: the one `login` stored, else http://localhost:3570]
    #[arg(long, global = true, env = "SMSCTL_URL")]
    pub url: Option<String>,
    /// API token, instead of the one `login` stored (for CI and scripts)
    #[arg(long, global = true, env = "SMSCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's data object as JSON on stdout, and nothing else there
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Log in and keep the token in ~/.config/smsctl/credentials.json (mode 0600)
    #[command(after_help = "\
Examples:
  smsctl login --url http://localhost:3570 --username SMSadmin
  grep '^ADMIN_PASSWORD=' .env | cut -d= -f2- | smsctl login --username SMSadmin --password-stdin")]
    Login(LoginArgs),
    /// Forget the stored token
    #[command(after_help = "Example:\n  smsctl logout")]
    Logout,
    /// Send one SMS to one or more numbers
    #[command(after_help = "\
Examples:
  smsctl send --to 91234567 --text 'Your code is 123456'
  smsctl send --to +85291234567 --to '6123 4567' --text 'Meeting at 3' --priority high
  smsctl send --to 91234567 --text 'Reminder' --send-at 2026-12-24T09:00:00+08:00 --valid-for 3600")]
    Send(SendArgs),
    /// Send one SMS to every number of a CSV file, and follow it to its end
    #[command(after_help = "\
Examples:
  smsctl bulk --csv customers.csv --text 'Sale starts today'
  smsctl bulk --csv export.csv --column mobile --text 'Hi' --no-wait --json

The CSV has a header row; --column picks the column by its header (default: the only
column, or the one named phone_number, phone or number). Every line is checked first:
bad lines are all listed with their line numbers and nothing is sent.")]
    Bulk(BulkArgs),
    /// Show a message: status and counters
    #[command(
        after_help = "Examples:\n  smsctl status 42\n  smsctl status 42 --json | jq .pending_count"
    )]
    Status(IdArg),
    /// Follow a message live until it is finished (polls every second)
    #[command(after_help = "Examples:\n  smsctl watch 42\n  smsctl watch 42 --timeout 600 --json")]
    Watch(WatchArgs),
    /// Cancel what of a message is not sent yet
    #[command(after_help = "Example:\n  smsctl cancel 42")]
    Cancel(IdArg),
    /// Download a message's recipients and their outcome as CSV (streamed)
    #[command(
        after_help = "Examples:\n  smsctl export 42 -o report.csv\n  smsctl export 42 | grep failed"
    )]
    Export(ExportArgs),
    /// Manage opt-out lists (numbers that are never sent to)
    #[command(subcommand)]
    OptOut(OptOutCommand),
}

#[derive(Args)]
pub struct LoginArgs {
    /// User name [default: asked for]
    #[arg(long)]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of asking for it
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args)]
pub struct IdArg {
    /// The message id (`send` and `bulk` print it)
    pub id: i64,
}

/// The traffic options every send takes.
#[derive(Args)]
pub struct SendOptions {
    /// Priority of the message
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,
    /// Send later: an RFC 3339 time, e.g. 2026-12-24T09:00:00+08:00
    #[arg(long, value_name = "TIME")]
    pub send_at: Option<String>,
    /// Give up on what is not sent this many seconds after it is due
    #[arg(long, value_name = "SECONDS", conflicts_with = "valid_until")]
    pub valid_for: Option<i64>,
    /// Give up on what is not sent at this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub valid_until: Option<String>,
    /// Send at most once per key (default: a new random key per run, so the CLI's own
    /// retries never send twice; give your own to make re-running the command safe)
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

#[derive(Args)]
pub struct SendArgs {
    /// Recipient: 8 Hong Kong digits (`9123 4567`) or E.164 (`+85291234567`); repeatable
    #[arg(long = "to", value_name = "NUMBER", required = true)]
    pub to: Vec<String>,
    /// The message text
    #[arg(long)]
    pub text: String,
    #[command(flatten)]
    pub options: SendOptions,
}

#[derive(Args)]
pub struct BulkArgs {
    /// CSV file with a header row
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// The column holding the numbers (its header)
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// The message text
    #[arg(long)]
    pub text: String,
    #[command(flatten)]
    pub options: SendOptions,
    /// Return once the API accepted the bulk, without following it
    #[arg(long)]
    pub no_wait: bool,
    /// Stop following after this many seconds (exit 4; the bulk goes on)
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub timeout: u64,
}

#[derive(Args)]
pub struct WatchArgs {
    /// The message id
    pub id: i64,
    /// Stop following after this many seconds (exit 4; the message goes on)
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub timeout: u64,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The message id
    pub id: i64,
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum OptOutCommand {
    /// Add a number to your opt-out list (or the global one: admins)
    #[command(
        after_help = "Examples:\n  smsctl opt-out add 91234567\n  smsctl opt-out add +85291234567 --global"
    )]
    Add(OptOutNumber),
    /// Take a number off your opt-out list (or the global one: admins)
    #[command(after_help = "Example:\n  smsctl opt-out remove 91234567")]
    Remove(OptOutNumber),
    /// List your opt-outs (or the global list)
    #[command(
        after_help = "Examples:\n  smsctl opt-out list\n  smsctl opt-out list --global --search 9123 --json"
    )]
    List(OptOutList),
    /// Add every number of a CSV file (all or nothing)
    #[command(after_help = "\
Example:
  smsctl opt-out import unsubscribed.csv --column phone

Every line is checked first: bad lines are all listed with their line numbers and nothing
is imported.")]
    Import(OptOutImport),
}

#[derive(Args)]
pub struct OptOutNumber {
    /// 8 Hong Kong digits or E.164
    pub number: String,
    /// The global list, which blocks everyone's sends (admins only)
    #[arg(long)]
    pub global: bool,
}

#[derive(Args)]
pub struct OptOutList {
    /// The global list instead of your own
    #[arg(long)]
    pub global: bool,
    /// Only numbers containing these digits
    #[arg(long, value_name = "DIGITS")]
    pub search: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    #[arg(long, default_value_t = 50)]
    pub per_page: u32,
}

#[derive(Args)]
pub struct OptOutImport {
    /// CSV file with a header row
    pub file: PathBuf,
    /// The column holding the numbers (its header)
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// The global list (admins only)
    #[arg(long)]
    pub global: bool,
}

/// `user` or `global`, as the opt-out routes name the lists.
pub fn scope(global: bool) -> &'static str {
    if global {
        "global"
    } else {
        "user"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples() {
        fn check(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.has_subcommands() {
                    check(sub, &path);
                } else {
                    let help = sub
                        .get_after_help()
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    assert!(help.contains("smsctl "), "{path} has no example");
                }
            }
        }
        check(&Cli::command(), "smsctl");
    }
}
