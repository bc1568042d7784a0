-- Web panel (issue #3): server-side sessions, login throttling, compose idempotency keys,
-- and the indexes that keep history search fast at millions of messages.

CREATE TABLE web_sessions (
    -- SHA-256 of the cookie's random value: a copy of this table hands out no live session.
    id_hash      BYTEA PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Synchronizer token every form POST of this session must carry.
    csrf_token   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Sliding idle expiry, pushed forward as the session is used (at most once a minute).
    expires_at   TIMESTAMPTZ NOT NULL
);
-- Logout everywhere: disabling a user or changing their password deletes their sessions.
CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);
-- The sweep of expired sessions.
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- One row per failed panel login; counted over a sliding window per username and per
-- client address. Shared by every API instance, unlike an in-memory counter.
CREATE TABLE login_failures (
    id        BIGSERIAL PRIMARY KEY,
    username  TEXT NOT NULL, -- lower-cased, so case variants share one budget
    address   TEXT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_username_idx ON login_failures (username, failed_at);
CREATE INDEX login_failures_address_idx ON login_failures (address, failed_at);
-- Old rows are swept by age.
CREATE INDEX login_failures_failed_at_idx ON login_failures (failed_at);

-- The compose form's hidden idempotency key: the first POST with a key claims it and
-- records the message it created; a repeat (double click, resubmitted form) finds the
-- claim and goes to the same message instead of sending again.
CREATE TABLE compose_submissions (
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    message_id      BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);

-- History search by text: `content ILIKE '%word%'` is served by a trigram index instead
-- of a scan of every message. pg_trgm is a trusted extension (PostgreSQL 13+), so the
-- database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX messages_content_trgm_idx ON messages USING gin (content gin_trgm_ops);

-- History search by recipient number (exact, E.164): from the number to its messages.
CREATE INDEX recipients_phone_idx ON recipients (phone, message_id);

-- Status filters keep the newest-first keyset order: one user's messages of one status,
-- and everyone's (admin).
CREATE INDEX messages_user_status_created_idx ON messages (user_id, status, created_at DESC, id DESC);
CREATE INDEX messages_status_created_idx ON messages (status, created_at DESC, id DESC);
