//! `login` and `logout`.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::json;

use crate::args::LoginArgs;
use crate::client::Api;
use crate::config::{self, Credentials, Target};
use crate::error::CliError;
use crate::output::Output;

pub async fn login(url: Option<&str>, args: LoginArgs, out: Output) -> Result<(), CliError> {
    let path = config::credentials_path()?;
    let url = match url {
        Some(url) => config::normalize_url(url)?,
        None => config::load(&path)?.map_or_else(|| config::DEFAULT_URL.to_owned(), |c| c.url),
    };
    let username = match args.username {
        Some(username) => username,
        None => ask_username()?,
    };
    let password = if args.password_stdin {
        read_stdin_line()?
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {username} at {url}: "))
            .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?
    } else {
        return Err(CliError::Usage(
            "no terminal to ask for the password on: pass --password-stdin and pipe it in".into(),
        ));
    };
    let api = Api::new(Target {
        url: url.clone(),
        token: None,
    })?;
    let answer = api.login(&username, &password).await?;
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| CliError::Api {
            status: 200,
            code: "NO_TOKEN".into(),
            message: "the login answer has no access_token".into(),
        })?;
    config::save(
        &path,
        &Credentials {
            url: url.clone(),
            token: token.to_owned(),
        },
    )?;
    // Everything of the answer but the token itself.
    let data = json!({
        "url": url,
        "username": username,
        "credentials": path,
        "token_type": answer["token_type"],
        "expires_in": answer["expires_in"],
    });
    out.result(&data, |_| {
        let valid = answer["expires_in"]
            .as_i64()
            .map_or(String::new(), |s| format!(", valid for {} h", s / 3600));
        format!(
            "logged in to {url} as {username}; token kept in {}{valid}",
            path.display()
        )
    });
    Ok(())
}

pub fn logout(out: Output) -> Result<(), CliError> {
    let path = config::credentials_path()?;
    let removed = config::remove(&path)?;
    out.result(&json!({"removed": removed, "credentials": path}), |_| {
        if removed {
            format!("logged out: removed {}", path.display())
        } else {
            format!("not logged in (no {})", path.display())
        }
    });
    Ok(())
}

fn ask_username() -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage("pass --username".into()));
    }
    eprint!("Username: ");
    let _ = std::io::stderr().flush();
    read_stdin_line()
}

fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        return Err(CliError::Usage("empty input on stdin".into()));
    }
    Ok(line)
}
