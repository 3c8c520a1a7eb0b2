-- Version 3: DSN parameters (RFC 3461) of queued messages and recipients.
-- ENVID is stored xtext-decoded; NULL means the client gave none.
ALTER TABLE messages ADD COLUMN envid TEXT;
ALTER TABLE messages ADD COLUMN ret TEXT CHECK (ret IS NULL OR ret IN ('FULL', 'HDRS'));
-- NOTIFY: NULL (not given), 'NEVER', or a comma-separated subset of
-- SUCCESS, FAILURE, DELAY in that order.
ALTER TABLE recipients ADD COLUMN notify TEXT;
-- ORCPT: the address type (e.g. rfc822) and the xtext-decoded address.
ALTER TABLE recipients ADD COLUMN orcpt_type TEXT;
ALTER TABLE recipients ADD COLUMN orcpt TEXT;
-- 1 once a delay DSN was queued for this recipient (at most one is sent).
ALTER TABLE recipients ADD COLUMN delay_notified BIGINT NOT NULL DEFAULT 0;
