-- A stale hour's marks: one row per writer (its database session on PostgreSQL, the one
-- writer on SQLite) instead of one per write, holding the last write's version. A write
-- sets a new random version on its own row (no row another writer holds); a roll removes
-- a row only if its version is still the one the roll read. Rows a release before this
-- one added (a mark per write, version 0) are rolled the same way.
ALTER TABLE rollup_stale ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
