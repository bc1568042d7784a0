//! Password and username rules, checked at the edge of every user change.

/// Shown beside every password field, so users learn the rules before they break one.
pub const PASSWORD_RULES: &str =
    "At least 10 characters (at most 128), using at least three of: lower-case letters, \
     upper-case letters, digits, symbols. Not your username and not a common password.";

/// Long enough to resist guessing with the throttle in place; the upper bound keeps argon2
/// from being handed megabytes to hash.
const MIN_LEN: usize = 10;
const MAX_LEN: usize = 128;

/// Passwords that meet the character rules yet top every leaked-password list.
const COMMON: &[&str] = &[
    "password1!",
    "password123",
    "password123!",
    "p@ssw0rd123",
    "qwerty12345",
    "welcome123!",
    "admin12345!",
    "letmein123!",
    "changeme123",
    "iloveyou123",
];

/// Why a password is refused; the text is shown beside the field.
pub fn check_password(password: &str, username: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(format!("Use at least {MIN_LEN} characters ({len} given)."));
    }
    if len > MAX_LEN {
        return Err(format!("Use at most {MAX_LEN} characters."));
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|present| **present)
    .count();
    if classes < 3 {
        return Err("Mix at least three of: lower-case, upper-case, digits, symbols.".to_owned());
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("The password must not contain the username.".to_owned());
    }
    if COMMON.contains(&password.to_lowercase().as_str()) {
        return Err("This password is too common; choose another.".to_owned());
    }
    Ok(())
}

/// Why a username is refused.
pub fn check_username(username: &str) -> Result<(), String> {
    let len = username.chars().count();
    if !(3..=64).contains(&len) {
        return Err("Use 3 to 64 characters.".to_owned());
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("Use only letters, digits, `.`, `_` and `-`.".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_need_length_and_three_character_classes() {
        assert!(check_password("Short1!", "bob").is_err());
        assert!(check_password("alllowercaseletters", "bob").is_err());
        assert!(check_password("lowercase123", "bob").is_err());
        assert!(check_password("Lowercase123", "bob").is_ok());
        assert!(check_password("SMSpass#12", "SMSadmin").is_ok());
        assert!(check_password(&"Aa1!".repeat(40), "bob").is_err());
    }

    #[test]
    fn passwords_may_not_contain_the_username_or_be_common() {
        assert!(check_password("Alice-2026!", "alice").is_err());
        assert!(check_password("Password123!", "bob").is_err());
    }

    #[test]
    fn usernames_are_short_plain_tokens() {
        assert!(check_username("alice.w_2").is_ok());
        assert!(check_username("al").is_err());
        assert!(check_username("al ice").is_err());
        assert!(check_username("<script>").is_err());
    }
}
