ALTER TABLE users DROP COLUMN last_seen;

CREATE INDEX direct_messages_chat_id_id ON direct_messages (chat_id, id);
CREATE INDEX direct_messages_chat_id_sender_id_id ON direct_messages (chat_id, sender_id, id);
DROP INDEX direct_messages_chat_id_sender_id_seq;

ALTER TABLE direct_chat_participants ADD COLUMN last_read_message_id BIGINT;
UPDATE direct_chat_participants
   SET last_read_message_id = (SELECT m.id
                                 FROM direct_messages m
                                WHERE m.chat_id = direct_chat_participants.chat_id
                                  AND m.seq = direct_chat_participants.read_up_to)
 WHERE read_up_to > 0;
ALTER TABLE direct_chat_participants DROP COLUMN delivered_up_to;
ALTER TABLE direct_chat_participants DROP COLUMN read_up_to;

DROP INDEX direct_messages_chat_id_client_id_sender_id;
ALTER TABLE direct_messages DROP COLUMN client_id;
DROP INDEX direct_messages_chat_id_seq;
ALTER TABLE direct_messages DROP COLUMN seq;
