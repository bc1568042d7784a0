//! `CsrfForm`: a URL-encoded form POST whose `csrf_token` must match the session's. Taking
//! it as the handler's argument is what makes a POST route safe, so no handler can forget
//! the check.

use crate::WebError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::session::SignedIn;
use crate::state::WebState;

/// Forms larger than this are not ours (the compose form, the only big one, is multipart).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The user `U` (e.g. `PanelUser`, `AdminUser`) and the form `T`, CSRF-checked.
pub struct CsrfForm<U, T> {
    pub user: U,
    pub form: T,
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    csrf_token: String,
}

/// A form with no fields besides the token.
#[derive(Deserialize)]
pub struct NoFields {}

impl<U, T> FromRequest<WebState> for CsrfForm<U, T>
where
    U: FromRequestParts<WebState, Rejection = WebError> + SignedIn + Send,
    T: DeserializeOwned + Send,
{
    type Rejection = WebError;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, WebError> {
        let (mut parts, body) = request.into_parts();
        let user = U::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| WebError::BadRequest("The form is too large.".into()))?;
        let token: Token = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| WebError::BadRequest("The form could not be read.".into()))?;
        user.session().verify_csrf(&token.csrf_token)?;
        let form: T = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::BadRequest(format!("The form could not be read: {e}")))?;
        Ok(CsrfForm { user, form })
    }
}
