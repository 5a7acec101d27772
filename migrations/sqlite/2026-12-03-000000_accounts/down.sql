DROP INDEX users_by_username_key;
ALTER TABLE users DROP COLUMN username_key;
ALTER TABLE users DROP COLUMN token_generation;
