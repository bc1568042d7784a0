-- Traffic control (issue #14): priorities, fair share, quotas, scheduling, cancel, expiry.
--
-- Per-user controls, set by admins. NULL means unlimited / no default.
ALTER TABLE users
    -- Recipients a day (UTC) the user may send; beyond it a send is refused whole.
    ADD COLUMN daily_recipient_limit    INTEGER CHECK (daily_recipient_limit >= 0),
    -- Send requests a second, counted across every API instance.
    ADD COLUMN requests_per_second      INTEGER CHECK (requests_per_second >= 1),
    -- Recipients a minute the user may send with priority `high`; 0 forbids `high`.
    ADD COLUMN high_priority_per_minute INTEGER NOT NULL DEFAULT 60
                                        CHECK (high_priority_per_minute >= 0),
    -- The user's share of the gateway against other users of the same priority.
    ADD COLUMN share_weight             INTEGER NOT NULL DEFAULT 1
                                        CHECK (share_weight BETWEEN 1 AND 100),
    -- Validity given to sends that name none (`valid_for`, seconds).
    ADD COLUMN default_valid_for_secs   INTEGER CHECK (default_valid_for_secs >= 1);

ALTER TABLE messages
    ADD COLUMN priority        TEXT COLLATE "C" NOT NULL DEFAULT 'normal'
                               CHECK (priority IN ('high', 'normal', 'low')),
    -- When a `scheduled` message is released; NULL: at once.
    ADD COLUMN send_at         TIMESTAMPTZ,
    -- A recipient not handed to a gateway by then becomes `expired`.
    ADD COLUMN valid_until     TIMESTAMPTZ,
    ADD COLUMN cancelled_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN expired_count   INTEGER NOT NULL DEFAULT 0,
    DROP CONSTRAINT messages_status_check,
    ADD CONSTRAINT messages_status_check
        CHECK (status IN ('scheduled', 'pending', 'sending', 'sent', 'failed', 'partial',
                          'cancelled', 'expired')),
    DROP CONSTRAINT messages_check,
    ADD CONSTRAINT messages_counts_check
        CHECK (sent_count + failed_count + cancelled_count + expired_count <= total_count);

ALTER TABLE recipients
    DROP CONSTRAINT recipients_status_check,
    ADD CONSTRAINT recipients_status_check
        CHECK (status IN ('pending', 'sent', 'failed', 'delivered', 'cancelled', 'expired'));

-- The outbox becomes the release queue. A row stays while the message has recipients not
-- yet published; the releaser (one per database, elected by an advisory lock) publishes
-- them a window at a time, by priority and fair share, and moves `released_through` (the
-- highest recipient id published) forward. What it needs to choose is copied here from the
-- message, so choosing reads one narrow table.
ALTER TABLE message_outbox
    ADD COLUMN user_id          BIGINT,
    ADD COLUMN priority         TEXT COLLATE "C" NOT NULL DEFAULT 'normal',
    ADD COLUMN route            TEXT COLLATE "C" NOT NULL DEFAULT 'hkt',
    -- Not before: `send_at`, or the time it was accepted.
    ADD COLUMN due_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN released_through BIGINT NOT NULL DEFAULT 0,
    -- Recipients not yet published (an upper bound: cancelled ones are skipped).
    ADD COLUMN unreleased       INTEGER NOT NULL DEFAULT 0,
    -- The message's validity: once past, its unreleased recipients expire here.
    ADD COLUMN valid_until      TIMESTAMPTZ,
    -- The accepting request's W3C trace context: the jobs carry it, so a trace still
    -- follows a message from its request to the gateway.
    ADD COLUMN traceparent      TEXT,
    DROP COLUMN lease_until;

UPDATE message_outbox o
SET user_id = m.user_id, route = m.route, due_at = o.queued_at,
    unreleased = (SELECT count(*) FROM recipients r WHERE r.message_id = m.id AND r.status = 'pending')
FROM messages m WHERE m.id = o.message_id;
DELETE FROM message_outbox WHERE user_id IS NULL;
ALTER TABLE message_outbox ALTER COLUMN user_id SET NOT NULL;

-- The releaser's one question: which (route, priority, user) groups have work due, and
-- their oldest messages.
CREATE INDEX message_outbox_groups_idx
    ON message_outbox (route, priority, user_id, message_id);

CREATE INDEX message_outbox_valid_until_idx ON message_outbox (valid_until)
    WHERE valid_until IS NOT NULL;

-- Scheduled messages: the releaser marks them pending when due; the panel lists them.
CREATE INDEX messages_scheduled_idx ON messages (send_at) WHERE status = 'scheduled';

-- A message's status from its counters, for every statement that changes them (the
-- dispatchers' result batches, expiry, cancel), so that the rule is written once. Mirrors
-- MessageStatus::from_tally in shared/src/domain/status.rs. A cancelled message stays
-- cancelled; one not finished keeps `scheduled`/`pending` until a recipient got a result.
CREATE FUNCTION message_status_of(current TEXT, total INT, sent INT, failed INT,
                                  cancelled INT, expired INT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN current = 'cancelled' THEN 'cancelled'
        WHEN sent + failed + cancelled + expired < total THEN
            CASE WHEN sent + failed + expired = 0 AND current IN ('scheduled', 'pending')
                 THEN current ELSE 'sending' END
        WHEN failed + cancelled + expired = 0 THEN 'sent'
        WHEN sent = 0 AND failed + cancelled = 0 THEN 'expired'
        WHEN sent = 0 AND expired = 0 THEN 'failed'
        ELSE 'partial' END
$$;

-- Exact quota counting across API instances: one row per user and UTC day.
CREATE TABLE user_daily_usage (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day        DATE NOT NULL,
    recipients BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

-- Rate allowances as GCRA: `allowed_from` is the theoretical arrival time of the next unit;
-- a request is allowed while it lies no further ahead than the burst. One row per user
-- and kind (`requests`: requests_per_second, `high`: high_priority_per_minute).
CREATE TABLE user_rate_state (
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('requests', 'high')),
    allowed_from TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- Gateway results per minute, for the dashboard's chart and the measured send rate. Each
-- dispatcher result batch adds its counts in its own transaction, to one of 8 shards of
-- the minute's row, so that dispatchers do not queue up on one row.
CREATE TABLE traffic_minutes (
    minute  TIMESTAMPTZ NOT NULL,
    shard   SMALLINT NOT NULL,
    sent    INTEGER NOT NULL DEFAULT 0,
    failed  INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, shard)
);

-- Recipients waiting (scheduled included), sampled once a minute by the releaser.
CREATE TABLE backlog_minutes (
    minute  TIMESTAMPTZ PRIMARY KEY,
    pending BIGINT NOT NULL,
    high    BIGINT NOT NULL,
    normal  BIGINT NOT NULL,
    low     BIGINT NOT NULL
);
