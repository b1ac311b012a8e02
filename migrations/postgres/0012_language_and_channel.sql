-- The language a data subject request was filed in (`en`, `it`,
-- `zh-Hans`; NULL: English), which the messages to the customer about it
-- are written in, and the channel (`email`, `sms`) of a message to the
-- customer, so the SMTP sender takes only the email ones. Messages queued
-- before this migration have no channel and stay with the notifier or the
-- webhook.
ALTER TABLE requests ADD COLUMN language TEXT;
ALTER TABLE outbox ADD COLUMN channel TEXT;
CREATE INDEX outbox_due_channel ON outbox (channel, next_attempt_at) WHERE delivered_at IS NULL;
