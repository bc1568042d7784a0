//! `opt-out add|remove|list|import`, on the caller's own list or (`--global`) everyone's.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::args::{scope, OptOutCommand, OptOutImport, OptOutList, OptOutNumber};
use crate::client::{Api, Body, Call};
use crate::error::CliError;
use crate::numbers;
use crate::output::Output;

pub async fn run(api: &Api, command: OptOutCommand, out: Output) -> Result<(), CliError> {
    match command {
        OptOutCommand::Add(args) => add(api, args, out).await,
        OptOutCommand::Remove(args) => remove(api, args, out).await,
        OptOutCommand::List(args) => list(api, args, out).await,
        OptOutCommand::Import(args) => import(api, args, out).await,
    }
}

fn list_name(global: bool) -> &'static str {
    if global {
        "the global opt-out list"
    } else {
        "your opt-out list"
    }
}

async fn add(api: &Api, args: OptOutNumber, out: Output) -> Result<(), CliError> {
    let number = numbers::parse_arg(&args.number)?;
    let body = json!({"phone_number": number.as_str(), "scope": scope(args.global)});
    let call = Call {
        body: Body::Json(&body),
        ..Call::new(Method::POST, "/api/opt-outs")
    };
    let answer = api.call(&call).await?;
    let added = answer.status == StatusCode::CREATED;
    out.result(&answer.data(), |_| {
        let what = if added { "added to" } else { "already on" };
        format!("{number} {what} {}", list_name(args.global))
    });
    Ok(())
}

async fn remove(api: &Api, args: OptOutNumber, out: Output) -> Result<(), CliError> {
    let number = numbers::parse_arg(&args.number)?;
    // `+` in a path segment must be encoded, or a server may read it as a space.
    let path = format!("/api/opt-outs/{}", number.as_str().replace('+', "%2B"));
    let query = [("scope", scope(args.global).to_owned())];
    let call = Call {
        query: &query,
        ..Call::new(Method::DELETE, &path)
    };
    api.call(&call).await?;
    // The API answers 204 without a body: say what was done.
    let data =
        json!({"phone_number": number.as_str(), "scope": scope(args.global), "removed": true});
    out.result(&data, |_| {
        format!("{number} removed from {}", list_name(args.global))
    });
    Ok(())
}

async fn list(api: &Api, args: OptOutList, out: Output) -> Result<(), CliError> {
    let mut query = vec![
        ("scope", scope(args.global).to_owned()),
        ("page", args.page.to_string()),
        ("per_page", args.per_page.to_string()),
    ];
    if let Some(search) = args.search {
        query.push(("q", search));
    }
    let call = Call {
        query: &query,
        ..Call::new(Method::GET, "/api/opt-outs")
    };
    let data = api.call(&call).await?.data();
    out.result(&data, |d| {
        let mut lines: Vec<String> = d["opt_outs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let s = |f: &str| e[f].as_str().unwrap_or("-").to_owned();
                format!(
                    "{:<16} {:<6} {:<6} {}",
                    s("phone_number"),
                    s("scope"),
                    s("source"),
                    s("created_at")
                )
            })
            .collect();
        lines.push(format!(
            "page {} of {}, {} number(s) on {}",
            d["current_page"],
            d["pages"],
            d["total"],
            list_name(args.global)
        ));
        lines.join("\n")
    });
    Ok(())
}

/// Checks every line here first (all bad lines reported, nothing imported), then uploads
/// the numbers in canonical form: the API reads exactly what was checked.
async fn import(api: &Api, args: OptOutImport, out: Output) -> Result<(), CliError> {
    let numbers = numbers::read_csv(&args.file, args.column.as_deref())?;
    let mut csv = String::from("phone_number\n");
    for number in &numbers {
        csv.push_str(number.as_str());
        csv.push('\n');
    }
    let query = [
        ("scope", scope(args.global).to_owned()),
        ("column", "phone_number".to_owned()),
    ];
    let call = Call {
        query: &query,
        body: Body::Csv(csv),
        timeout: std::time::Duration::from_secs(300),
        ..Call::new(Method::POST, "/api/opt-outs/import")
    };
    let data = api.call(&call).await?.data();
    out.result(&data, |d: &Value| {
        format!(
            "{} added to {}, {} already listed",
            d["added"],
            list_name(args.global),
            d["already_listed"]
        )
    });
    Ok(())
}
