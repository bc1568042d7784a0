//! `/webhooks`: every signed-in user's own delivery webhooks (add, enable/disable, send a
//! test event, rotate the secret, delete) and each webhook's recent deliveries, with "retry"
//! for the failed ones. The rules (URL checks, the per-user cap, ownership, which deliveries
//! can be retried, the audit entries) live in `webhooks::service`, shared with
//! `/api/webhooks`; another user's webhook is a 404 page, as it is a 404 there.

use crate::view::DisplayTz;
use crate::{Flash, Page, WebError};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::errors::webhook_error;
use super::forms::{CsrfForm, NoFields};
use super::session::{PanelUser, SignedIn};
use super::{invalid, older_url, BeforeQuery, PanelId, PanelIdPair};
use crate::state::WebState;
use smsgate_core::webhooks::service::{self, NewWebhook, WebhookChanges, WebhookError};
use smsgate_core::webhooks::{DeliveryRow, WebhookEvent, WebhookEvents, WebhookRow, WebhookUrl};

const WEBHOOKS: &str = "/webhooks";
/// Deliveries per page of the detail page.
const DELIVERIES_PAGE: i64 = 50;

fn webhook_path(id: i64) -> String {
    format!("{WEBHOOKS}/{id}")
}

/// A webhook as the pages show it; times in DISPLAY_TZ. Never its secret.
#[derive(Serialize)]
struct WebhookItem {
    id: i64,
    url: String,
    description: String,
    is_active: bool,
    events: Vec<String>,
    created: String,
    created_iso: String,
    updated: String,
    updated_iso: String,
}

impl WebhookItem {
    fn new(webhook: WebhookRow, tz: &DisplayTz) -> WebhookItem {
        WebhookItem {
            id: webhook.id,
            url: webhook.url,
            description: webhook.description,
            is_active: webhook.is_active,
            events: webhook.events,
            created: tz.format(webhook.created_at),
            created_iso: tz.machine(webhook.created_at),
            updated: tz.format(webhook.updated_at),
            updated_iso: tz.machine(webhook.updated_at),
        }
    }
}

/// A time as `<time>` shows it: the display text and the machine-readable value.
#[derive(Serialize)]
struct Shown {
    text: String,
    iso: String,
}

impl Shown {
    fn new(at: chrono::DateTime<chrono::Utc>, tz: &DisplayTz) -> Shown {
        Shown {
            text: tz.format(at),
            iso: tz.machine(at),
        }
    }
}

/// A delivery as the detail page lists it.
#[derive(Serialize)]
struct DeliveryItem {
    id: i64,
    event_type: String,
    message_id: Option<i64>,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    created: Shown,
    completed: Option<Shown>,
    /// Only while pending: a finished delivery is not tried again.
    next_attempt: Option<Shown>,
}

impl DeliveryItem {
    fn new(delivery: DeliveryRow, tz: &DisplayTz) -> DeliveryItem {
        let pending = delivery.status == "pending";
        DeliveryItem {
            id: delivery.id,
            event_type: delivery.event_type,
            message_id: delivery.message_id,
            attempts: delivery.attempts,
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error,
            created: Shown::new(delivery.created_at, tz),
            completed: delivery.completed_at.map(|t| Shown::new(t, tz)),
            next_attempt: pending.then(|| Shown::new(delivery.next_attempt_at, tz)),
            status: delivery.status,
        }
    }
}

/// The add form, as typed.
#[derive(Deserialize, Default)]
pub struct WebhookForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
    /// The event checkboxes: present (`on`) when ticked.
    #[serde(default)]
    event_status: Option<String>,
    #[serde(default)]
    event_received: Option<String>,
    /// Set by the form itself, so that a fresh page (none) ticks `message.status` as the
    /// default, and a submitted form shows what was ticked.
    #[serde(default)]
    submitted: Option<String>,
}

impl WebhookForm {
    /// The events ticked; on a fresh page, the default subscription.
    fn event_names(&self) -> Vec<&'static str> {
        if self.submitted.is_none() {
            return vec![WebhookEvent::MessageStatus.as_str()];
        }
        [
            (&self.event_status, WebhookEvent::MessageStatus),
            (&self.event_received, WebhookEvent::MessageReceived),
        ]
        .into_iter()
        .filter(|(ticked, _)| ticked.is_some())
        .map(|(_, event)| event.as_str())
        .collect()
    }
}

/// The list with the add form, its values and errors (`url`, `description`, `form`).
async fn list_page(
    app: &WebState,
    user: &PanelUser,
    form: &WebhookForm,
    errors: Value,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let webhooks: Vec<WebhookItem> = service::list(&app.core.db, user.session.user_id)
        .await
        .map_err(|e| webhook_error(e, "/"))?
        .into_iter()
        .map(|w| WebhookItem::new(w, &tz))
        .collect();
    Ok(Page::new("webhooks.html", user.layout(app, "webhooks"))
        .with("webhooks", webhooks)
        .with("limit", app.core.settings.webhooks_per_user)
        .with("max_description", service::MAX_DESCRIPTION)
        .with("url", &form.url)
        .with("description", &form.description)
        .with("events", form.event_names())
        .with("errors", errors))
}

pub async fn list_webhooks(State(app): State<WebState>, user: PanelUser) -> Result<Page, WebError> {
    list_page(&app, &user, &WebhookForm::default(), json!({})).await
}

/// The page that shows a new or rotated secret, the only place it is ever shown. Answered
/// directly rather than by a redirect: the secret exists only in this response.
fn secret_page(
    app: &WebState,
    user: &PanelUser,
    webhook: &WebhookRow,
    secret: String,
    rotated: bool,
) -> Page {
    Page::new("webhook_secret.html", user.layout(app, "webhooks"))
        .with("webhook", json!({"id": webhook.id, "url": webhook.url}))
        .with("secret", secret)
        .with("rotated", rotated)
}

/// Registers a webhook and shows its secret. Every bad field is reported at once, beside
/// the field, with what was typed kept.
pub async fn create_webhook(
    State(app): State<WebState>,
    CsrfForm { user, form }: CsrfForm<PanelUser, WebhookForm>,
) -> Result<Response, WebError> {
    let mut errors = Map::new();
    let url = WebhookUrl::parse(&form.url, app.core.settings.webhook_allow_internal_targets)
        .map_err(|e| errors.insert("url".into(), e.to_string().into()))
        .ok();
    let description = form.description.trim().to_owned();
    if let Err(e) = service::check_description(&description) {
        errors.insert("description".into(), e.to_string().into());
    }
    let events = WebhookEvents::parse(&form.event_names())
        .map_err(|e| errors.insert("events".into(), e.to_string().into()))
        .ok();
    let new = match (url, events) {
        (Some(url), Some(events)) if errors.is_empty() => NewWebhook {
            url,
            description,
            events,
        },
        _ => return invalid(list_page(&app, &user, &form, errors.into()).await?),
    };
    let limit = app.core.settings.webhooks_per_user;
    let keys = &app.core.settings.webhook_secret_keys;
    match service::create(&app.core.db, keys, user.session.user_id, new, limit).await {
        Ok(created) => {
            Ok(secret_page(&app, &user, &created.webhook, created.secret, false).into_response())
        }
        Err(e @ WebhookError::LimitReached { .. }) => {
            invalid(list_page(&app, &user, &form, json!({"form": e.to_string()})).await?)
        }
        Err(e) => Err(webhook_error(e, WEBHOOKS)),
    }
}

/// A webhook and a page of its deliveries, newest first.
pub async fn show_webhook(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
    Query(query): Query<BeforeQuery>,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let user_id = user.session.user_id;
    let (webhook, deliveries) = tokio::try_join!(
        service::find(&app.core.db, user_id, id),
        service::deliveries(
            &app.core.db,
            user_id,
            id,
            None,
            query.before,
            DELIVERIES_PAGE
        ),
    )
    .map_err(|e| webhook_error(e, WEBHOOKS))?;
    let path = webhook_path(id);
    let older = older_url(&path, &deliveries, DELIVERIES_PAGE, |d| d.id);
    let deliveries: Vec<DeliveryItem> = deliveries
        .into_iter()
        .map(|d| DeliveryItem::new(d, &tz))
        .collect();
    Ok(Page::new("webhook.html", user.layout(&app, "webhooks"))
        .with("webhook", WebhookItem::new(webhook, &tz))
        .with("deliveries", deliveries)
        .with("older_url", older)
        .with("paged", query.before.is_some()))
}

pub async fn toggle_webhook(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let user_id = user.session.user_id;
    let webhook = service::find(&app.core.db, user_id, id)
        .await
        .map_err(|e| webhook_error(e, WEBHOOKS))?;
    let changes = WebhookChanges {
        is_active: Some(!webhook.is_active),
        ..WebhookChanges::default()
    };
    let webhook = service::update(&app.core.db, user_id, id, changes)
        .await
        .map_err(|e| webhook_error(e, WEBHOOKS))?;
    let text = if webhook.is_active {
        format!("Webhook {} enabled.", webhook.url)
    } else {
        format!(
            "Webhook {} disabled: it gets no new events, and deliveries already queued for it end failed.",
            webhook.url
        )
    };
    Ok(Flash::success(text).redirect(WEBHOOKS))
}

/// Queues a `webhook.test` event and goes to the detail page, where the delivery shows up.
pub async fn send_test_event(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let delivery = service::send_test(&app.core.db, user.session.user_id, id)
        .await
        .map_err(|e| webhook_error(e, WEBHOOKS))?;
    let text = format!("Test event queued (delivery #{delivery}).");
    Ok(Flash::success(text).redirect(&webhook_path(id)))
}

pub async fn rotate_secret(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Page, WebError> {
    let user_id = user.session.user_id;
    let back = |e| webhook_error(e, WEBHOOKS);
    let webhook = service::find(&app.core.db, user_id, id)
        .await
        .map_err(back)?;
    let secret = service::rotate_secret(
        &app.core.db,
        &app.core.settings.webhook_secret_keys,
        user_id,
        id,
    )
    .await
    .map_err(back)?;
    Ok(secret_page(&app, &user, &webhook, secret, true))
}

pub async fn confirm_delete(
    State(app): State<WebState>,
    user: PanelUser,
    PanelId(id): PanelId,
) -> Result<Page, WebError> {
    let tz = app.panel.display_tz;
    let webhook = service::find(&app.core.db, user.session.user_id, id)
        .await
        .map_err(|e| webhook_error(e, WEBHOOKS))?;
    Ok(
        Page::new("webhook_delete.html", user.layout(&app, "webhooks"))
            .with("webhook", WebhookItem::new(webhook, &tz)),
    )
}

pub async fn delete_webhook(
    State(app): State<WebState>,
    PanelId(id): PanelId,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let user_id = user.session.user_id;
    let back = |e| webhook_error(e, WEBHOOKS);
    let webhook = service::find(&app.core.db, user_id, id)
        .await
        .map_err(back)?;
    service::delete(&app.core.db, user_id, id)
        .await
        .map_err(back)?;
    Ok(Flash::success(format!("Webhook {} deleted.", webhook.url)).redirect(WEBHOOKS))
}

/// Puts a failed delivery back in line; one that is no longer failed (an old tab) is
/// refused with the reason on the detail page.
pub async fn retry_delivery(
    State(app): State<WebState>,
    PanelIdPair(id, delivery): PanelIdPair,
    CsrfForm { user, .. }: CsrfForm<PanelUser, NoFields>,
) -> Result<Response, WebError> {
    let path = webhook_path(id);
    service::retry_delivery(&app.core.db, user.session.user_id, id, delivery)
        .await
        .map_err(|e| webhook_error(e, &path))?;
    Ok(Flash::success(format!("Delivery #{delivery} queued again.")).redirect(&path))
}
