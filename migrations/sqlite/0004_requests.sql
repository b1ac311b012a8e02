-- Data subject requests, the outbox and the record of disclosures to
-- recipients. SQLite dialect. Times are integer microseconds since the Unix
-- epoch (UTC), as everywhere else.

-- One row per data subject request. No personal value is stored in clear:
-- the identifier a customer gave is kept as its field name only, the
-- verification code as an argon2id hash, and the new values of a
-- rectification sealed under the customer's data key until they are applied.
-- Rows are never deleted by the vault (R20: kept at least 24 months), and
-- they have no foreign key to customers so that they outlive an erasure.
CREATE TABLE requests (
    id                   BLOB PRIMARY KEY NOT NULL,
    kind                 TEXT NOT NULL,
    regulation           TEXT NOT NULL,
    channel              TEXT NOT NULL,
    customer_id          BLOB,                 -- NULL: the identifier matched no customer
    identifier_field     TEXT,
    status               TEXT NOT NULL,
    filed_by             TEXT NOT NULL,
    received_at          INTEGER NOT NULL,
    due_at               INTEGER NOT NULL,
    extended_at          INTEGER,
    extension_reason     TEXT,
    verified_at          INTEGER,
    verification_method  TEXT,
    verified_by          TEXT,
    code_hash            TEXT,
    code_expires_at      INTEGER,
    code_attempts        INTEGER NOT NULL DEFAULT 0,
    approved_at          INTEGER,
    approved_by          TEXT,
    responded_at         INTEGER,
    denial_reason        TEXT,
    denial_note          TEXT,
    purpose              TEXT,
    lift                 BOOLEAN NOT NULL DEFAULT 0,
    changes              BLOB,
    result               TEXT,
    merged_into          BLOB,
    version              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX requests_status_due ON requests (status, due_at);
CREATE INDEX requests_customer_kind ON requests (customer_id, kind);
CREATE INDEX requests_received ON requests (received_at);

-- Request tokens, stored as SHA-256 of the 256-bit secret only.
CREATE TABLE request_tokens (
    token_sha256  TEXT PRIMARY KEY NOT NULL,
    request_id    BLOB NOT NULL REFERENCES requests (id),
    created_at    INTEGER NOT NULL
);
CREATE INDEX request_tokens_request ON request_tokens (request_id);

-- The package of a completed access or portability request, sealed under
-- the customer's data key (gone with it on erasure).
CREATE TABLE request_exports (
    request_id   BLOB PRIMARY KEY NOT NULL REFERENCES requests (id),
    customer_id  BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Messages for a notifier (or a webhook) to deliver. A payload that holds
-- a personal value (the customer's address, a verification code) is sealed
-- under that customer's data key; it is blanked once delivered.
CREATE TABLE outbox (
    id                BLOB PRIMARY KEY NOT NULL,
    kind              TEXT NOT NULL,
    customer_id       BLOB,
    request_id        BLOB,
    recipient_role    TEXT,
    recipient_client  TEXT,
    sealed            BOOLEAN NOT NULL DEFAULT 0,
    payload           BLOB,
    created_at        INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    delivered_at      INTEGER,
    last_error        TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_customer ON outbox (customer_id);

-- Every disclosure of a customer's values to a recipient (a client whose
-- role is marked `recipient`), GDPR Art. 15(1)(c), Art. 19.
CREATE TABLE disclosures (
    customer_id     BLOB NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    recipient_role  TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    fields          TEXT NOT NULL,          -- JSON array of field names
    at              INTEGER NOT NULL
);
CREATE INDEX disclosures_customer ON disclosures (customer_id, at);
