//! A user's sending limits as admins change them (issue #14): a change names only the
//! limits it touches, each one kept, cleared or set, and is checked here once for the panel
//! and the JSON API. `quota::charge` enforces the first three; the releaser reads
//! `share_weight` and the send path `default_valid_for_secs`.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::repo::SendingLimits;
use super::users::UserAdminError;

/// The longest default validity: a message that may wait longer than five weeks for the
/// gateway is not one anybody still wants delivered.
pub const MAX_DEFAULT_VALID_FOR_SECS: i64 = 35 * 24 * 3600;

/// A change to one setting: leave it, clear it (NULL: unlimited / none), or set it.
///
/// As a serde field with `#[serde(default)]`, an absent key is `Keep`, JSON `null` is
/// `Clear` and a value is `Set`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Patch::Set(value),
            None => Patch::Clear,
        })
    }
}

/// The limits a change touches, as received (unchecked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsChange {
    pub daily_recipient_limit: Patch<i64>,
    pub requests_per_second: Patch<i64>,
    pub high_priority_per_minute: Patch<i64>,
    pub share_weight: Patch<i64>,
    /// Seconds.
    pub default_valid_for: Patch<i64>,
}

/// A `LimitsChange` whose every value fits its column; holding one is proof it was checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidLimitsChange {
    daily_recipient_limit: Patch<i32>,
    requests_per_second: Patch<i32>,
    high_priority_per_minute: Option<i32>,
    share_weight: Option<i32>,
    default_valid_for_secs: Patch<i32>,
}

fn invalid(field: &'static str, message: &str) -> UserAdminError {
    UserAdminError::Invalid {
        field,
        message: message.to_owned(),
    }
}

/// Checks a nullable limit against `min..=max`.
fn nullable(
    patch: Patch<i64>,
    field: &'static str,
    min: i64,
    max: i64,
    message: &str,
) -> Result<Patch<i32>, UserAdminError> {
    match patch {
        Patch::Keep => Ok(Patch::Keep),
        Patch::Clear => Ok(Patch::Clear),
        Patch::Set(v) if (min..=max).contains(&v) => Ok(Patch::Set(
            i32::try_from(v).map_err(|_| invalid(field, message))?,
        )),
        Patch::Set(_) => Err(invalid(field, message)),
    }
}

/// Checks a limit that always has a value: clearing it is refused with `message` too.
fn required(
    patch: Patch<i64>,
    field: &'static str,
    min: i64,
    max: i64,
    message: &str,
) -> Result<Option<i32>, UserAdminError> {
    match nullable(patch, field, min, max, message)? {
        Patch::Keep => Ok(None),
        Patch::Clear => Err(invalid(field, message)),
        Patch::Set(v) => Ok(Some(v)),
    }
}

impl LimitsChange {
    /// Checks every value; the error names the first bad field (as the form and the API
    /// call it) and says what it accepts.
    pub fn validate(self) -> Result<ValidLimitsChange, UserAdminError> {
        let int_max = i64::from(i32::MAX);
        Ok(ValidLimitsChange {
            daily_recipient_limit: nullable(
                self.daily_recipient_limit,
                "daily_recipient_limit",
                0,
                int_max,
                "Give 0 or more recipients a day (at most 2147483647), or nothing for no limit.",
            )?,
            requests_per_second: nullable(
                self.requests_per_second,
                "requests_per_second",
                1,
                int_max,
                "Give at least 1 request a second (at most 2147483647), or nothing for no limit.",
            )?,
            high_priority_per_minute: required(
                self.high_priority_per_minute,
                "high_priority_per_minute",
                0,
                int_max,
                "Give 0 or more high-priority recipients a minute (0 forbids priority high); it cannot be unlimited.",
            )?,
            share_weight: required(
                self.share_weight,
                "share_weight",
                1,
                100,
                "Give a share weight from 1 to 100 (1 is the default).",
            )?,
            default_valid_for_secs: nullable(
                self.default_valid_for,
                "default_valid_for",
                1,
                MAX_DEFAULT_VALID_FOR_SECS,
                "Give a default validity from 1 second to 35 days (3024000 seconds), or nothing for none.",
            )?,
        })
    }
}

fn apply(patch: Patch<i32>, current: Option<i32>) -> Option<i32> {
    match patch {
        Patch::Keep => current,
        Patch::Clear => None,
        Patch::Set(v) => Some(v),
    }
}

impl ValidLimitsChange {
    /// True when the change touches no limit (the limits' row is then not even locked).
    pub fn is_empty(&self) -> bool {
        *self == ValidLimitsChange::default()
    }

    /// The limits after this change.
    pub fn applied_to(&self, current: &SendingLimits) -> SendingLimits {
        SendingLimits {
            daily_recipient_limit: apply(self.daily_recipient_limit, current.daily_recipient_limit),
            requests_per_second: apply(self.requests_per_second, current.requests_per_second),
            high_priority_per_minute: self
                .high_priority_per_minute
                .unwrap_or(current.high_priority_per_minute),
            share_weight: self.share_weight.unwrap_or(current.share_weight),
            default_valid_for_secs: apply(
                self.default_valid_for_secs,
                current.default_valid_for_secs,
            ),
        }
    }
}

/// The audit entry's details: each limit that changed, `{"from": old, "to": new}`, under
/// the name the API uses; empty when nothing changed.
pub fn changed_fields(before: &SendingLimits, after: &SendingLimits) -> Map<String, Value> {
    let mut changed = Map::new();
    let mut note = |name: &str, from: Value, to: Value| {
        if from != to {
            changed.insert(name.to_owned(), json!({"from": from, "to": to}));
        }
    };
    note(
        "daily_recipient_limit",
        json!(before.daily_recipient_limit),
        json!(after.daily_recipient_limit),
    );
    note(
        "requests_per_second",
        json!(before.requests_per_second),
        json!(after.requests_per_second),
    );
    note(
        "high_priority_per_minute",
        json!(before.high_priority_per_minute),
        json!(after.high_priority_per_minute),
    );
    note(
        "share_weight",
        json!(before.share_weight),
        json!(after.share_weight),
    );
    note(
        "default_valid_for",
        json!(before.default_valid_for_secs),
        json!(after.default_valid_for_secs),
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        limit: Patch<i64>,
    }

    fn wire(json: &str) -> Patch<i64> {
        serde_json::from_str::<Wire>(json).unwrap().limit
    }

    const DEFAULTS: SendingLimits = SendingLimits {
        daily_recipient_limit: None,
        requests_per_second: None,
        high_priority_per_minute: 60,
        share_weight: 1,
        default_valid_for_secs: None,
    };

    fn field_of(err: UserAdminError) -> &'static str {
        match err {
            UserAdminError::Invalid { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn absent_is_keep_null_is_clear_a_value_is_set() {
        assert_eq!(wire("{}"), Patch::Keep);
        assert_eq!(wire(r#"{"limit": null}"#), Patch::Clear);
        assert_eq!(wire(r#"{"limit": 7}"#), Patch::Set(7));
        assert!(serde_json::from_str::<Wire>(r#"{"limit": "7"}"#).is_err());
    }

    #[test]
    fn an_empty_change_changes_nothing() {
        let valid = LimitsChange::default().validate().unwrap();
        assert!(valid.is_empty());
        assert_eq!(valid.applied_to(&DEFAULTS), DEFAULTS);
    }

    #[test]
    fn values_are_set_and_cleared() {
        let set = LimitsChange {
            daily_recipient_limit: Patch::Set(1000),
            requests_per_second: Patch::Set(5),
            high_priority_per_minute: Patch::Set(0),
            share_weight: Patch::Set(100),
            default_valid_for: Patch::Set(MAX_DEFAULT_VALID_FOR_SECS),
        }
        .validate()
        .unwrap()
        .applied_to(&DEFAULTS);
        assert_eq!(
            set,
            SendingLimits {
                daily_recipient_limit: Some(1000),
                requests_per_second: Some(5),
                high_priority_per_minute: 0,
                share_weight: 100,
                default_valid_for_secs: Some(3_024_000),
            }
        );
        let cleared = LimitsChange {
            daily_recipient_limit: Patch::Clear,
            default_valid_for: Patch::Clear,
            ..Default::default()
        }
        .validate()
        .unwrap()
        .applied_to(&set);
        assert_eq!(cleared.daily_recipient_limit, None);
        assert_eq!(cleared.default_valid_for_secs, None);
        assert_eq!(cleared.requests_per_second, Some(5), "kept");
        let changed = changed_fields(&set, &cleared);
        assert_eq!(
            serde_json::Value::Object(changed),
            json!({
                "daily_recipient_limit": {"from": 1000, "to": null},
                "default_valid_for": {"from": 3_024_000, "to": null},
            })
        );
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let bad = [
            (
                LimitsChange {
                    daily_recipient_limit: Patch::Set(-1),
                    ..Default::default()
                },
                "daily_recipient_limit",
            ),
            (
                LimitsChange {
                    daily_recipient_limit: Patch::Set(i64::from(i32::MAX) + 1),
                    ..Default::default()
                },
                "daily_recipient_limit",
            ),
            (
                LimitsChange {
                    requests_per_second: Patch::Set(0),
                    ..Default::default()
                },
                "requests_per_second",
            ),
            (
                LimitsChange {
                    high_priority_per_minute: Patch::Set(-1),
                    ..Default::default()
                },
                "high_priority_per_minute",
            ),
            (
                LimitsChange {
                    high_priority_per_minute: Patch::Clear,
                    ..Default::default()
                },
                "high_priority_per_minute",
            ),
            (
                LimitsChange {
                    share_weight: Patch::Set(0),
                    ..Default::default()
                },
                "share_weight",
            ),
            (
                LimitsChange {
                    share_weight: Patch::Set(101),
                    ..Default::default()
                },
                "share_weight",
            ),
            (
                LimitsChange {
                    share_weight: Patch::Clear,
                    ..Default::default()
                },
                "share_weight",
            ),
            (
                LimitsChange {
                    default_valid_for: Patch::Set(0),
                    ..Default::default()
                },
                "default_valid_for",
            ),
            (
                LimitsChange {
                    default_valid_for: Patch::Set(MAX_DEFAULT_VALID_FOR_SECS + 1),
                    ..Default::default()
                },
                "default_valid_for",
            ),
        ];
        for (change, field) in bad {
            assert_eq!(
                field_of(change.validate().unwrap_err()),
                field,
                "{change:?}"
            );
        }
    }

    #[test]
    fn a_daily_limit_of_zero_is_allowed() {
        let zero = LimitsChange {
            daily_recipient_limit: Patch::Set(0),
            ..Default::default()
        };
        assert!(zero.validate().is_ok());
    }
}
