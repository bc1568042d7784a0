-- The outbox marker moves off `messages` into a table of its own, holding one row per
-- message whose jobs are not all confirmed by the broker yet; the row is deleted once they
-- are. Marking a message enqueued used to be an UPDATE of its `messages` row, and since
-- `enqueued_at` is named by an index that update could never be HOT: it wrote a new entry
-- into each of the table's eight indexes (the trigram index among them), as expensive as
-- the insert itself. Deleting a narrow row costs a fraction of that, and the reconciler now
-- scans a table of in-flight messages instead of an index over all of them.

CREATE TABLE message_outbox (
    message_id  BIGINT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    -- Who publishes: until then the publisher that wrote the row owns it; NULL or past
    -- means the reconciler may take it.
    lease_until TIMESTAMPTZ,
    queued_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO message_outbox (message_id, lease_until, queued_at)
SELECT id, publish_lease_until, created_at FROM messages WHERE enqueued_at IS NULL;

DROP INDEX messages_unenqueued_idx;
ALTER TABLE messages DROP COLUMN enqueued_at, DROP COLUMN publish_lease_until;
