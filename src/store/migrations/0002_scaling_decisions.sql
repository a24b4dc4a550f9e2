-- Every scaling decision with its inputs, the rule that fired and what became of it.
CREATE TABLE scaling_decisions (
    pool             TEXT   NOT NULL,
    decided_at       BIGINT NOT NULL,
    seq              BIGINT NOT NULL,
    trigger_kind     TEXT   NOT NULL,
    current_replicas BIGINT,
    recommended      BIGINT,
    desired          BIGINT,
    rule             TEXT   NOT NULL,
    reason           TEXT   NOT NULL,
    outcome          TEXT   NOT NULL,
    error            TEXT,
    inputs           TEXT   NOT NULL,
    PRIMARY KEY (pool, decided_at, seq)
);
