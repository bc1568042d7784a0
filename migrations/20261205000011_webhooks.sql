-- Delivery webhooks: an API user registers URLs, and every committed status change of their
-- messages (sent, failed, delivered, with the message's counters) is POSTed there, signed,
-- and retried until the endpoint answers 2xx or the retry schedule runs out.

CREATE TABLE webhooks (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    -- The HMAC-SHA256 key of the `X-Smsgate-Signature` header. Unlike API tokens it can't be
    -- stored as a hash: the dispatcher needs it to sign. It is shown when created or rotated.
    secret      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Every result batch looks up the active webhooks of its messages' owners.
CREATE INDEX webhooks_user_active_idx ON webhooks (user_id) WHERE is_active;

-- One row per event and webhook: the outbox the dispatchers deliver from. Rows are written
-- in the transaction that commits the status change, so an event can't be lost between the
-- commit and its delivery (a crash only delays it).
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL CHECK (event_type IN ('message.status', 'webhook.test')),
    -- No foreign key: these rows are written by result batches, and a per-row check would
    -- lock the message row again; messages only go with their user, which takes the webhook.
    message_id       BIGINT,
    payload          JSONB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Attempts started. A claim counts as one, so a delivery that crashes its dispatcher
    -- still runs out of attempts instead of being retried for ever.
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due; while an attempt runs, the end of its lease.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set while an attempt runs (the end of its lease), cleared when it is recorded: how
    -- many attempts an endpoint has in flight, so one slow endpoint can't take every slot.
    claimed_until    TIMESTAMPTZ,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ
);
-- Dispatchers claim each endpoint's due deliveries, oldest first; finished ones leave
-- these indexes.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';
-- Attempts in flight per endpoint (a claim counts them against WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT).
CREATE INDEX webhook_deliveries_claimed_idx ON webhook_deliveries (webhook_id)
    WHERE status = 'pending' AND claimed_until IS NOT NULL;
-- A webhook's deliveries, newest first (GET /api/webhooks/{id}/deliveries).
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id DESC);
-- Finished deliveries are swept after WEBHOOK_DELIVERY_RETENTION.
CREATE INDEX webhook_deliveries_completed_idx ON webhook_deliveries (completed_at)
    WHERE status <> 'pending';
