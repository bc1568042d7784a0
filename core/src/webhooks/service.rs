//! Registering webhooks and reading their deliveries. Domain types in, rows out; no HTTP.
//! A user manages only their own webhooks: another user's id is "not found".

use rand::RngCore;
use serde_json::json;
use smsgate_shared::secret_box::{webhook_secret_context, OpenError, SecretBox};
use sqlx::PgPool;

use super::events::WebhookEvents;
use super::repo::{self, DeliveryRow, WebhookRow};
use super::url::WebhookUrl;
use crate::admin::audit;

/// Longest description, so that a list of webhooks stays readable.
pub const MAX_DESCRIPTION: usize = 200;

/// What a registration asks for, parsed.
pub struct NewWebhook {
    pub url: WebhookUrl,
    pub description: String,
    pub events: WebhookEvents,
}

/// What an update changes; `None` keeps a field.
#[derive(Default)]
pub struct WebhookChanges {
    pub url: Option<WebhookUrl>,
    pub description: Option<String>,
    pub is_active: Option<bool>,
    pub events: Option<WebhookEvents>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook not found")]
    NotFound,
    #[error("at most {max} webhooks per user; delete one first")]
    LimitReached { max: usize },
    #[error("description is longer than {MAX_DESCRIPTION} characters")]
    DescriptionTooLong,
    #[error("no failed delivery with that id for this webhook")]
    NotRetryable,
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// A registered webhook with its secret, shown this once.
pub struct WithSecret {
    pub webhook: WebhookRow,
    pub secret: String,
}

/// A fresh signing secret: 256 random bits, prefixed so that it is recognisable in a
/// receiver's configuration (and by secret scanners).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// The description rule, for a form that reports every bad field at once; `create` and
/// `update` apply it themselves.
pub fn check_description(description: &str) -> Result<(), WebhookError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(WebhookError::DescriptionTooLong);
    }
    Ok(())
}

/// Registers a webhook with a fresh secret, stored sealed under `keys`' current key.
pub async fn create(
    db: &PgPool,
    keys: &SecretBox,
    user_id: i64,
    new: NewWebhook,
    max_per_user: usize,
) -> Result<WithSecret, WebhookError> {
    check_description(&new.description)?;
    let secret = new_secret();
    let mut tx = db.begin().await?;
    // Counted under the owner's row lock, so two concurrent registrations can't both fit
    // under the cap.
    if repo::count_for_user_locked(&mut tx, user_id).await? >= max_per_user as i64 {
        return Err(WebhookError::LimitReached { max: max_per_user });
    }
    let id = repo::next_id(&mut tx).await?;
    let sealed = keys.seal(&secret, &webhook_secret_context(id));
    let webhook = repo::insert(
        &mut tx,
        id,
        user_id,
        new.url.as_str(),
        &sealed,
        &new.description,
        &new.events.names(),
    )
    .await?;
    let target = format!("webhook:{}", webhook.id);
    audit::record(
        &mut *tx,
        Some(user_id),
        "webhook.create",
        &target,
        json!({"url": webhook.url, "events": webhook.events}),
    )
    .await?;
    tx.commit().await?;
    Ok(WithSecret { webhook, secret })
}

pub async fn list(db: &PgPool, user_id: i64) -> Result<Vec<WebhookRow>, WebhookError> {
    Ok(repo::list(db, user_id).await?)
}

pub async fn find(db: &PgPool, user_id: i64, id: i64) -> Result<WebhookRow, WebhookError> {
    repo::find(db, user_id, id)
        .await?
        .ok_or(WebhookError::NotFound)
}

pub async fn update(
    db: &PgPool,
    user_id: i64,
    id: i64,
    changes: WebhookChanges,
) -> Result<WebhookRow, WebhookError> {
    if let Some(description) = &changes.description {
        check_description(description)?;
    }
    let mut tx = db.begin().await?;
    let webhook = repo::update(
        &mut tx,
        user_id,
        id,
        changes.url.as_ref().map(WebhookUrl::as_str),
        changes.description.as_deref(),
        changes.is_active,
        changes.events.as_ref().map(WebhookEvents::names).as_deref(),
    )
    .await?
    .ok_or(WebhookError::NotFound)?;
    let details =
        json!({"url": webhook.url, "is_active": webhook.is_active, "events": webhook.events});
    audit::record(
        &mut *tx,
        Some(user_id),
        "webhook.update",
        &format!("webhook:{id}"),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(webhook)
}

/// Deletes the webhook and every delivery still queued for it.
pub async fn delete(db: &PgPool, user_id: i64, id: i64) -> Result<(), WebhookError> {
    let mut tx = db.begin().await?;
    let url = repo::delete(&mut tx, user_id, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    audit::record(
        &mut *tx,
        Some(user_id),
        "webhook.delete",
        &format!("webhook:{id}"),
        json!({"url": url}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the signing secret at once (deliveries from now on are signed with the new one)
/// and returns it, shown this once; it is stored sealed under `keys`' current key.
pub async fn rotate_secret(
    db: &PgPool,
    keys: &SecretBox,
    user_id: i64,
    id: i64,
) -> Result<String, WebhookError> {
    let secret = new_secret();
    let sealed = keys.seal(&secret, &webhook_secret_context(id));
    let mut tx = db.begin().await?;
    if !repo::set_secret(&mut tx, user_id, id, &sealed).await? {
        return Err(WebhookError::NotFound);
    }
    audit::record(
        &mut *tx,
        Some(user_id),
        "webhook.rotate_secret",
        &format!("webhook:{id}"),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// What [`reseal_secrets`] did.
#[derive(Debug, Default)]
pub struct Resealed {
    /// Plain-text secrets (from before encryption at rest) now sealed.
    pub encrypted: usize,
    /// Secrets sealed under an older key now sealed under the current one.
    pub rotated: usize,
    /// Secrets that could not be opened (their key is not configured, or the row was
    /// altered), by webhook id; they are left as they are.
    pub unreadable: Vec<(i64, OpenError)>,
}

/// Seals every secret not yet under `keys`' current key: plain text left from before
/// encryption at rest, and secrets under an older key after a rotation. Idempotent, and
/// safe beside other API replicas and users rotating secrets (each row is replaced only if
/// it is still what was read). Runs at every start and as `smsgate-api
/// rotate-webhook-secrets`.
pub async fn reseal_secrets(db: &PgPool, keys: &SecretBox) -> Result<Resealed, WebhookError> {
    let mut done = Resealed::default();
    for row in repo::secrets_to_reseal(db, &keys.sealed_prefix()).await? {
        let context = webhook_secret_context(row.id);
        let (plain, was_plain) = match keys.open(&row.secret, &context) {
            Ok(plain) => (plain, false),
            // Rows from before encryption at rest hold the secret itself.
            Err(OpenError::NotSealed) => (row.secret.clone(), true),
            Err(e) => {
                done.unreadable.push((row.id, e));
                continue;
            }
        };
        let sealed = keys.seal(&plain, &context);
        if repo::replace_secret(db, row.id, &row.secret, &sealed).await? {
            if was_plain {
                done.encrypted += 1;
            } else {
                done.rotated += 1;
            }
        }
    }
    Ok(done)
}

/// Queues a `webhook.test` event, so a receiver can be checked without sending an SMS.
pub async fn send_test(db: &PgPool, user_id: i64, id: i64) -> Result<i64, WebhookError> {
    let webhook = find(db, user_id, id).await?;
    let payload = json!({
        "webhook_id": webhook.id,
        "message": "This is a test event from smsgate; the signature is made as for real events.",
    });
    Ok(repo::insert_test_delivery(db, webhook.id, &payload).await?)
}

/// A page of the webhook's deliveries, newest first.
pub async fn deliveries(
    db: &PgPool,
    user_id: i64,
    id: i64,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, WebhookError> {
    let webhook = find(db, user_id, id).await?;
    Ok(repo::list_deliveries(db, webhook.id, status, before, limit).await?)
}

/// Puts a failed delivery back in line with a fresh retry schedule.
pub async fn retry_delivery(
    db: &PgPool,
    user_id: i64,
    id: i64,
    delivery_id: i64,
) -> Result<(), WebhookError> {
    let webhook = find(db, user_id, id).await?;
    if !repo::requeue_failed(db, webhook.id, delivery_id).await? {
        return Err(WebhookError::NotRetryable);
    }
    Ok(())
}
