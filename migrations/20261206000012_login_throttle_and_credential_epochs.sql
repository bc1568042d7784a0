-- Issue #13: one login throttle for the panel and the API, and credentials that a password
-- change really revokes.

-- Failed-login budgets, one row per (scope, key). `scope` is 'user_address' (key: the client
-- address, a space, the SHA-256 of the lower-cased username) or 'address' (key: the address).
-- There is deliberately no username-only scope: it let anyone lock an account (SMSadmin)
-- out for everybody. A login charges both rows in one INSERT … ON CONFLICT DO UPDATE …
-- RETURNING before any password is hashed, so parallel attempts cannot all pass the check
-- before a failure is recorded; a successful login refunds its charge.
CREATE TABLE login_attempts (
    scope        TEXT NOT NULL CHECK (scope IN ('user_address', 'address')),
    key          TEXT NOT NULL,
    -- Failures (and attempts still being checked) since `window_start`.
    failures     INTEGER NOT NULL CHECK (failures >= 0),
    -- The window opens at the first failure and lasts LOGIN_THROTTLE_WINDOW; a charge after
    -- it has passed starts a new one. Retry-After is counted from here.
    window_start TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The unit of the atomic check-and-increment.
    PRIMARY KEY (scope, key)
);
-- The sweep of windows long over.
CREATE INDEX login_attempts_window_start_idx ON login_attempts (window_start);

-- Replaced by login_attempts (its counts were read and written in separate statements,
-- and its per-username count was the lock-everyone-out hole).
DROP TABLE login_failures;

-- Bumped in the same transaction as every password change or reset. JWTs carry the value
-- they were issued under (`cep` claim) and are refused once it no longer matches, so a new
-- password ends every earlier access token, not only the sessions.
ALTER TABLE users ADD COLUMN credentials_epoch INTEGER NOT NULL DEFAULT 0;

-- `POST /api/auth` mints a key per call; the oldest of a user's auto-minted keys beyond the
-- cap are revoked. This finds that user's unrevoked keys of that origin without a scan.
CREATE INDEX api_tokens_user_label_live_idx ON api_tokens (user_id, label, created_at DESC)
    WHERE revoked_at IS NULL;
