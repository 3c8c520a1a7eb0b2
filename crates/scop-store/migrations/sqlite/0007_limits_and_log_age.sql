-- Version 7: an account's own sending limits for submission (NULL takes
-- the server's default), and the delivery log by age, for pruning.
ALTER TABLE users ADD COLUMN messages_per_hour BIGINT;
ALTER TABLE users ADD COLUMN recipients_per_hour BIGINT;
ALTER TABLE users ADD COLUMN max_message_size BIGINT;
CREATE INDEX deliveries_at ON deliveries (at);
