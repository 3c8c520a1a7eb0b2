-- Version 4: password hashes in their own table, so a deployment can keep
-- them in a separate database file that only submission opens
-- (`Store::open_with_credentials`); `settings` records that it does.
CREATE TABLE passwords (
    login_key TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL
);
INSERT INTO passwords (login_key, password_hash) SELECT login_key, password_hash FROM users;
ALTER TABLE users DROP COLUMN password_hash;
CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
