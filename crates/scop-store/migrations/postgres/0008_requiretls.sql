-- Version 8: REQUIRETLS (RFC 8689) of queued messages: 1 when the
-- client asked for it, so the relay sends them only over TLS that DNSSEC
-- authenticates (DANE), to servers that offer REQUIRETLS.
ALTER TABLE messages ADD COLUMN requiretls BIGINT NOT NULL DEFAULT 0;
