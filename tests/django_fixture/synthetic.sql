-- A large Django chat database made directly in SQL, for the import's
-- kill test (tests/import_django.rs) and its benchmark (make bench-import):
-- the tables the importer reads, as Django 5.1's `migrate` makes them on
-- SQLite (auth_user's unread columns included, so that they are really
-- left alone). CHATS and PER_CHAT are replaced before it runs.
--
-- Chat c (1..CHATS) is users 2c-1 and 2c. Its k-th message (1..PER_CHAT)
-- has id (k-1)*CHATS + c, so that id order interleaves every chat, as real
-- traffic does; odd k are the lower user's, even k the higher's; the last
-- ten of each chat are unread, the rest read.
CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL, "date_joined" datetime NOT NULL, "first_name" varchar(150) NOT NULL);
CREATE TABLE "chat_directchat" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "created" datetime NOT NULL);
CREATE TABLE "chat_directchat_participants" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "directchat_id" bigint NOT NULL REFERENCES "chat_directchat" ("id") DEFERRABLE INITIALLY DEFERRED, "user_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX "chat_directchat_participants_directchat_id_user_id_uniq" ON "chat_directchat_participants" ("directchat_id", "user_id");
CREATE TABLE "chat_directmessage" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "body" text NOT NULL, "created" datetime NOT NULL, "is_read" bool NOT NULL, "chat_id" bigint NOT NULL REFERENCES "chat_directchat" ("id") DEFERRABLE INITIALLY DEFERRED, "sender_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE INDEX "chat_directmessage_chat_id" ON "chat_directmessage" ("chat_id");
CREATE INDEX "chat_directmessage_sender_id" ON "chat_directmessage" ("sender_id");

BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2 * CHATS)
INSERT INTO auth_user (id, password, is_superuser, username, last_name, email, is_staff, is_active, date_joined, first_name)
SELECT i, 'pbkdf2_sha256$870000$synthetic$' || i, 0, 'user' || i, '', '', 0, 1, '2024-01-01 00:00:00', '' FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < CHATS)
INSERT INTO chat_directchat (id, created) SELECT i, '2024-01-01 00:00:00' FROM n;

INSERT INTO chat_directchat_participants (directchat_id, user_id)
SELECT id, 2 * id - 1 FROM chat_directchat UNION ALL SELECT id, 2 * id FROM chat_directchat;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < CHATS * PER_CHAT)
INSERT INTO chat_directmessage (id, body, created, is_read, chat_id, sender_id)
SELECT i,
       'message ' || ((i - 1) / CHATS + 1) || ' of chat ' || ((i - 1) % CHATS + 1) || ', an ordinary line of chat',
       strftime('%Y-%m-%d %H:%M:%f', '2024-01-02', '+' || i || ' seconds'),
       (i - 1) / CHATS + 1 <= PER_CHAT - 10,
       (i - 1) % CHATS + 1,
       2 * ((i - 1) % CHATS + 1) - ((i - 1) / CHATS + 1) % 2
  FROM n;
COMMIT;
