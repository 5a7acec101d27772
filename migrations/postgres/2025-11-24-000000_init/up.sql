-- Ids are BIGSERIAL: message ids are keyset positions and read cursors.
-- Timestamps are TIMESTAMP (without time zone) holding UTC, the same Diesel
-- type as on SQLite, so one schema.rs serves both backends.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       TIMESTAMP NOT NULL
);

-- One row per pair of users: the unique (low, high) pair is what makes
-- "find or create" race-free.
CREATE TABLE direct_chats (
    id           BIGSERIAL PRIMARY KEY,
    user_low_id  BIGINT NOT NULL REFERENCES users (id),
    user_high_id BIGINT NOT NULL REFERENCES users (id),
    created      TIMESTAMP NOT NULL,
    UNIQUE (user_low_id, user_high_id),
    CHECK (user_low_id < user_high_id)
);

-- Who is in which chat, and how far each of them has read (a message id;
-- NULL = nothing read yet).
CREATE TABLE direct_chat_participants (
    chat_id              BIGINT NOT NULL REFERENCES direct_chats (id),
    user_id              BIGINT NOT NULL REFERENCES users (id),
    last_read_message_id BIGINT,
    PRIMARY KEY (chat_id, user_id)
);

-- "Every chat of this user" is a range scan.
CREATE INDEX direct_chat_participants_user_id_chat_id
    ON direct_chat_participants (user_id, chat_id);

CREATE TABLE direct_messages (
    id        BIGSERIAL PRIMARY KEY,
    chat_id   BIGINT NOT NULL REFERENCES direct_chats (id),
    sender_id BIGINT NOT NULL REFERENCES users (id),
    body      TEXT NOT NULL,
    created   TIMESTAMP NOT NULL,
    -- Only a participant can have sent a message in a chat.
    FOREIGN KEY (chat_id, sender_id) REFERENCES direct_chat_participants (chat_id, user_id)
);

-- History pages, the last message of a chat and unread counts are all range
-- scans or seeks on this index.
CREATE INDEX direct_messages_chat_id_id ON direct_messages (chat_id, id);
