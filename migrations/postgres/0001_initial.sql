-- pii-vault schema, PostgreSQL dialect. Times are integer microseconds since the
-- Unix epoch (UTC) in both dialects, so comparisons behave the same.

-- Vault-wide settings: root key fingerprint, wrapped blind-index secret.
CREATE TABLE vault_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);

-- Key-encryption keys, each wrapped by the root key. Exactly one is active.
CREATE TABLE keyring (
    version      BIGINT PRIMARY KEY NOT NULL,
    wrapped      BYTEA,                 -- NULL once the version is retired (destroyed)
    active       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

-- Ed25519 keys signing tokens and audit checkpoints, sealed under a KEK.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    kek_version  BIGINT NOT NULL,
    sealed       BYTEA NOT NULL,
    public_key   BYTEA NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);

CREATE TABLE clients (
    id             UUID PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    secret_sha256  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL
);

CREATE TABLE users (
    id             UUID PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL
);

-- Data subjects. The data key is stored only wrapped by a KEK; erasure sets
-- it to NULL (crypto-shredding).
CREATE TABLE customers (
    id               UUID PRIMARY KEY NOT NULL,
    external_id      TEXT UNIQUE,
    created_at       BIGINT NOT NULL,
    kek_version      BIGINT,
    wrapped_dek      BYTEA,
    restricted       BOOLEAN NOT NULL DEFAULT FALSE,
    opted_out_sale   BOOLEAN NOT NULL DEFAULT FALSE,
    limit_sensitive  BOOLEAN NOT NULL DEFAULT FALSE,
    erased_at        BIGINT
);
CREATE INDEX customers_kek_version ON customers (kek_version);

-- One encrypted value per (customer, field).
CREATE TABLE field_values (
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    field           TEXT NOT NULL,
    ciphertext      BYTEA NOT NULL,
    collected_by    TEXT NOT NULL,
    channel         TEXT,
    notice_version  TEXT,
    collected_at    BIGINT NOT NULL,
    PRIMARY KEY (customer_id, field)
);

-- The purposes a value was collected for, each with its own retention end.
CREATE TABLE value_purposes (
    customer_id UUID NOT NULL,
    field         TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    collected_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (customer_id, field, purpose),
    FOREIGN KEY (customer_id, field) REFERENCES field_values (customer_id, field) ON DELETE CASCADE
);
CREATE INDEX value_purposes_expires_at ON value_purposes (expires_at);

-- Blind indexes (HMAC of the normalised value) for searchable fields.
CREATE TABLE blind_index (
    field        TEXT NOT NULL,
    digest       BYTEA NOT NULL,
    customer_id UUID NOT NULL,
    PRIMARY KEY (field, digest, customer_id),
    FOREIGN KEY (customer_id, field) REFERENCES field_values (customer_id, field) ON DELETE CASCADE
);

-- Append-only consent ledger.
CREATE TABLE consent_events (
    id                  UUID PRIMARY KEY NOT NULL,
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose             TEXT NOT NULL,
    action              TEXT NOT NULL,
    notice_version      TEXT NOT NULL,
    notice_text_sha256  TEXT NOT NULL,
    language            TEXT NOT NULL,
    jurisdiction        TEXT NOT NULL,
    channel             TEXT NOT NULL,
    captured_by         TEXT NOT NULL,
    at                  BIGINT NOT NULL
);
CREATE INDEX consent_events_customer ON consent_events (customer_id, at);

-- Objections (Art. 21), per purpose prefix.
CREATE TABLE objections (
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose      TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (customer_id, purpose)
);

-- Legal holds: values kept despite erasure until released.
CREATE TABLE legal_holds (
    id           UUID PRIMARY KEY NOT NULL,
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    fields       TEXT NOT NULL,          -- JSON array of field names
    reason       TEXT NOT NULL,
    basis        TEXT NOT NULL,
    review_at    BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    released_at  BIGINT
);
CREATE INDEX legal_holds_customer ON legal_holds (customer_id);

-- The audit chain. Each hash covers the previous one; the unique constraints
-- on seq and prev_hash make a fork impossible.
CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY NOT NULL,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    purpose      TEXT,
    customer_id  TEXT,
    fields       TEXT NOT NULL,          -- JSON array of field names
    decision     TEXT NOT NULL,
    reasons      TEXT NOT NULL,          -- JSON object
    request_id   TEXT NOT NULL,
    prev_hash    BYTEA NOT NULL UNIQUE,
    hash         BYTEA NOT NULL
);
CREATE INDEX audit_events_customer ON audit_events (customer_id, seq);
CREATE INDEX audit_events_at ON audit_events (at);

-- The chain head, locked by every append transaction.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    at    BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, at) VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0);

-- Signed checkpoints of the chain head.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY NOT NULL,
    hash       BYTEA NOT NULL,
    at         BIGINT NOT NULL,
    kid        TEXT NOT NULL,
    signature  BYTEA NOT NULL
);

-- Idempotency-Key: the first response to a POST, replayed on retry.
CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    status        BIGINT NOT NULL,
    body          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
