-- Many SIMs for one bulk (issue #17): `"route": "sim"` messages are spread by the releaser
-- over every online SIM the sender may use, within per-SIM carrier caps, and move to
-- other SIMs (or to HKT where allowed) when a SIM goes offline.

-- The SIM a recipient's job was released to; NULL while unreleased, after it moved back
-- to the release queue, and for HKT. Set by the releaser in the statement that counts the
-- job against the SIM's caps, before the job is published, so a SIM's send result can be
-- checked against it. Nullable with no default and no foreign key: adding it does not
-- rewrite the table, and deleting a SIM does not touch recipients.
ALTER TABLE recipients ADD COLUMN sim_card_id BIGINT;
-- Per-SIM figures (statistics, the outbox list) read the few SIM recipients, not all.
CREATE INDEX recipients_sim_card_idx ON recipients (sim_card_id) WHERE sim_card_id IS NOT NULL;

-- Carriers' anti-spam limits, set by admins. NULL: no cap.
ALTER TABLE sim_cards
    ADD COLUMN max_per_minute     INTEGER CHECK (max_per_minute > 0),
    ADD COLUMN max_per_hour       INTEGER CHECK (max_per_hour > 0),
    ADD COLUMN max_per_day        INTEGER CHECK (max_per_day > 0),
    -- Average spacing between two jobs released to the SIM; each gap is drawn uniformly
    -- from [0.5, 1.5] times it, as a person's sends would be. NULL: no spacing.
    ADD COLUMN send_interval_secs INTEGER CHECK (send_interval_secs > 0),
    -- With spacing: the SIM takes no job before this time (the releaser draws it).
    ADD COLUMN next_release_at    TIMESTAMPTZ;

-- Jobs released to each SIM per minute: the caps' rolling windows (last 60 s, 60 min,
-- 24 h) are summed from here. The releaser writes it in the statement that sets
-- recipients.sim_card_id, and prunes rows older than two days.
CREATE TABLE sim_usage_minutes (
    sim_card_id BIGINT NOT NULL,
    minute      TIMESTAMPTZ NOT NULL,
    released    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sim_card_id, minute)
);

-- Pool sends only: `hkt` lets work no SIM can take (every usable SIM offline) go to the
-- HKT gateway. NULL: it waits for a SIM.
ALTER TABLE messages ADD COLUMN fallback TEXT COLLATE "C" CHECK (fallback IN ('hkt'));
