-- Which replica runs a backfill (its POD_NAME, else its host name): at start a replica
-- marks its own runs that are still `running` as interrupted (the process that ran them
-- is gone). NULL in runs from before.
ALTER TABLE backfill_runs ADD COLUMN owner TEXT;
