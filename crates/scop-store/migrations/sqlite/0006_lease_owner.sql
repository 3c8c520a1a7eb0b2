-- Version 6: who holds a message's lease (a relay's id), so that a relay
-- starting up releases only the leases it held itself before a crash and
-- several relays can work one store.
ALTER TABLE messages ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
