-- Finished builds summed by hour and by UTC day, per controller, job, label and result,
-- with their durations and known queue waits listed (ms, ascending, comma-separated):
-- reports over long ranges read these for whole periods and builds only at the edges.
-- span_ms is 3600000 (an hour) or 86400000 (a UTC day); start_at is the period's start.
CREATE TABLE build_rollups (
    span_ms       BIGINT NOT NULL,
    start_at      BIGINT NOT NULL,
    controller    TEXT   NOT NULL,
    job           TEXT   NOT NULL,
    label         TEXT,
    result        TEXT,
    builds        BIGINT NOT NULL,
    duration_ms   DOUBLE PRECISION NOT NULL,
    wait_ms       DOUBLE PRECISION NOT NULL,
    waits         BIGINT NOT NULL,
    unreported    BIGINT NOT NULL,
    unreported_ms DOUBLE PRECISION NOT NULL,
    cpu_m_ms      DOUBLE PRECISION NOT NULL,
    memory_b_ms   DOUBLE PRECISION NOT NULL,
    backfilled    BIGINT NOT NULL,
    repaired      BIGINT NOT NULL,
    durations     TEXT   NOT NULL,
    queue_waits   TEXT   NOT NULL
);
CREATE INDEX build_rollups_at ON build_rollups (span_ms, start_at);

-- Hours whose builds (or their usage reports) changed since they were rolled up: a row
-- per change (a write batch adds its own, so writers never wait on one another's row);
-- a roll-up removes the marks it saw, and a mark added meanwhile stays.
CREATE TABLE rollup_stale (
    hour BIGINT NOT NULL,
    mark BIGINT NOT NULL,
    PRIMARY KEY (hour, mark)
);
-- Every hour with builds from before is rolled up anew.
INSERT INTO rollup_stale (hour, mark)
SELECT DISTINCT (finished_at / 3600000) * 3600000, 0 FROM builds WHERE finished_at IS NOT NULL;

-- UTC days whose hours were rolled up: rolled = 1 once the day's own rows are current;
-- hours = 0 once its hour rows were dropped (old days: the day rows stand for them).
CREATE TABLE rollup_days (
    day    BIGINT NOT NULL PRIMARY KEY,
    rolled BIGINT NOT NULL,
    hours  BIGINT NOT NULL
);

-- Writes that do not mark hours (a release before this one, during a rolling upgrade)
-- are found by when they were made: the roller marks the hours of builds updated, and of
-- usage reports recorded, since `updated_through` (less a margin for clock skew).
CREATE TABLE rollup_state (
    name  TEXT   NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO rollup_state (name, value) SELECT 'updated_through', COALESCE(MAX(updated_at), 0) FROM builds;
CREATE INDEX builds_updated_at ON builds (updated_at);
CREATE INDEX build_performance_recorded_at ON build_performance (recorded_at);
