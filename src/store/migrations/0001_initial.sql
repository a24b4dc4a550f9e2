-- One schema for SQLite and PostgreSQL: portable types only (TEXT, BIGINT),
-- instants as epoch milliseconds, JSON as TEXT.

CREATE TABLE events (
    idempotency_key TEXT PRIMARY KEY,
    controller      TEXT   NOT NULL,
    source          TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    received_at     BIGINT NOT NULL,
    payload         TEXT   NOT NULL
);

CREATE TABLE builds (
    controller    TEXT   NOT NULL,
    job           TEXT   NOT NULL,
    number        BIGINT NOT NULL,
    queue_id      BIGINT,
    phase         TEXT   NOT NULL,
    label         TEXT,
    node          TEXT,
    queued_at     BIGINT,
    started_at    BIGINT,
    finished_at   BIGINT,
    queue_wait_ms BIGINT,
    duration_ms   BIGINT,
    result        TEXT,
    parameters    TEXT   NOT NULL,
    scm_url       TEXT,
    scm_branch    TEXT,
    scm_commit    TEXT,
    url           TEXT,
    sort_at       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (controller, job, number)
);
CREATE INDEX builds_queue_id ON builds (controller, queue_id);
CREATE INDEX builds_sort_at ON builds (sort_at);
CREATE INDEX builds_job ON builds (controller, job, sort_at);

CREATE TABLE queue_items (
    controller TEXT   NOT NULL,
    queue_id   BIGINT NOT NULL,
    task       TEXT   NOT NULL,
    job        TEXT,
    state      TEXT   NOT NULL,
    state_at   BIGINT NOT NULL,
    entered_at BIGINT,
    left_at    BIGINT,
    why        TEXT,
    label      TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (controller, queue_id)
);
CREATE INDEX queue_items_state ON queue_items (state, controller);

CREATE TABLE nodes (
    controller    TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    online        BIGINT NOT NULL,
    executors     BIGINT,
    offline_cause TEXT,
    changed_at    BIGINT NOT NULL,
    PRIMARY KEY (controller, name)
);

CREATE TABLE build_steps (
    controller  TEXT   NOT NULL,
    job         TEXT   NOT NULL,
    number      BIGINT NOT NULL,
    step_id     TEXT   NOT NULL,
    step_type   TEXT   NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (controller, job, number, step_id)
);
