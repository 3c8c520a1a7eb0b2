-- Version 2: the outbound queue and the delivery log.
-- AUTOINCREMENT: a message id is never reused, so the log stays unambiguous.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    dsn_requested BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    size BIGINT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE recipients (
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    rcpt TEXT NOT NULL,
    rcpt_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    last_detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, position),
    UNIQUE (message_id, rcpt_key)
);
CREATE INDEX recipients_due ON recipients (state, next_attempt);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id BIGINT NOT NULL,
    rcpt TEXT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX deliveries_message ON deliveries (message_id, id);
