-- Received SMS reach webhooks (`message.received`), and recipients can opt out by replying
-- STOP (or a configured keyword): their number goes on the opt-out list, and sends to a
-- listed number end `opted_out` without reaching a gateway. docs/webhooks.md and
-- docs/edge-gateway.md ("Inbound SMS: webhooks and opt-out by reply") are the contract.

-- What a webhook subscribes to. The default keeps every existing webhook receiving what it
-- received before this migration (`message.status` only). `webhook.test` is not an event
-- one subscribes to: it is sent on request. Never empty: a webhook that wants nothing is
-- disabled instead.
ALTER TABLE webhooks
    ADD COLUMN events TEXT[] NOT NULL DEFAULT '{message.status}'
        CONSTRAINT webhooks_events_known
        CHECK (cardinality(events) >= 1
               AND events <@ ARRAY['message.status', 'message.received']::TEXT[]);

ALTER TABLE webhook_deliveries
    DROP CONSTRAINT webhook_deliveries_event_type_check,
    ADD CONSTRAINT webhook_deliveries_event_type_check
        CHECK (event_type IN ('message.status', 'message.received', 'webhook.test'));

-- The opt-out list. A row with `user_id` NULL is global (no user's send reaches the number);
-- one with a user id stops that user's sends only. Replies always make global rows: whoever
-- replies STOP to a SIM can't tell which of our users wrote to them.
CREATE TABLE opt_outs (
    id                 BIGSERIAL PRIMARY KEY,
    -- E.164, exactly as recipients.phone stores it, so a send is matched by equality.
    phone              TEXT NOT NULL CHECK (phone ~ '^\+[0-9]{8,15}$'),
    user_id            BIGINT REFERENCES users (id) ON DELETE CASCADE,
    source             TEXT NOT NULL CHECK (source IN ('reply', 'api', 'admin')),
    -- For replies: the SIM it was sent to and the SMS itself. Both outlive their rows (a
    -- deleted SIM or a swept inbox does not put the number back on the air).
    sim_card_id        BIGINT REFERENCES sim_cards (id) ON DELETE SET NULL,
    inbound_message_id BIGINT REFERENCES inbound_messages (id) ON DELETE SET NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A number is on each list once (NULLS NOT DISTINCT: once on the global list too). The
    -- index also answers every send's question "is this number listed for this user or
    -- for everyone", a probe by phone.
    CONSTRAINT opt_outs_phone_user_key UNIQUE NULLS NOT DISTINCT (phone, user_id)
);
-- A user's own list (the opt-out API lists it) and the users' ON DELETE CASCADE.
CREATE INDEX opt_outs_user_idx ON opt_outs (user_id, created_at DESC) WHERE user_id IS NOT NULL;

-- `opted_out`: the recipient's number was on the opt-out list; it never reaches a gateway.
-- NOT VALID then VALIDATE: the check of the existing rows then runs without blocking writes.
ALTER TABLE recipients
    DROP CONSTRAINT recipients_status_check,
    ADD CONSTRAINT recipients_status_check
        CHECK (status IN ('pending', 'sent', 'failed', 'delivered', 'cancelled', 'expired',
                          'opted_out')) NOT VALID;
ALTER TABLE recipients VALIDATE CONSTRAINT recipients_status_check;

ALTER TABLE messages
    ADD COLUMN opted_out_count INTEGER NOT NULL DEFAULT 0,
    DROP CONSTRAINT messages_counts_check,
    ADD CONSTRAINT messages_counts_check
        CHECK (sent_count + failed_count + cancelled_count + expired_count + opted_out_count
               <= total_count) NOT VALID;
ALTER TABLE messages VALIDATE CONSTRAINT messages_counts_check;

-- The status rule with opted-out recipients: they are done (a message of only opted-out
-- recipients is final at once) and, like cancelled ones, count as not sent: all of them
-- opted out is `failed`, some sent and some opted out is `partial`. Mirrors
-- MessageStatus::from_tally. The six-argument form is dropped rather than kept: a caller
-- that does not pass the opted-out count would never see such a message finish.
DROP FUNCTION message_status_of(TEXT, INT, INT, INT, INT, INT);
CREATE FUNCTION message_status_of(current TEXT, total INT, sent INT, failed INT,
                                  cancelled INT, expired INT, opted_out INT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN current = 'cancelled' THEN 'cancelled'
        WHEN sent + failed + cancelled + expired + opted_out < total THEN
            CASE WHEN sent + failed + expired = 0 AND current IN ('scheduled', 'pending')
                 THEN current ELSE 'sending' END
        WHEN failed + cancelled + expired + opted_out = 0 THEN 'sent'
        WHEN sent = 0 AND failed + cancelled + opted_out = 0 THEN 'expired'
        WHEN sent = 0 AND expired = 0 THEN 'failed'
        ELSE 'partial' END
$$;
