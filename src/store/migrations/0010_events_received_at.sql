-- The hourly purge of events past their retention finds them by `received_at`: without an
-- index it read the whole table under the write lock, and at 1,000 webhooks a second every
-- webhook waited 3 s for it once an hour (the soak).
CREATE INDEX events_received_at ON events (received_at);
