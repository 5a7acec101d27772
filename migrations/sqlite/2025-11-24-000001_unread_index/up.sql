-- Unread counts: the other participant's messages after the viewer's read
-- cursor, counted from this index alone (no table rows visited).
CREATE INDEX direct_messages_chat_id_sender_id_id ON direct_messages (chat_id, sender_id, id);
