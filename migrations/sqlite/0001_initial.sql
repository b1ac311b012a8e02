-- pii-vault schema, SQLite dialect. Times are integer microseconds since the
-- Unix epoch (UTC) in both dialects, so comparisons behave the same.

-- Vault-wide settings: root key fingerprint, wrapped blind-index secret.
CREATE TABLE vault_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

-- Key-encryption keys, each wrapped by the root key. Exactly one is active.
CREATE TABLE keyring (
    version      INTEGER PRIMARY KEY NOT NULL,
    wrapped      BLOB,                 -- NULL once the version is retired (destroyed)
    active       BOOLEAN NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER
);

-- Ed25519 keys signing tokens and audit checkpoints, sealed under a KEK.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    kek_version  INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    public_key   BLOB NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

CREATE TABLE clients (
    id             BLOB PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    secret_sha256  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

CREATE TABLE users (
    id             BLOB PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

-- Data subjects. The data key is stored only wrapped by a KEK; erasure sets
-- it to NULL (crypto-shredding).
CREATE TABLE customers (
    id               BLOB PRIMARY KEY NOT NULL,
    external_id      TEXT UNIQUE,
    created_at       INTEGER NOT NULL,
    kek_version      INTEGER,
    wrapped_dek      BLOB,
    restricted       BOOLEAN NOT NULL DEFAULT 0,
    opted_out_sale   BOOLEAN NOT NULL DEFAULT 0,
    limit_sensitive  BOOLEAN NOT NULL DEFAULT 0,
    erased_at        INTEGER
);
CREATE INDEX customers_kek_version ON customers (kek_version);

-- One encrypted value per (customer, field).
CREATE TABLE field_values (
    customer_id     BLOB NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    field           TEXT NOT NULL,
    ciphertext      BLOB NOT NULL,
    collected_by    TEXT NOT NULL,
    channel         TEXT,
    notice_version  TEXT,
    collected_at    INTEGER NOT NULL,
    PRIMARY KEY (customer_id, field)
);

-- The purposes a value was collected for, each with its own retention end.
CREATE TABLE value_purposes (
    customer_id   BLOB NOT NULL,
    field         TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    collected_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (customer_id, field, purpose),
    FOREIGN KEY (customer_id, field) REFERENCES field_values (customer_id, field) ON DELETE CASCADE
);
CREATE INDEX value_purposes_expires_at ON value_purposes (expires_at);

-- Blind indexes (HMAC of the normalised value) for searchable fields.
CREATE TABLE blind_index (
    field        TEXT NOT NULL,
    digest       BLOB NOT NULL,
    customer_id  BLOB NOT NULL,
    PRIMARY KEY (field, digest, customer_id),
    FOREIGN KEY (customer_id, field) REFERENCES field_values (customer_id, field) ON DELETE CASCADE
);

-- Append-only consent ledger.
CREATE TABLE consent_events (
    id                  BLOB PRIMARY KEY NOT NULL,
    customer_id         BLOB NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose             TEXT NOT NULL,
    action              TEXT NOT NULL,
    notice_version      TEXT NOT NULL,
    notice_text_sha256  TEXT NOT NULL,
    language            TEXT NOT NULL,
    jurisdiction        TEXT NOT NULL,
    channel             TEXT NOT NULL,
    captured_by         TEXT NOT NULL,
    at                  INTEGER NOT NULL
);
CREATE INDEX consent_events_customer ON consent_events (customer_id, at);

-- Objections (Art. 21), per purpose prefix.
CREATE TABLE objections (
    customer_id  BLOB NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose      TEXT NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (customer_id, purpose)
);

-- Legal holds: values kept despite erasure until released.
CREATE TABLE legal_holds (
    id           BLOB PRIMARY KEY NOT NULL,
    customer_id  BLOB NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    fields       TEXT NOT NULL,          -- JSON array of field names
    reason       TEXT NOT NULL,
    basis        TEXT NOT NULL,
    review_at    INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    released_at  INTEGER
);
CREATE INDEX legal_holds_customer ON legal_holds (customer_id);

-- The audit chain. Each hash covers the previous one; the unique constraints
-- on seq and prev_hash make a fork impossible.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY NOT NULL,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    purpose      TEXT,
    customer_id  TEXT,
    fields       TEXT NOT NULL,          -- JSON array of field names
    decision     TEXT NOT NULL,
    reasons      TEXT NOT NULL,          -- JSON object
    request_id   TEXT NOT NULL,
    prev_hash    BLOB NOT NULL UNIQUE,
    hash         BLOB NOT NULL
);
CREATE INDEX audit_events_customer ON audit_events (customer_id, seq);
CREATE INDEX audit_events_at ON audit_events (at);

-- The chain head, locked by every append transaction.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    at    INTEGER NOT NULL
);
INSERT INTO audit_head (id, seq, hash, at) VALUES (1, 0, zeroblob(32), 0);

-- Signed checkpoints of the chain head.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY NOT NULL,
    hash       BLOB NOT NULL,
    at         INTEGER NOT NULL,
    kid        TEXT NOT NULL,
    signature  BLOB NOT NULL
);

-- Idempotency-Key: the first response to a POST, replayed on retry.
CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    status        INTEGER NOT NULL,
    body          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
