-- How each build record was first found: by webhook, by a backfill of Jenkins' history,
-- or only by the repair that re-reads recent history (a sign of lost webhooks). NULL in
-- rows from before: those came by webhook.
ALTER TABLE builds ADD COLUMN found_by TEXT;

-- Backfill runs and, per run, the jobs read to the end: a stopped run resumes there.
CREATE TABLE backfill_runs (
    id          BIGINT NOT NULL PRIMARY KEY,
    controller  TEXT   NOT NULL,
    since       BIGINT NOT NULL,
    jobs_glob   TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    state       TEXT   NOT NULL,
    error       TEXT
);
CREATE INDEX backfill_runs_controller ON backfill_runs (controller, started_at);

CREATE TABLE backfill_jobs (
    run_id  BIGINT NOT NULL,
    job     TEXT   NOT NULL,
    builds  BIGINT NOT NULL,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, job)
);
