-- The per-user message counters took their shard from each row's id (id % 16), so one
-- statement that inserted or deleted many messages locked up to sixteen counter rows per
-- user, in no set order. Two such statements running at once (two bulks of one user, or
-- two batches of single sends) could each hold a row the other wanted: PostgreSQL found
-- the deadlock after deadlock_timeout (1 s) and failed one of them.
--
-- Now a statement picks one shard at random for all its rows and takes the rows of its
-- users in user_id order: one counter row per user and statement, always in the same
-- order, so statements queue for a counter row but never deadlock on them. The sum over a
-- user's shards is all that is read, so which shard a row was counted in does not matter;
-- a delete may take a shard below zero and that is fine for the same reason.

CREATE OR REPLACE FUNCTION count_inserted_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chosen_shard smallint := floor(random() * 16);
BEGIN
    INSERT INTO user_message_counts (user_id, shard, messages)
    SELECT user_id, chosen_shard, count(*) FROM inserted_messages GROUP BY user_id ORDER BY user_id
    ON CONFLICT (user_id, shard) DO UPDATE SET messages = user_message_counts.messages + EXCLUDED.messages;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION count_deleted_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chosen_shard smallint := floor(random() * 16);
BEGIN
    INSERT INTO user_message_counts (user_id, shard, messages)
    SELECT d.user_id, chosen_shard, -count(*) FROM deleted_messages d
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)
    GROUP BY d.user_id ORDER BY d.user_id
    ON CONFLICT (user_id, shard) DO UPDATE SET messages = user_message_counts.messages + EXCLUDED.messages;
    RETURN NULL;
END $$;
