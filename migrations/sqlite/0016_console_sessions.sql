-- Sessions of the staff console (`/console/`). SQLite dialect.
-- Times are integer microseconds since the Unix epoch (UTC).

-- One row per signed-in browser. `id_hash` is the SHA-256 (hex) of the
-- session id the cookie carries: the id itself is never stored, so a copy
-- of the database signs nobody in. A session ends after 15 minutes without
-- use or 8 hours after sign-in, at sign-out, and when its user is disabled
-- or their password is reset.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY NOT NULL,
    user_id       BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
