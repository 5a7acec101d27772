-- Protocol v2: per-chat sequence numbers, retry keys, read and delivery
-- cursors in sequence space, and when each user was last seen.

-- Every chat numbers its messages 1, 2, 3, ... with no gaps; existing
-- messages get theirs in id order. New messages get theirs from the writer,
-- in the commit that stores them.
ALTER TABLE direct_messages ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE direct_messages
   SET seq = numbered.seq
  FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY id) AS seq
          FROM direct_messages) AS numbered
 WHERE direct_messages.id = numbered.id;
-- History pages, the last message and the head of a chat: seeks and ranges
-- on this index. Unique: a seq is never given twice.
CREATE UNIQUE INDEX direct_messages_chat_id_seq ON direct_messages (chat_id, seq);

-- A sender's retry key: one message per (chat, sender, client_id). Seed
-- messages have none and cost this index nothing. chat_id and client_id
-- lead so that one lookup finds a whole batch's keys.
ALTER TABLE direct_messages ADD COLUMN client_id TEXT;
CREATE UNIQUE INDEX direct_messages_chat_id_client_id_sender_id
    ON direct_messages (chat_id, client_id, sender_id) WHERE client_id IS NOT NULL;

-- Cursors are sequence numbers now (0 = nothing yet). The old read cursor
-- (a message id) becomes the seq of the newest message at or before it;
-- reading implies delivery.
ALTER TABLE direct_chat_participants ADD COLUMN read_up_to BIGINT NOT NULL DEFAULT 0;
ALTER TABLE direct_chat_participants ADD COLUMN delivered_up_to BIGINT NOT NULL DEFAULT 0;
UPDATE direct_chat_participants
   SET read_up_to = COALESCE((SELECT m.seq
                                FROM direct_messages m
                               WHERE m.chat_id = direct_chat_participants.chat_id
                                 AND m.id <= direct_chat_participants.last_read_message_id
                               ORDER BY m.id DESC
                               LIMIT 1), 0)
 WHERE last_read_message_id IS NOT NULL;
UPDATE direct_chat_participants SET delivered_up_to = read_up_to;
ALTER TABLE direct_chat_participants DROP COLUMN last_read_message_id;

-- Unread counts: the other participant's messages after the viewer's read
-- cursor, counted from this index alone. The id-ordered indexes are no
-- longer read by anything.
CREATE INDEX direct_messages_chat_id_sender_id_seq ON direct_messages (chat_id, sender_id, seq);
DROP INDEX direct_messages_chat_id_sender_id_id;
DROP INDEX direct_messages_chat_id_id;

-- Stored when the user goes offline; NULL: never seen since v2.
ALTER TABLE users ADD COLUMN last_seen TIMESTAMP;
