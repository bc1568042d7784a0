//! Rendering: the embedded tera templates, the per-page layout data and the [`Page`]
//! responder that turns a template failure into a [`WebError`].

use std::sync::LazyLock;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use tera::{Context, Tera};

use crate::error::WebError;
use crate::flash::Flash;
use crate::{assets, cookies};

macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),+]
    };
}

/// Every template, compiled into the binary. Names ending in `.html` are autoescaped by tera,
/// so whatever a user typed is shown as text.
const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "macros.html",
    "error.html",
    "login.html",
    "password.html",
    "dashboard.html",
    "compose.html",
    "history.html",
    "message.html",
    "message_cancel.html",
    "scheduled.html",
    "sims.html",
    "sim_form.html",
    "sim_delete.html",
    "sim_credentials.html",
    "inbox.html",
    "opt_outs.html",
    "webhooks.html",
    "webhook.html",
    "webhook_secret.html",
    "webhook_delete.html",
    "admin/users.html",
    "admin/user_new.html",
    "admin/user_password.html",
    "admin/user_limits.html",
    "admin/user_delete.html",
    "admin/token.html",
    "admin/dead_letters.html",
    "admin/audit.html",
);

static TERA: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .expect("the embedded templates parse (checked by the crate's tests)");
    tera
});

/// The compiled templates; parsed once per process.
pub fn templates() -> &'static Tera {
    &TERA
}

/// Who is signed in, as the navigation shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutUser {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// What every page's frame needs: the user, the CSRF token for its forms, a flash message,
/// the active navigation entry and the display time zone.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub user: Option<LayoutUser>,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub nav: &'static str,
    pub tz: &'static str,
    pub asset_version: &'static str,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            user: None,
            csrf: String::new(),
            flash: None,
            nav: "",
            tz: "",
            asset_version: assets::VERSION.as_str(),
        }
    }
}

impl Layout {
    pub fn with_nav(mut self, nav: &'static str) -> Layout {
        self.nav = nav;
        self
    }
}

/// A rendered page. Build it with the template name, the page's own context and the layout;
/// rendering happens in `into_response`, where a template error becomes `WebError::Internal`.
pub struct Page {
    template: &'static str,
    context: Context,
    layout: Layout,
    status: StatusCode,
}

impl Page {
    pub fn new(template: &'static str, layout: Layout) -> Page {
        Page {
            template,
            context: Context::new(),
            layout,
            status: StatusCode::OK,
        }
    }

    /// Adds a value to the template context.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Page {
        self.context.insert(key, &value);
        self
    }

    /// A status other than 200, e.g. 422 for a form shown again with its errors.
    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    fn render(mut self) -> Result<(StatusCode, bool, String), WebError> {
        let had_flash = self.layout.flash.is_some();
        self.context.insert("layout", &self.layout);
        let html = templates().render(self.template, &self.context)?;
        Ok((self.status, had_flash, html))
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.render() {
            Ok((status, had_flash, html)) => {
                let mut response = (status, Html(html)).into_response();
                if had_flash {
                    // Shown once: the next page must not show it again.
                    response
                        .headers_mut()
                        .append(header::SET_COOKIE, cookies::clear(cookies::FLASH));
                }
                response
            }
            Err(e) => e.into_response(),
        }
    }
}

/// The error page; falls back to plain text if even that template fails.
pub(crate) fn render_error_page(
    status: StatusCode,
    message: &str,
    layout: &Layout,
) -> Html<String> {
    let mut context = Context::new();
    context.insert("layout", layout);
    context.insert("status", &status.as_u16());
    context.insert("reason", status.canonical_reason().unwrap_or("Error"));
    context.insert("message", message);
    match templates().render("error.html", &context) {
        Ok(html) => Html(html),
        Err(e) => {
            tracing::error!(error = ?e, "the error page itself failed to render");
            Html(format!(
                "<!doctype html><title>Error</title><p>{}</p>",
                status.as_u16()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_template_parses() {
        assert_eq!(templates().get_template_names().count(), TEMPLATES.len());
    }

    #[test]
    fn user_text_is_escaped() {
        let page = Page::new("error.html", Layout::default())
            .with("status", 400)
            .with("reason", "Bad Request")
            .with("message", "<script>alert(1)</script>");
        let (_, _, html) = page.render().unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
        assert!(!html.contains("<script>alert"));
    }

    #[test]
    fn no_template_has_inline_script_or_style() {
        // The CSP forbids them; this keeps a template edit from breaking a page silently.
        for (name, source) in TEMPLATES {
            assert!(!source.contains("<script>"), "{name} has an inline script");
            assert!(!source.contains("style="), "{name} has an inline style");
            assert!(!source.contains("<style"), "{name} has a style element");
            assert!(
                !source.contains(" onclick="),
                "{name} has an inline handler"
            );
        }
    }
}
