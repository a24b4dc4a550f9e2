-- Costs, reports and exports select builds by when they finished.
CREATE INDEX builds_finished_at ON builds (finished_at);
