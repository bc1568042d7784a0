-- Edge gateway: SIM cards with their agents' last heartbeat, the message references
-- modems gave each sent part (so delivery reports find their recipient), and received SMS.
-- Messages routed through a SIM keep `messages.route = 'sim.<id>'` (the column exists
-- since the core schema), so no new column on the hot tables.

CREATE TABLE sim_cards (
    id                BIGSERIAL PRIMARY KEY,
    -- E.164, parsed by the API.
    number            TEXT NOT NULL,
    label             TEXT NOT NULL DEFAULT '',
    -- Set by people: an inactive SIM takes no new sends.
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set by the agent's heartbeats; online means a heartbeat within 3 intervals.
    last_heartbeat_at TIMESTAMPTZ,
    -- +CSQ rssi 0..31; NULL when unknown.
    signal            SMALLINT CHECK (signal BETWEEN 0 AND 31),
    registration      TEXT,
    operator          TEXT,
    -- Round-robin over online SIMs takes the one used longest ago.
    last_used_at      TIMESTAMPTZ
);
-- One row per physical SIM: registering the same number twice is a mistake.
CREATE UNIQUE INDEX sim_cards_number_key ON sim_cards (number);

-- One row per part a modem sent. References are one octet and wrap, so a lookup takes
-- the newest row of (sim, reference); a report older than the wrap is rare and harmless.
CREATE TABLE sim_part_refs (
    id            BIGSERIAL PRIMARY KEY,
    sim_card_id   BIGINT NOT NULL,
    recipient_id  BIGINT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    part          SMALLINT NOT NULL,
    reference     SMALLINT NOT NULL CHECK (reference BETWEEN 0 AND 255),
    sent_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at  TIMESTAMPTZ,
    report_status SMALLINT,
    -- A redelivered send result must not add the same parts twice.
    UNIQUE (recipient_id, part)
);
-- Every delivery report looks its part up by SIM and reference, newest first.
CREATE INDEX sim_part_refs_lookup_idx ON sim_part_refs (sim_card_id, reference, sent_at DESC);

CREATE TABLE inbound_messages (
    id          BIGSERIAL PRIMARY KEY,
    -- NULL once the SIM is deleted; the message stays in the inbox with its number.
    sim_card_id BIGINT REFERENCES sim_cards (id) ON DELETE SET NULL,
    sim_number  TEXT NOT NULL,
    sender      TEXT NOT NULL,
    content     TEXT NOT NULL,
    parts       SMALLINT NOT NULL DEFAULT 1,
    sent_at     TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Derived by the agent from what the network sent: the same SMS published twice
    -- (agent restarted between the broker's confirm and deleting it from the SIM) is one row.
    dedupe_key  TEXT NOT NULL
);
CREATE UNIQUE INDEX inbound_messages_dedupe_key ON inbound_messages (dedupe_key);
-- The inbox, newest first, over all SIMs or one.
CREATE INDEX inbound_messages_created_idx ON inbound_messages (created_at DESC, id DESC);
CREATE INDEX inbound_messages_sim_idx ON inbound_messages (sim_card_id, created_at DESC, id DESC);

-- The outbox and SIM deletion filter messages by route.
CREATE INDEX messages_route_created_idx ON messages (route, created_at DESC, id DESC);
