-- What each build reported it used (autopilot.recordPerformance): one row per build,
-- replaced when the build reports again. Joined with `builds` by its key.
CREATE TABLE build_performance (
    controller           TEXT   NOT NULL,
    job                  TEXT   NOT NULL,
    number               BIGINT NOT NULL,
    build_type           TEXT   NOT NULL,
    recorded_at          BIGINT NOT NULL,
    elapsed_ms           BIGINT NOT NULL,
    cpu_usage_usec       BIGINT NOT NULL,
    cpu_average_m        BIGINT NOT NULL,
    memory_peak_bytes    BIGINT NOT NULL,
    oom_kills            BIGINT,
    request_cpu_m        BIGINT,
    request_memory_bytes BIGINT,
    limit_cpu_m          BIGINT,
    limit_memory_bytes   BIGINT,
    profile              TEXT,
    stages               TEXT   NOT NULL,
    PRIMARY KEY (controller, job, number)
);
CREATE INDEX build_performance_job ON build_performance (controller, job, build_type, recorded_at);
