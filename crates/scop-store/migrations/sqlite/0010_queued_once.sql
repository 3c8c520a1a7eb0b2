-- Version 10: keys of the copies queued once only (a forward handed on
-- again after a crash is not queued twice), by age, for pruning.
CREATE TABLE queued_once (
    copy_key TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX queued_once_at ON queued_once (at);
