//! Reading and writing the panel's cookies. Every cookie is HttpOnly and SameSite=Lax:
//! scripts never need them, and Lax keeps them off cross-site POSTs while links still work.

use axum::http::{header, HeaderMap, HeaderValue};

/// The session cookie: an opaque random id; the server keeps everything else.
pub const SESSION: &str = "sg_session";
/// The login form's CSRF cookie (double submit): there is no session yet to bind it to.
pub const LOGIN_CSRF: &str = "sg_login_csrf";
/// A one-shot message for the next page (post/redirect/get).
pub const FLASH: &str = "sg_flash";

/// The value of cookie `name` in the request, if present.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// True when the request reached us over TLS (directly or through the proxy's
/// `X-Forwarded-Proto`). A spoofed header can only make the spoofer's own cookie stricter.
pub fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value. `max_age` of `None` makes a browser-session cookie, `Some(0)` deletes.
pub fn set(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie names and values are ASCII tokens")
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub fn clear(name: &str) -> HeaderValue {
    set(name, "", Some(0), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several_headers_and_pairs() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sg_session=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(get(&headers, SESSION), Some("abc"));
        assert_eq!(get(&headers, "b"), Some("2"));
        assert_eq!(get(&headers, "c"), None);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_over_tls() {
        let plain = set(SESSION, "x", None, false);
        assert_eq!(plain, "sg_session=x; Path=/; HttpOnly; SameSite=Lax");
        let tls = set(SESSION, "x", Some(60), true);
        assert!(tls.to_str().unwrap().ends_with("Max-Age=60; Secure"));
    }
}
