-- SIM cards get assignees (issue #13): a SIM is usable by, and its received SMS visible to,
-- either every user or only the users listed in sim_card_assignees. Admins see and use all.

-- TRUE keeps every existing SIM working for everyone after the upgrade; an admin narrows a
-- SIM to some users by setting it FALSE and listing them.
ALTER TABLE sim_cards ADD COLUMN assigned_to_all BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE sim_card_assignees (
    -- Deleting a SIM or a user takes its assignments with it; nothing else refers to them.
    sim_card_id BIGINT NOT NULL REFERENCES sim_cards (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A user is assigned to a SIM once; also the lookup "is this user assigned to this SIM".
    PRIMARY KEY (sim_card_id, user_id)
);
-- Listing the SIMs (and so the inbox) of one user starts from the user, and the user's
-- ON DELETE CASCADE needs it too.
CREATE INDEX sim_card_assignees_user_idx ON sim_card_assignees (user_id, sim_card_id);
