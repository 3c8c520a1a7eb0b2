-- Version 1: domains, accounts, their addresses and forwarding targets, aliases.
-- *_key columns hold the case-folded form used for matching.
CREATE TABLE domains (
    name TEXT PRIMARY KEY NOT NULL
);
CREATE TABLE users (
    login_key TEXT PRIMARY KEY NOT NULL,
    login TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE addresses (
    address_key TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    login_key TEXT NOT NULL REFERENCES users (login_key) ON DELETE CASCADE
);
CREATE INDEX addresses_login ON addresses (login_key);
CREATE TABLE forwards (
    login_key TEXT NOT NULL REFERENCES users (login_key) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (login_key, position)
);
CREATE TABLE aliases (
    source_key TEXT NOT NULL,
    source TEXT NOT NULL,
    target_key TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (source_key, target_key)
);
CREATE INDEX aliases_target ON aliases (target_key);
