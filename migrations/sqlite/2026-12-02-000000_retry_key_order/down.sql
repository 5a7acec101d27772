DROP INDEX direct_messages_client_id_chat_id_sender_id;
CREATE UNIQUE INDEX direct_messages_chat_id_client_id_sender_id
    ON direct_messages (chat_id, client_id, sender_id) WHERE client_id IS NOT NULL;
