//! Managing the opt-out lists, for the API (`/api/opt-outs`) and the panel (`/opt-outs`).
//! Every user manages their own list; the global list (numbers no one may send to) is read
//! by everyone, since it stops their sends, and changed by administrators only, each change
//! audited. Numbers are domain types, parsed at the edge; a CSV file is parsed here (one
//! reader for both edges) before anything is stored.

use chrono::{DateTime, Utc};
use serde_json::json;
use smsgate_shared::domain::PhoneNumber;
use sqlx::PgPool;

use super::import::{numbers_from_csv, CsvError};
use super::repo::{self, ListedRow};
use crate::admin::audit;
use crate::sms::service::Page;

/// Which list: the caller's own, or the one that stops everyone's sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    User,
    Global,
}

impl Scope {
    /// `user` or `global`; absent or empty is `user`.
    pub fn parse(raw: Option<&str>) -> Result<Scope, OptOutError> {
        match raw.map(str::trim) {
            None | Some("" | "user") => Ok(Scope::User),
            Some("global") => Ok(Scope::Global),
            Some(_) => Err(OptOutError::BadScope),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Global => "global",
        }
    }

    /// The `user_id` of the list's rows.
    fn owner(self, caller: &Actor) -> Option<i64> {
        match self {
            Scope::User => Some(caller.user_id),
            Scope::Global => None,
        }
    }
}

/// Who is asking, as both edges know them.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub user_id: i64,
    pub is_admin: bool,
}

/// Part of a number to look for: its digits (spaces, `+`, `-` and brackets are dropped, so
/// `+852 9123` and `8529123` find the same numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitSearch(String);

impl DigitSearch {
    /// Longest search: more digits than any E.164 number has finds nothing anyway.
    const MAX_DIGITS: usize = 15;

    /// None for an empty search (the whole list).
    pub fn parse(raw: &str) -> Result<Option<DigitSearch>, OptOutError> {
        let mut digits = String::new();
        for c in raw.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '+' | '-' | '(' | ')' => {}
                _ => return Err(OptOutError::BadSearch),
            }
        }
        if digits.len() > Self::MAX_DIGITS {
            return Err(OptOutError::BadSearch);
        }
        Ok((!digits.is_empty()).then_some(DigitSearch(digits)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One listed number.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Canonical E.164.
    pub phone: String,
    pub scope: Scope,
    /// `reply` (the recipient replied STOP to a SIM), `admin` (an administrator put it on
    /// the global list) or `api` (a user put it on their own list, by API, panel or import).
    pub source: String,
    pub created_at: DateTime<Utc>,
}

impl From<ListedRow> for Entry {
    fn from(row: ListedRow) -> Entry {
        Entry {
            phone: row.phone,
            scope: if row.user_id.is_some() {
                Scope::User
            } else {
                Scope::Global
            },
            source: row.source,
            created_at: row.created_at,
        }
    }
}

/// What [`add`] did.
#[derive(Debug)]
pub struct Added {
    pub entry: Entry,
    /// False when the number was listed already (the entry is the existing one).
    pub new: bool,
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub added: u64,
    pub already_listed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    #[error("only administrators may change the global opt-out list")]
    NotAdmin,
    #[error("the number is not on that opt-out list")]
    NotListed,
    #[error("scope must be `user` or `global`")]
    BadScope,
    #[error("search by digits (at most 15; spaces, +, - and brackets are ignored)")]
    BadSearch,
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The source of the rows a caller adds: `admin` on the global list, `api` on their own.
fn source_of(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "api",
        Scope::Global => "admin",
    }
}

fn check_may_change(caller: &Actor, scope: Scope) -> Result<(), OptOutError> {
    if scope == Scope::Global && !caller.is_admin {
        return Err(OptOutError::NotAdmin);
    }
    Ok(())
}

/// A page of a list, newest first. Anyone may read the global list.
pub async fn list(
    db: &PgPool,
    caller: &Actor,
    scope: Scope,
    search: Option<&DigitSearch>,
    page: i64,
    per_page: i64,
) -> Result<Page<Entry>, OptOutError> {
    let digits = search.map(DigitSearch::as_str);
    let rows = match scope {
        Scope::User => {
            let user = caller.user_id;
            Page::fetch(
                page,
                per_page,
                |limit, offset| repo::list_user(db, user, digits, limit, offset),
                repo::count_user(db, user, digits),
            )
            .await?
        }
        Scope::Global => {
            Page::fetch(
                page,
                per_page,
                |limit, offset| repo::list_global(db, digits, limit, offset),
                repo::count_global(db, digits),
            )
            .await?
        }
    };
    Ok(Page {
        items: rows.items.into_iter().map(Entry::from).collect(),
        total: rows.total,
        page: rows.page,
        per_page: rows.per_page,
    })
}

/// Puts `phone` on the list; listing a number twice is not an error (the first entry
/// stays). Sends accepted from then on end `opted_out` for it.
pub async fn add(
    db: &PgPool,
    caller: &Actor,
    scope: Scope,
    phone: &PhoneNumber,
) -> Result<Added, OptOutError> {
    check_may_change(caller, scope)?;
    let owner = scope.owner(caller);
    let mut tx = db.begin().await?;
    let added = match repo::insert(&mut tx, phone.as_str(), owner, source_of(scope)).await? {
        Some(row) => {
            if scope == Scope::Global {
                audit::record(
                    &mut *tx,
                    Some(caller.user_id),
                    "opt_out.add",
                    &format!("opt_out:{}", phone.as_str()),
                    json!({"scope": "global"}),
                )
                .await?;
            }
            Added {
                entry: row.into(),
                new: true,
            }
        }
        // Listed already, or by a concurrent request that committed first (its row is
        // visible to this new statement).
        None => Added {
            entry: repo::find(&mut tx, phone.as_str(), owner)
                .await?
                .ok_or(OptOutError::NotListed)?
                .into(),
            new: false,
        },
    };
    tx.commit().await?;
    Ok(added)
}

/// Takes `phone` off the list, whatever put it there (an administrator may lift an opt-out
/// a reply made, e.g. when the recipient asks by phone).
pub async fn remove(
    db: &PgPool,
    caller: &Actor,
    scope: Scope,
    phone: &PhoneNumber,
) -> Result<(), OptOutError> {
    check_may_change(caller, scope)?;
    let mut tx = db.begin().await?;
    let source = repo::delete(&mut tx, phone.as_str(), scope.owner(caller))
        .await?
        .ok_or(OptOutError::NotListed)?;
    if scope == Scope::Global {
        audit::record(
            &mut *tx,
            Some(caller.user_id),
            "opt_out.remove",
            &format!("opt_out:{}", phone.as_str()),
            json!({"scope": "global", "source": source}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Puts every number of a CSV file on the list in one transaction, or none of them: the
/// file is read whole first, and any bad line refuses it ([`CsvError::BadLines`] names
/// them). `column` names the column to read (see [`numbers_from_csv`]).
pub async fn import_csv(
    db: &PgPool,
    caller: &Actor,
    scope: Scope,
    text: &str,
    column: Option<&str>,
) -> Result<Imported, OptOutError> {
    // Before reading the file: a refusal does not depend on what it holds.
    check_may_change(caller, scope)?;
    let numbers = numbers_from_csv(text, column)?;
    import(db, caller, scope, &numbers).await
}

/// Puts `numbers` (distinct) on the list in one statement and one transaction.
pub async fn import(
    db: &PgPool,
    caller: &Actor,
    scope: Scope,
    numbers: &[PhoneNumber],
) -> Result<Imported, OptOutError> {
    check_may_change(caller, scope)?;
    let phones: Vec<String> = numbers.iter().map(|n| n.as_str().to_owned()).collect();
    let mut tx = db.begin().await?;
    let added = repo::insert_many(&mut tx, &phones, scope.owner(caller), source_of(scope)).await?;
    let imported = Imported {
        added,
        already_listed: phones.len() as u64 - added,
    };
    if scope == Scope::Global {
        // Counts, not the numbers: an import may hold 100,000 of them.
        audit::record(
            &mut *tx,
            Some(caller.user_id),
            "opt_out.import",
            "opt_outs:global",
            json!({"added": imported.added, "already_listed": imported.already_listed}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_default_to_the_callers_own_list() {
        assert_eq!(Scope::parse(None).unwrap(), Scope::User);
        assert_eq!(Scope::parse(Some("")).unwrap(), Scope::User);
        assert_eq!(Scope::parse(Some("global")).unwrap(), Scope::Global);
        assert!(matches!(
            Scope::parse(Some("everyone")),
            Err(OptOutError::BadScope)
        ));
    }

    #[test]
    fn a_search_keeps_the_digits_of_a_number_as_people_write_it() {
        let found = DigitSearch::parse("+852 9123-4567").unwrap().unwrap();
        assert_eq!(found.as_str(), "85291234567");
        assert_eq!(DigitSearch::parse("  ").unwrap(), None);
        assert!(DigitSearch::parse("9123%").is_err(), "no LIKE wildcards");
        assert!(DigitSearch::parse("abc").is_err());
        assert!(DigitSearch::parse(&"1".repeat(16)).is_err());
    }

    #[test]
    fn only_admins_change_the_global_list_but_anyone_their_own() {
        let user = Actor {
            user_id: 7,
            is_admin: false,
        };
        let admin = Actor {
            user_id: 1,
            is_admin: true,
        };
        assert!(matches!(
            check_may_change(&user, Scope::Global),
            Err(OptOutError::NotAdmin)
        ));
        assert!(check_may_change(&user, Scope::User).is_ok());
        assert!(check_may_change(&admin, Scope::Global).is_ok());
        assert_eq!(Scope::Global.owner(&admin), None);
        assert_eq!(Scope::User.owner(&user), Some(7));
    }
}
