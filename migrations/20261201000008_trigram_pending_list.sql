-- The trigram index on messages.content collects new entries in a pending list and merges
-- them into the index when the list outgrows gin_pending_list_limit (4 MB by default). The
-- insert that crosses the limit does the whole merge itself: under single-send load that
-- was one statement of ~50-60 ms about every 45,000 messages, and every send waiting for
-- that statement (up to 64 at once in the benchmark) waited with it: the 60 ms maximum of
-- every run (wrk, docs/benchmarks.md). A 256 kB list is merged sixteen times as often in
-- pieces a sixteenth the size, a few milliseconds each; autovacuum, where it runs, still
-- empties the list in the background first.
ALTER INDEX messages_content_trgm_idx SET (gin_pending_list_limit = 256);
