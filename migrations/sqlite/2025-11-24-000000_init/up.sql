-- Ids are INTEGER PRIMARY KEY AUTOINCREMENT (a 64-bit rowid) so that an id is
-- never reused: message ids are keyset positions and read cursors.
-- Timestamps are UTC text written by Diesel as `YYYY-MM-DD HH:MM:SS[.ffffff]`;
-- that format sorts correctly as text.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       TIMESTAMP NOT NULL
);

-- One row per pair of users: the unique (low, high) pair is what makes
-- "find or create" race-free.
CREATE TABLE direct_chats (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_low_id  INTEGER NOT NULL REFERENCES users (id),
    user_high_id INTEGER NOT NULL REFERENCES users (id),
    created      TIMESTAMP NOT NULL,
    UNIQUE (user_low_id, user_high_id),
    CHECK (user_low_id < user_high_id)
);

-- Who is in which chat, and how far each of them has read (a message id;
-- NULL = nothing read yet).
CREATE TABLE direct_chat_participants (
    chat_id              INTEGER NOT NULL REFERENCES direct_chats (id),
    user_id              INTEGER NOT NULL REFERENCES users (id),
    last_read_message_id INTEGER,
    PRIMARY KEY (chat_id, user_id)
);

-- "Every chat of this user" is a range scan.
CREATE INDEX direct_chat_participants_user_id_chat_id
    ON direct_chat_participants (user_id, chat_id);

CREATE TABLE direct_messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    chat_id   INTEGER NOT NULL REFERENCES direct_chats (id),
    sender_id INTEGER NOT NULL REFERENCES users (id),
    body      TEXT NOT NULL,
    created   TIMESTAMP NOT NULL,
    -- Only a participant can have sent a message in a chat.
    FOREIGN KEY (chat_id, sender_id) REFERENCES direct_chat_participants (chat_id, user_id)
);

-- History pages, the last message of a chat and unread counts are all range
-- scans or seeks on this index.
CREATE INDEX direct_messages_chat_id_id ON direct_messages (chat_id, id);
