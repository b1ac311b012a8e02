-- Access tokens get signing keys of their own, apart from the key that signs
-- audit checkpoints (`signing_keys`); `keys rotate-token-signing` rotates
-- them. An existing vault starts from a copy of its signing keys, so tokens
-- issued before the upgrade keep working until they expire; at start-up the
-- vault replaces the copied active key with a fresh one (see src/vault.rs).
CREATE TABLE token_signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    kek_version    INTEGER NOT NULL,
    sealed         BLOB NOT NULL,
    public_key     BLOB NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER,
    tokens_revoked BOOLEAN NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX token_signing_keys_one_active ON token_signing_keys (active) WHERE active;

INSERT INTO token_signing_keys
    (kid, kek_version, sealed, public_key, active, created_at, retired_at, tokens_revoked)
SELECT kid, kek_version, sealed, public_key, active, created_at, retired_at, tokens_revoked
FROM signing_keys;
