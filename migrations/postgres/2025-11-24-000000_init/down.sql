DROP TABLE direct_messages;
DROP TABLE direct_chat_participants;
DROP TABLE direct_chats;
DROP TABLE users;
