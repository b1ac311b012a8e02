-- Password resets (`pii-vault users set-password`). SQLite dialect.
-- Times are integer microseconds since the Unix epoch (UTC).

-- When the user's password was last reset; NULL if never. Access tokens
-- issued (`iat`) before it are refused.
ALTER TABLE users ADD COLUMN password_changed_at INTEGER;
