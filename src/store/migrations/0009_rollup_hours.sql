-- The newest change (a build's update or its usage report) the last roll of each hour
-- summed: the roller's look-back for writes that mark nothing marks an hour again only
-- for a change newer than that. Without it, a busy hour that had just ended was summed
-- anew at every pass for as long as its last writes stayed inside the look-back.
CREATE TABLE rollup_hours (
    hour         BIGINT NOT NULL PRIMARY KEY,
    seen_through BIGINT NOT NULL
);
