-- Version 5: a counter that every change to the directory (domains,
-- accounts, addresses, forwarding targets, aliases) increments, so a
-- process may keep resolved entries as long as the counter stands still.
CREATE TABLE directory_version (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);
CREATE TRIGGER domains_insert AFTER INSERT ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER domains_update AFTER UPDATE ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER domains_delete AFTER DELETE ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER users_insert AFTER INSERT ON users BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER users_update AFTER UPDATE ON users BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER users_delete AFTER DELETE ON users BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER addresses_insert AFTER INSERT ON addresses BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER addresses_update AFTER UPDATE ON addresses BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER addresses_delete AFTER DELETE ON addresses BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER forwards_insert AFTER INSERT ON forwards BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER forwards_update AFTER UPDATE ON forwards BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER forwards_delete AFTER DELETE ON forwards BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER aliases_insert AFTER INSERT ON aliases BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER aliases_update AFTER UPDATE ON aliases BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER aliases_delete AFTER DELETE ON aliases BEGIN UPDATE directory_version SET version = version + 1; END;
