-- A consent event may be recorded as explicit: the customer confirmed the
-- specific statement about special-category data (GDPR Art. 9(2)(a)).
-- Events recorded before this migration were not explicit.
ALTER TABLE consent_events ADD COLUMN explicit BOOLEAN NOT NULL DEFAULT FALSE;
