DROP INDEX users_username_key;
ALTER TABLE users DROP COLUMN username_key;
ALTER TABLE users DROP COLUMN token_generation;
