-- Erasure jobs, tombstones and the purpose a legal hold keeps values for.
-- PostgreSQL dialect. Times are integer microseconds since the Unix epoch (UTC).

-- One erasure job per customer. The row is written before anything is
-- destroyed and advanced step by step (each step its own commit), so a job
-- that dies half way is found and finished at the next start. It holds no
-- personal value: ids, field and purpose names, legal bases and times.
CREATE TABLE erasure_jobs (
    customer_id  UUID PRIMARY KEY NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    receipt_id   UUID NOT NULL UNIQUE,
    request_id   TEXT,                   -- the data subject request, when one asked for it
    actor        TEXT NOT NULL,
    role         TEXT NOT NULL,
    status       TEXT NOT NULL,          -- running | partial | erased
    step         BIGINT NOT NULL,        -- 1 begun, 2 consents deleted, 3 values deleted, 4 keys done
    force_full   BOOLEAN NOT NULL DEFAULT FALSE,
    retained     TEXT NOT NULL,          -- JSON: [{field, purpose, basis, until, collected_at, hold_id}]
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX erasure_jobs_status ON erasure_jobs (status);

-- Tombstones: customer id, state and time of every erasure, nothing else.
-- The same lines are appended to the tombstone file outside the database,
-- which is what survives the restore of an older copy of this database.
CREATE TABLE tombstones (
    customer_id  UUID PRIMARY KEY NOT NULL,
    status       TEXT NOT NULL,          -- erased | partially_erased
    erased_at    BIGINT NOT NULL
);

-- The purpose a held value stays readable for once its customer is erased
-- (e.g. legal.claims).
ALTER TABLE legal_holds ADD COLUMN purpose TEXT;
CREATE INDEX legal_holds_active ON legal_holds (review_at) WHERE released_at IS NULL;
