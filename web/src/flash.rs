//! Flash messages: the outcome of a form POST, shown once on the page it redirects to.
//!
//! Carried in a short-lived cookie rather than the session so that pages without a session
//! (login, "you were signed out") can show one too. The text is always rendered escaped, so
//! a forged cookie can at worst show its own author a message.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::cookies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Success,
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

/// Longest flash kept; cookies are limited to about 4 KB.
const MAX_TEXT: usize = 500;

impl Flash {
    pub fn new(kind: FlashKind, text: impl Into<String>) -> Flash {
        let mut text: String = text.into();
        if text.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Flash { kind, text }
    }

    pub fn success(text: impl Into<String>) -> Flash {
        Flash::new(FlashKind::Success, text)
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash::new(FlashKind::Error, text)
    }

    /// The flash of this request, if it carries one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Flash> {
        let raw = cookies::get(headers, cookies::FLASH)?;
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a flash serializes"))
    }

    /// 303 See Other to `to` (a local path) carrying this flash.
    pub fn redirect(self, to: &str) -> Response {
        let mut response =
            (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            cookies::set(cookies::FLASH, &self.encode(), Some(60), false),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_flash_survives_the_redirect_cookie_round_trip() {
        let flash = Flash::success("Message #3 queued — 3 recipients; <b>ok</b>");
        let response = flash.clone().redirect("/history/3");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let value = set_cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        assert_eq!(Flash::from_headers(&headers), Some(flash));
    }

    #[test]
    fn a_garbled_flash_cookie_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("sg_flash=%%%"));
        assert_eq!(Flash::from_headers(&headers), None);
    }
}
