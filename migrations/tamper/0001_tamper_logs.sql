-- The tamper-evidence logs of pii-vault, in a database of their own
-- (`tombstone_database_url`): the tombstone log and the audit witness.
-- One row per line; `line` is the JSON entry, HMAC-chained to the one
-- before it (see src/tamper/chain.rs). Rows are only ever appended.
CREATE TABLE tamper_log (
    log TEXT NOT NULL,
    n BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (log, n)
);
