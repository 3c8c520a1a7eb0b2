-- Version 9: an account's own limit of messages per day for submission
-- (NULL: the server's default).
ALTER TABLE users ADD COLUMN messages_per_day BIGINT;
