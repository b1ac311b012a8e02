-- Key rotation: at most one active KEK and one active signing key, a record
-- of when a signing key stopped signing, an index that finds the data keys
-- still wrapped by an older KEK version, and a guard that refuses a data key
-- wrapped by a KEK version that is retired (destroyed) or unknown.

CREATE UNIQUE INDEX keyring_one_active ON keyring (active) WHERE active;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (active) WHERE active;

-- When a KEK version stopped being active, and how many data keys it wrapped
-- then (the denominator of the rewrap progress).
ALTER TABLE keyring ADD COLUMN deactivated_at INTEGER;
ALTER TABLE keyring ADD COLUMN rewrap_total INTEGER;

-- When the key stopped signing; tokens it signed are accepted until they
-- expire, its public key stays published for older checkpoints.
ALTER TABLE signing_keys ADD COLUMN retired_at INTEGER;
-- Replaced after a suspected leak: its tokens are refused at once.
ALTER TABLE signing_keys ADD COLUMN tokens_revoked BOOLEAN NOT NULL DEFAULT 0;

-- Live (not erased) data keys by KEK version: rewrap progress and batches.
CREATE INDEX customers_live_kek ON customers (kek_version, id) WHERE wrapped_dek IS NOT NULL;

CREATE TRIGGER customers_kek_live_insert BEFORE INSERT ON customers
WHEN NEW.wrapped_dek IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM keyring WHERE version = NEW.kek_version AND wrapped IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'data key wrapped by a retired or unknown KEK version');
END;

CREATE TRIGGER customers_kek_live_update BEFORE UPDATE OF kek_version, wrapped_dek ON customers
WHEN NEW.wrapped_dek IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM keyring WHERE version = NEW.kek_version AND wrapped IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'data key wrapped by a retired or unknown KEK version');
END;
