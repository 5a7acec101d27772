-- The retry key's index leads with client_id instead of chat_id: the same
-- uniqueness (one message per chat, sender and client_id), but a client_id
-- that grows with time (UUIDv7, ULID, a time-prefixed counter) is then
-- appended at the index's right edge, one page for a whole batch, where
-- the chat-first order put every chat's, and every sender's, new keys on a
-- page of their own: measured, that order doubled the bytes each v2 message
-- wrote to the WAL. Lookups give all three columns, so any order seeks.
DROP INDEX direct_messages_chat_id_client_id_sender_id;
CREATE UNIQUE INDEX direct_messages_client_id_chat_id_sender_id
    ON direct_messages (client_id, chat_id, sender_id) WHERE client_id IS NOT NULL;
