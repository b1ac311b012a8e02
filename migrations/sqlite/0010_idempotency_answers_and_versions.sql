-- Idempotency on every POST. A record is claimed before the request runs
-- (state 0), then holds the first answer sealed under the vault's active KEK
-- (state 1: status, kek_version, body), or for a POST without effect only
-- the keyed fingerprint (state 2). `principal` is the caller's scope: a
-- staff principal, a request token's keyed digest, or an anonymous
-- caller's keyed address. `customer_id` names the customer the request
-- concerned, so an erasure deletes the record. Older records held answers
-- in plain text: they are dropped (a retry within the window of such a
-- request is carried out again, as without a key).
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    state         INTEGER NOT NULL,
    status        INTEGER,
    kek_version   INTEGER,
    body          BLOB,
    customer_id   BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_customer ON idempotency_keys (customer_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- A customer's data version: the strong ETag of its profile. Every change
-- to what a profile shows (values, their purposes, consents, objections,
-- restrictions, erasure) moves it on, whichever code path writes it.
ALTER TABLE customers ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TRIGGER customers_version_flags AFTER UPDATE OF restricted, opted_out_sale, limit_sensitive, erased_at ON customers
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.id; END;
CREATE TRIGGER field_values_version_ins AFTER INSERT ON field_values
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER field_values_version_upd AFTER UPDATE ON field_values
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER field_values_version_del AFTER DELETE ON field_values
BEGIN UPDATE customers SET version = version + 1 WHERE id = OLD.customer_id; END;
CREATE TRIGGER value_purposes_version_ins AFTER INSERT ON value_purposes
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER value_purposes_version_upd AFTER UPDATE ON value_purposes
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER value_purposes_version_del AFTER DELETE ON value_purposes
BEGIN UPDATE customers SET version = version + 1 WHERE id = OLD.customer_id; END;
CREATE TRIGGER consent_events_version_ins AFTER INSERT ON consent_events
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER objections_version_ins AFTER INSERT ON objections
BEGIN UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id; END;
CREATE TRIGGER objections_version_del AFTER DELETE ON objections
BEGIN UPDATE customers SET version = version + 1 WHERE id = OLD.customer_id; END;
