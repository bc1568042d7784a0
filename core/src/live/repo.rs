//! What the live status fan-out reads besides the events themselves.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Who a status update concerns: the recipient, its message's owner and its SIM.
pub struct RecipientContext {
    pub id: i64,
    pub phone: String,
    pub user_id: i64,
    pub sender_sim: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The context of each of `ids`, for the Socket.IO fan-out.
pub async fn recipient_context(
    db: &PgPool,
    ids: &[i64],
) -> Result<Vec<RecipientContext>, sqlx::Error> {
    sqlx::query_as!(
        RecipientContext,
        r#"SELECT r.id AS "id!", r.phone AS "phone!", m.user_id AS "user_id!",
                s.number AS "sender_sim?", r.updated_at AS "updated_at!"
         FROM recipients r
         JOIN messages m ON m.id = r.message_id
         -- The SIM a job went to; before that (and for jobs released before SIMs were
         -- recorded) the message's own SIM.
         LEFT JOIN sim_cards s ON s.id = COALESCE(
             r.sim_card_id,
             CASE WHEN m.route LIKE 'sim.%' THEN substr(m.route, 5)::bigint END)
         WHERE r.id = ANY($1)"#,
        ids
    )
    .fetch_all(db)
    .await
}
