-- API idempotency keys: `Idempotency-Key` on `POST /api/sms` and `POST /api/sms/send-bulk`,
-- and the panel's compose form. A repeat of a request with a key it already used gets the
-- first request's message instead of a second send.
--
-- The row is inserted in the same transaction as the message it names, so a key either
-- points at a durable message or does not exist: there is no "claimed but not sent" state
-- for a crash to leave behind (which `compose_submissions` had; the panel no longer writes
-- it, and it is left in place so that an API instance of the previous release keeps working
-- during a rolling upgrade).
CREATE TABLE idempotency_keys (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    -- SHA-256 of the request as parsed (operation, route, body, recipients): the same key
    -- with a different request is refused instead of being answered with the wrong message.
    fingerprint BYTEA NOT NULL,
    -- No foreign key: messages are only ever deleted with their user, which takes the keys
    -- too, and a per-row check would lock the new message row on the send path.
    message_id  BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
-- The sweeper deletes keys older than IDEMPOTENCY_KEY_TTL, oldest first.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
