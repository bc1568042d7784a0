-- Puts every message that still has `pending` recipients back in the release queue from
-- its first recipient, as the panel's "hold" does (core/src/outbox/repo.rs `hold`): the
-- releaser publishes them again. Run after a restore (restore.sh does), when the jobs the
-- releaser had already published before the dump may be gone with the broker, or were
-- consumed after the dump and their results lost with the database.
--
-- At least once: a recipient the gateway accepted after the dump is `pending` again and is
-- sent a second time. Recipients already terminal are skipped by the dispatchers, so jobs
-- still in RabbitMQ for them are harmless. Scheduled messages keep their time (due_at).
WITH pending AS (
    SELECT m.id, m.user_id, m.priority, m.route, m.valid_until, m.send_at,
           count(*)::int AS recipients
    FROM messages m
    JOIN recipients r ON r.message_id = m.id AND r.status = 'pending'
    WHERE m.status IN ('scheduled', 'pending', 'sending')
    GROUP BY m.id
), requeued AS (
    INSERT INTO message_outbox
        (message_id, user_id, priority, route, due_at, released_through, unreleased, valid_until)
    SELECT id, user_id, priority, route, coalesce(send_at, now()), 0, recipients, valid_until
    FROM pending
    ON CONFLICT (message_id) DO UPDATE
        SET released_through = 0, unreleased = EXCLUDED.unreleased
    RETURNING message_id
)
SELECT count(*) FROM requeued;
