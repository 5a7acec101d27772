//! The tables, written by hand to match both migration directories.
//!
//! Ids are `BigInt` on both backends: PostgreSQL stores BIGINT, SQLite's
//! INTEGER is already 64 bits. Timestamps are `Timestamp` (a naive UTC time)
//! on both, so this one file serves either backend.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        created -> Timestamp,
        last_seen -> Nullable<Timestamp>,
        token_generation -> BigInt,
        username_key -> Nullable<Text>,
    }
}

diesel::table! {
    direct_chats (id) {
        id -> BigInt,
        user_low_id -> BigInt,
        user_high_id -> BigInt,
        created -> Timestamp,
    }
}

diesel::table! {
    direct_chat_participants (chat_id, user_id) {
        chat_id -> BigInt,
        user_id -> BigInt,
        read_up_to -> BigInt,
        delivered_up_to -> BigInt,
    }
}

diesel::table! {
    direct_messages (id) {
        id -> BigInt,
        chat_id -> BigInt,
        sender_id -> BigInt,
        body -> Text,
        created -> Timestamp,
        seq -> BigInt,
        client_id -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    direct_chats,
    direct_chat_participants,
    direct_messages,
);
