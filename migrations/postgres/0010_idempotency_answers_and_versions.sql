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
    request_hash  BYTEA NOT NULL,
    state         BIGINT NOT NULL,
    status        BIGINT,
    kek_version   BIGINT,
    body          BYTEA,
    customer_id   UUID,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_customer ON idempotency_keys (customer_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- A customer's data version: the strong ETag of its profile. Every change
-- to what a profile shows (values, their purposes, consents, objections,
-- restrictions, erasure) moves it on, whichever code path writes it.
ALTER TABLE customers ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

CREATE FUNCTION customers_version_flags() RETURNS trigger AS $$
BEGIN
    IF (NEW.restricted, NEW.opted_out_sale, NEW.limit_sensitive, NEW.erased_at)
       IS DISTINCT FROM (OLD.restricted, OLD.opted_out_sale, OLD.limit_sensitive, OLD.erased_at) THEN
        NEW.version := NEW.version + 1;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER customers_version_flags BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_version_flags();

CREATE FUNCTION customer_data_version() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE customers SET version = version + 1 WHERE id = OLD.customer_id;
        RETURN OLD;
    END IF;
    UPDATE customers SET version = version + 1 WHERE id = NEW.customer_id;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER field_values_version AFTER INSERT OR UPDATE OR DELETE ON field_values
    FOR EACH ROW EXECUTE FUNCTION customer_data_version();
CREATE TRIGGER value_purposes_version AFTER INSERT OR UPDATE OR DELETE ON value_purposes
    FOR EACH ROW EXECUTE FUNCTION customer_data_version();
CREATE TRIGGER consent_events_version AFTER INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION customer_data_version();
CREATE TRIGGER objections_version AFTER INSERT OR DELETE ON objections
    FOR EACH ROW EXECUTE FUNCTION customer_data_version();
