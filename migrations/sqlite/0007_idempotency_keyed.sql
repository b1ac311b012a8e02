-- Idempotency records: the fingerprint of a request is now keyed (HMAC
-- under a key derived from the vault's index secret), records name the
-- customer they created so an erasure deletes them, and they expire
-- (`idempotency_ttl_hours`). Records written before held a plain SHA-256
-- of the whole request body, which lets anyone holding the file confirm a
-- guessed value: they are deleted (a retry of such a request within its
-- window is then carried out again, as without a key).
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys ADD COLUMN customer_id BLOB;
CREATE INDEX idempotency_keys_customer ON idempotency_keys (customer_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
