-- Token revocation: a token is valid only while it carries its user's
-- current generation; changing the password or logging out moves it on.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;

-- Uniqueness and login compare usernames by their key (NFKC, lower case),
-- so `Alice`, `ALICE` and the full-width `ａｌｉｃｅ` are one name. The
-- key is computed by the server (SQL cannot NFKC on every backend): rows
-- from before this migration get theirs when the server next starts. Of
-- two existing accounts whose names share a key, the older keeps it and
-- the newer keeps NULL: it still logs in by its exact name, and the
-- server warns about it at every start until an operator renames it.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_by_username_key ON users (username_key);
