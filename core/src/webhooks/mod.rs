//! Delivery webhooks, the API's side: users register endpoints (`/api/webhooks`) with the
//! events they want (`message.status`, `message.received`), and the dispatchers POST those
//! events there, signed with the endpoint's secret (`dispatcher/src/webhooks/`). `docs/webhooks.md` is the contract
//! receivers code against. Secrets are stored encrypted (`smsgate_shared::secret_box`,
//! WEBHOOK_SECRET_KEYS), sealed to their webhook's id.

mod events;
pub mod repo;
pub mod service;
mod url;

pub use events::{WebhookEvent, WebhookEvents, WebhookEventsError};
pub use repo::{DeliveryRow, WebhookRow};
pub use url::{WebhookUrl, WebhookUrlError};

use smsgate_shared::secret_box::SecretBox;
use sqlx::PgPool;

/// Seals every secret not yet under the current key ([`service::reseal_secrets`]) and logs
/// what it did: once per start, and by `smsgate-api rotate-webhook-secrets`. A secret that
/// does not open is logged with its webhook's id and left as it is (its deliveries fail
/// until the key it was sealed with is configured again).
pub async fn reseal_secrets(
    db: &PgPool,
    keys: &SecretBox,
) -> Result<service::Resealed, service::WebhookError> {
    let done = service::reseal_secrets(db, keys).await?;
    if done.encrypted + done.rotated > 0 {
        tracing::info!(
            encrypted = done.encrypted,
            rotated = done.rotated,
            key.id = keys.primary_key_id(),
            "webhook secrets sealed under the current key"
        );
    }
    for (webhook_id, error) in &done.unreadable {
        tracing::error!(
            webhook.id = webhook_id,
            %error,
            "a webhook secret cannot be opened with WEBHOOK_SECRET_KEYS; its deliveries fail until its key is configured"
        );
    }
    Ok(done)
}
