//! One module per group of commands; `run` picks the one asked for.

mod auth;
mod message;
mod opt_out;
mod send;

use crate::args::{Cli, Command};
use crate::client::Api;
use crate::config;
use crate::error::CliError;
use crate::output::Output;

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output {
        json: cli.global.json,
    };
    let global = &cli.global;
    let api = || {
        let target = config::resolve(global.url.as_deref(), global.token.as_deref())?;
        Api::new(target)
    };
    match cli.command {
        Command::Login(args) => auth::login(global.url.as_deref(), args, out).await,
        Command::Logout => auth::logout(out),
        Command::Send(args) => send::send(&api()?, args, out).await,
        Command::Bulk(args) => send::bulk(&api()?, args, out).await,
        Command::Status(args) => message::status(&api()?, args.id, out).await,
        Command::Watch(args) => message::watch(&api()?, args, out).await,
        Command::Cancel(args) => message::cancel(&api()?, args.id, out).await,
        Command::Export(args) => message::export(&api()?, args, out).await,
        Command::OptOut(command) => opt_out::run(&api()?, command, out).await,
    }
}
