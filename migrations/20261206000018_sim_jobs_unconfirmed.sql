-- SIM jobs placed but not yet confirmed by the broker (issue #15). The releaser records a
-- SIM job's placement (recipients.sim_card_id) before it publishes the job, so that the
-- SIM's send result finds its recipient; the release query then passes placed recipients
-- over. A releaser that died between that commit and the broker's confirm would leave the
-- recipient placed, pending and in no queue, for ever. So a placement is also written
-- here, in the same statement, and removed once the broker confirmed the job (or the
-- placement was undone); the next releaser publishes again whatever is left (at least
-- once, as every job). Small: it holds one round's SIM jobs at most, normally nothing.
CREATE TABLE sim_jobs_unconfirmed (
    recipient_id BIGINT PRIMARY KEY,
    sim_card_id  BIGINT NOT NULL,
    placed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
