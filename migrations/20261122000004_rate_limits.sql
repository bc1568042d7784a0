-- Global rate limits shared by every dispatcher replica. One row per limited resource
-- (today only the HKT gateway). `next_slot` is the earliest time the next request may go
-- out; a dispatcher reserves a few consecutive slots at a time by moving it forward, so
-- replicas together never exceed the rate, and a replica that dies loses at most the few
-- slots it had reserved: nothing is held that would outlive it.
CREATE TABLE rate_limits (
    name      TEXT PRIMARY KEY,
    next_slot TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
