-- Client secret rotation (`pii-vault clients rotate-secret`). SQLite dialect.
-- Times are integer microseconds since the Unix epoch (UTC).

-- When the client's secret was last replaced; NULL if never. Access tokens
-- issued (`iat`) before it are refused.
ALTER TABLE clients ADD COLUMN secret_changed_at INTEGER;
