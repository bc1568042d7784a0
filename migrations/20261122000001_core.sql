-- Core schema: users and their API tokens, messages and their recipients, dead letters
-- and the audit log. Statuses are text with CHECK constraints (readable in psql, and a
-- new state is one ALTER away); timestamps are timestamptz, always UTC on the wire.

CREATE TABLE users (
    id                   BIGSERIAL PRIMARY KEY,
    username             TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    is_admin             BOOLEAN NOT NULL DEFAULT FALSE,
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,
    -- Set for the generated default admin: the panel forces a new password first.
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Usernames are unique regardless of case, so `smsadmin` cannot shadow `SMSadmin`.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash   BYTEA NOT NULL,
    label        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
-- Every authenticated API call looks a token up by its hash.
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE messages (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content        TEXT NOT NULL,
    encoding       TEXT NOT NULL CHECK (encoding IN ('gsm7', 'ucs2')),
    segments       INTEGER NOT NULL CHECK (segments >= 1),
    route          TEXT NOT NULL DEFAULT 'hkt',
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'partial', 'scheduled', 'cancelled')),
    total_count    INTEGER NOT NULL CHECK (total_count >= 1),
    sent_count     INTEGER NOT NULL DEFAULT 0,
    failed_count   INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at   TIMESTAMPTZ,
    -- Outbox marker: set once every recipient's job was confirmed by the broker.
    enqueued_at    TIMESTAMPTZ,
    -- Whoever publishes the jobs holds this lease; the reconciler only takes messages
    -- whose lease ran out, so a slow publisher and the reconciler never publish together.
    publish_lease_until TIMESTAMPTZ,
    CHECK (sent_count + failed_count <= total_count)
);
-- History: one user's messages, newest first.
CREATE INDEX messages_user_created_idx ON messages (user_id, created_at DESC, id DESC);
-- Admin history over everyone, newest first.
CREATE INDEX messages_created_idx ON messages (created_at DESC, id DESC);
-- The reconciler scans only messages whose jobs are not all confirmed yet.
CREATE INDEX messages_unenqueued_idx ON messages (created_at) WHERE enqueued_at IS NULL;

CREATE TABLE recipients (
    id               BIGSERIAL PRIMARY KEY,
    message_id       BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    phone            TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'delivered')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    gateway_response TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ
);
-- Recipients of a message in a stable order (detail pages, the reconciler).
CREATE INDEX recipients_message_idx ON recipients (message_id, id);
-- A bulk collapses duplicates before insert; this keeps it true whatever the caller.
CREATE UNIQUE INDEX recipients_message_phone_key ON recipients (message_id, phone);

CREATE TABLE dead_letters (
    id           BIGSERIAL PRIMARY KEY,
    recipient_id BIGINT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    message_id   BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reason       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at  TIMESTAMPTZ,
    resolution   TEXT CHECK (resolution IN ('retried', 'abandoned'))
);
-- The admin page lists unresolved dead letters, newest first.
CREATE INDEX dead_letters_open_idx ON dead_letters (created_at DESC) WHERE resolved_at IS NULL;

CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    actor_id   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    details    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC);
