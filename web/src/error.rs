//! `WebError`: everything a panel request can fail with, rendered once as an HTML error page
//! or as a redirect carrying a flash message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::flash::{Flash, FlashKind};
use crate::render::{render_error_page, Layout};

/// The panel's one error type. Internal causes are logged here, once, inside the request
/// span, and never shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No valid session: go to the login page, then come back to `next`.
    #[error("login required")]
    LoginRequired { next: Option<String> },
    /// The user must replace their initial password before anything else.
    #[error("password change required")]
    PasswordChangeRequired,
    /// Signed in, but not allowed here (non-admin on an admin page).
    #[error("forbidden")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A form POST without the session's CSRF token, or from another origin.
    #[error("the form expired or did not come from this site")]
    CsrfRejected,
    #[error("{0}")]
    BadRequest(String),
    /// An action refused by a rule (e.g. deleting the last admin): back to `to`, with the
    /// reason as a flash message, following post/redirect/get.
    #[error("{message}")]
    Refused { to: String, message: String },
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl WebError {
    pub fn refused(to: impl Into<String>, message: impl Into<String>) -> WebError {
        WebError::Refused {
            to: to.into(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired { .. }
            | WebError::PasswordChangeRequired
            | WebError::Refused { .. } => StatusCode::SEE_OTHER,
            WebError::Forbidden | WebError::CsrfRejected => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn public_message(&self) -> String {
        match self {
            WebError::Forbidden => "You do not have access to this page.".into(),
            WebError::NotFound(what) => format!("{what} not found."),
            WebError::CsrfRejected => {
                "This form expired or did not come from this site. Go back, reload the page and try again.".into()
            }
            WebError::Unavailable(_) => {
                "The service is temporarily unavailable. Please try again in a moment.".into()
            }
            WebError::Internal(_) => "Something went wrong on our side. It has been logged.".into(),
            other => other.to_string(),
        }
    }
}

impl From<anyhow::Error> for WebError {
    fn from(err: anyhow::Error) -> WebError {
        WebError::Internal(err)
    }
}

impl From<tera::Error> for WebError {
    fn from(err: tera::Error) -> WebError {
        WebError::Internal(err.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match &self {
            WebError::Internal(cause) => tracing::error!(error = ?cause, "panel request failed"),
            WebError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable")
            }
            _ => {}
        }
        match self {
            WebError::LoginRequired { next } => {
                let to = match next.filter(|n| is_local_path(n)) {
                    Some(next) if next != "/" => format!("/login?next={}", encode_query(&next)),
                    _ => "/login".to_owned(),
                };
                Redirect::to(&to).into_response()
            }
            WebError::PasswordChangeRequired => Redirect::to("/account/password").into_response(),
            WebError::Refused { to, message } => {
                Flash::new(FlashKind::Error, message).redirect(&to)
            }
            other => {
                let status = other.status();
                let html = render_error_page(status, &other.public_message(), &Layout::default());
                let mut response = (status, html).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}

/// Only same-site paths are followed after login: `//evil.example` and `https://…` are not.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\")
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_redirects_only_to_local_paths() {
        assert!(is_local_path("/history?page=2"));
        assert!(!is_local_path("//evil.example/"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("/\\evil.example"));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let response = WebError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(response);
        assert!(!body.contains("hunter2"));
        assert!(body.contains("Something went wrong"));
    }

    #[test]
    fn login_required_keeps_where_the_user_was_going() {
        let response = WebError::LoginRequired {
            next: Some("/history?q=a b".into()),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "/login?next=/history%3Fq%3Da%20b"
        );
    }

    fn futures_body(response: Response) -> String {
        let rt = tokio_rt();
        let bytes = rt
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn tokio_rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }
}
