//! `/opt-outs`: the signed-in user's own opt-out list and the global one (searchable,
//! paged), with forms to add or remove one number and to import many from a CSV file or a
//! pasted list. Everyone reads the global list (it stops their sends too); only
//! administrators get its forms. The rules, the CSV reader and the audit entries live in
//! `optout::service`, shared with `/api/opt-outs`.

use crate::{Flash, Page, WebError};
use axum::extract::{Multipart, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use smsgate_shared::domain::PhoneNumber;

use super::errors::db_error;
use super::forms::CsrfForm;
use super::session::{PanelUser, SignedIn};
use crate::state::WebState;
use smsgate_core::optout::service::{self, Actor, DigitSearch, Entry, OptOutError, Scope};
use smsgate_core::optout::{CsvError, MAX_IMPORT_BYTES};
use smsgate_core::params::PageNumber;

const OPT_OUTS: &str = "/opt-outs";
/// Numbers per page.
const PAGE_SIZE: i64 = 50;
/// How many bad line numbers a flash names (a flash holds about 500 characters).
const LINES_NAMED: usize = 30;

fn list_path(scope: Scope) -> String {
    match scope {
        Scope::User => OPT_OUTS.to_owned(),
        Scope::Global => format!("{OPT_OUTS}?scope=global"),
    }
}

fn actor(user: &PanelUser) -> Actor {
    Actor {
        user_id: user.session.user_id,
        is_admin: user.session.is_admin,
    }
}

/// Whose list a flash speaks of.
fn list_name(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "your opt-out list",
        Scope::Global => "the global opt-out list",
    }
}

/// The panel's view of an opt-out error: a refused change goes back to the list with the
/// reason; a non-admin's change to the global list is a 403 page, as the API's is a 403.
fn optout_error(err: OptOutError, scope: Scope) -> WebError {
    let back = list_path(scope);
    match err {
        OptOutError::NotAdmin => WebError::Forbidden,
        OptOutError::Database(e) => db_error(e),
        OptOutError::Csv(CsvError::BadLines(problems)) => {
            let mut lines: Vec<String> = problems
                .shown()
                .iter()
                .take(LINES_NAMED)
                .map(|b| b.line.to_string())
                .collect();
            if problems.total() > lines.len() {
                lines.push(format!("and {} more", problems.total() - lines.len()));
            }
            let first = &problems.shown()[0];
            WebError::refused(
                back,
                format!(
                    "Nothing imported: {} bad line(s): {}. Line {}: `{}`: {}.",
                    problems.total(),
                    lines.join(", "),
                    first.line,
                    first.value,
                    first.reason
                ),
            )
        }
        other => WebError::refused(back, format!("Nothing changed: {other}.")),
    }
}

/// An entry as the page lists it; times in DISPLAY_TZ.
#[derive(Serialize)]
struct EntryItem {
    phone: String,
    source: String,
    created: String,
    created_iso: String,
}

/// The query string as typed. The page number is read leniently (a stale link shows the
/// first page); a bad scope or search is refused with the reason.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
}

pub async fn list_opt_outs(
    State(app): State<WebState>,
    user: PanelUser,
    Query(query): Query<ListQuery>,
) -> Result<Page, WebError> {
    let scope = Scope::parse(Some(&query.scope)).map_err(|e| optout_error(e, Scope::User))?;
    let search = DigitSearch::parse(&query.q).map_err(|e| optout_error(e, scope))?;
    let page: i64 = query
        .page
        .trim()
        .parse()
        .unwrap_or(1)
        .clamp(1, PageNumber::MAX);
    let tz = app.panel.display_tz;
    let listed = service::list(
        &app.core.db,
        &actor(&user),
        scope,
        search.as_ref(),
        page,
        PAGE_SIZE,
    )
    .await
    .map_err(|e| optout_error(e, scope))?;
    let (total, pages) = (listed.total, listed.pages().max(1));
    let entries: Vec<EntryItem> = listed
        .items
        .into_iter()
        .map(|e: Entry| EntryItem {
            created: tz.format(e.created_at),
            created_iso: tz.machine(e.created_at),
            phone: e.phone,
            source: e.source,
        })
        .collect();
    let q = search.as_ref().map(DigitSearch::as_str).unwrap_or_default();
    let url = |p: i64| format!("{OPT_OUTS}?scope={}&q={q}&page={p}", scope.as_str());
    let may_change = scope == Scope::User || user.session.is_admin;
    Ok(Page::new("opt_outs.html", user.layout(&app, "opt-outs"))
        .with("scope", scope.as_str())
        .with("may_change", may_change)
        .with("entries", entries)
        .with("q", q)
        .with("total", total)
        .with("page", page.min(pages))
        .with("pages", pages)
        .with("max_lines", smsgate_core::optout::MAX_IMPORT_LINES)
        .with("newer_url", (page > 1).then(|| url((page - 1).min(pages))))
        .with("older_url", (page < pages).then(|| url(page + 1))))
}

/// The add and remove forms: one number and the list it is for.
#[derive(Deserialize)]
pub struct NumberForm {
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    scope: String,
}

impl NumberForm {
    fn parse(&self) -> Result<(Scope, PhoneNumber), WebError> {
        let scope = Scope::parse(Some(&self.scope)).map_err(|e| optout_error(e, Scope::User))?;
        let phone = PhoneNumber::parse_dialable(&self.phone_number).map_err(|e| {
            WebError::refused(
                list_path(scope),
                format!("`{}` is not a phone number: {e}.", self.phone_number.trim()),
            )
        })?;
        Ok((scope, phone))
    }
}

pub async fn add_opt_out(
    State(app): State<WebState>,
    CsrfForm { user, form }: CsrfForm<PanelUser, NumberForm>,
) -> Result<Response, WebError> {
    let (scope, phone) = form.parse()?;
    let added = service::add(&app.core.db, &actor(&user), scope, &phone)
        .await
        .map_err(|e| optout_error(e, scope))?;
    let text = if added.new {
        format!("{} added to {}.", phone.as_str(), list_name(scope))
    } else {
        format!("{} was already on {}.", phone.as_str(), list_name(scope))
    };
    Ok(Flash::success(text).redirect(&list_path(scope)))
}

pub async fn remove_opt_out(
    State(app): State<WebState>,
    CsrfForm { user, form }: CsrfForm<PanelUser, NumberForm>,
) -> Result<Response, WebError> {
    let (scope, phone) = form.parse()?;
    service::remove(&app.core.db, &actor(&user), scope, &phone)
        .await
        .map_err(|e| optout_error(e, scope))?;
    let text = format!(
        "{} removed from {}: sends to it go out again.",
        phone.as_str(),
        list_name(scope)
    );
    Ok(Flash::success(text).redirect(&list_path(scope)))
}

/// The import form (multipart, for the file): a CSV file, or numbers pasted one per line.
#[derive(Default)]
struct ImportForm {
    csrf_token: String,
    scope: String,
    column: String,
    file: Option<Vec<u8>>,
    pasted: String,
}

async fn read_import_form(mut multipart: Multipart) -> Result<ImportForm, WebError> {
    let unreadable = |_| WebError::BadRequest("The form could not be read.".into());
    let mut form = ImportForm::default();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "csv" => {
                let has_file = field.file_name().is_some_and(|n| !n.is_empty());
                let bytes = field.bytes().await.map_err(unreadable)?;
                if has_file && !bytes.is_empty() {
                    form.file = Some(bytes.to_vec());
                }
            }
            "csrf_token" => form.csrf_token = field.text().await.map_err(unreadable)?,
            "scope" => form.scope = field.text().await.map_err(unreadable)?,
            "column" => form.column = field.text().await.map_err(unreadable)?,
            "numbers" => form.pasted = field.text().await.map_err(unreadable)?,
            _ => {}
        }
    }
    Ok(form)
}

/// Imports the chosen file (or, without one, the pasted numbers) whole or not at all; a
/// refusal names the bad lines.
pub async fn import_opt_outs(
    State(app): State<WebState>,
    user: PanelUser,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_import_form(multipart).await?;
    user.session.verify_csrf(&form.csrf_token)?;
    let scope = Scope::parse(Some(&form.scope)).map_err(|e| optout_error(e, Scope::User))?;
    let back = list_path(scope);
    let text = match form.file {
        Some(bytes) => String::from_utf8(bytes).map_err(|_| {
            WebError::refused(
                &back,
                "The file is not UTF-8 text; save it as CSV UTF-8 and upload it again.",
            )
        })?,
        None => form.pasted,
    };
    if text.len() > MAX_IMPORT_BYTES {
        let limit = MAX_IMPORT_BYTES >> 20;
        return Err(WebError::refused(
            back,
            format!("The list is larger than {limit} MB; split it."),
        ));
    }
    let column = Some(form.column.trim()).filter(|c| !c.is_empty());
    let imported = service::import_csv(&app.core.db, &actor(&user), scope, &text, column)
        .await
        .map_err(|e| optout_error(e, scope))?;
    let text = format!(
        "Imported into {}: {} added, {} already listed.",
        list_name(scope),
        imported.added,
        imported.already_listed
    );
    Ok(Flash::success(text).redirect(&back))
}
