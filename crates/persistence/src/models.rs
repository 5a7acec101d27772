//! Rows as stored, insert forms, and their conversion to domain types.
//!
//! Kept apart from the domain types on purpose: the tables may change shape
//! (a read cursor here, a pair column there) without the domain noticing.

use chat_domain::chat::{
    ChatId, ClientId, Cursors, DirectChat, DirectMessage, MessageId, Participants, Seq,
};
use chat_domain::user::{User, UserId, Username};
use chat_domain::RepositoryError;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;

use crate::error::corrupt;
use crate::schema::{direct_chat_participants, direct_chats, direct_messages, users};

/// The current time as stored: UTC, truncated to microseconds (PostgreSQL's
/// precision), so that a value reads back exactly as it was written.
pub(crate) fn now() -> NaiveDateTime {
    Utc::now().trunc_subsecs(6).naive_utc()
}

pub(crate) fn to_utc(stored: NaiveDateTime) -> DateTime<Utc> {
    stored.and_utc()
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUserRow<'a> {
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub created: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = direct_chats)]
pub(crate) struct NewChatRow {
    pub user_low_id: i64,
    pub user_high_id: i64,
    pub created: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = direct_chat_participants)]
pub(crate) struct NewParticipantRow {
    pub chat_id: i64,
    pub user_id: i64,
}

/// `client_id` is the one optional field, and NULL is its default anyway,
/// so nothing is lost by turning off Diesel's
/// `treat_none_as_default_value`; with it on, Diesel cannot write a batch as
/// one multi-row INSERT on SQLite and runs one INSERT per row instead (a
/// third of the writer's time).
#[derive(Insertable)]
#[diesel(table_name = direct_messages)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct NewMessageRow<'a> {
    pub chat_id: i64,
    pub sender_id: i64,
    pub body: &'a str,
    pub created: NaiveDateTime,
    pub seq: i64,
    pub client_id: Option<&'a str>,
}

/// A user's public face: `(id, username)`.
pub(crate) type UserRow = (i64, String);

pub(crate) fn user_from_row((id, username): UserRow) -> Result<User, RepositoryError> {
    let username =
        Username::parse(&username).map_err(|e| corrupt(format_args!("user {id}: {e}")))?;
    Ok(User {
        id: UserId::new(id),
        username,
    })
}

/// A chat with both users, however the query that found it was shaped.
pub(crate) fn chat_from_parts(
    id: i64,
    created: NaiveDateTime,
    low: User,
    high: User,
) -> Result<DirectChat, RepositoryError> {
    let participants =
        Participants::new(low, high).map_err(|e| corrupt(format_args!("chat {id}: {e}")))?;
    Ok(DirectChat {
        id: ChatId::new(id),
        participants,
        created: to_utc(created),
    })
}

/// A stored message, before its sender is resolved to a [`User`].
pub(crate) struct MessageParts {
    pub id: i64,
    pub chat_id: i64,
    pub seq: i64,
    pub body: String,
    pub created: NaiveDateTime,
    pub client_id: Option<String>,
}

impl MessageParts {
    pub(crate) fn into_domain(self, sender: User) -> Result<DirectMessage, RepositoryError> {
        let id = self.id;
        let seq = seq_from_row(self.seq, format_args!("message {id}"))?;
        let client_id = self
            .client_id
            .map(|raw| ClientId::parse(&raw))
            .transpose()
            .map_err(|e| corrupt(format_args!("message {id}: {e}")))?;
        Ok(DirectMessage {
            id: MessageId::new(id),
            chat_id: ChatId::new(self.chat_id),
            seq,
            sender,
            body: self.body,
            created: to_utc(self.created),
            client_id,
        })
    }
}

/// A stored sequence number or cursor, which is never negative.
pub(crate) fn seq_from_row(raw: i64, what: impl std::fmt::Display) -> Result<Seq, RepositoryError> {
    Seq::new(raw).ok_or_else(|| corrupt(format_args!("{what}: negative seq {raw}")))
}

/// A participant's two cursors as stored.
pub(crate) fn cursors_from_row(
    read_up_to: i64,
    delivered_up_to: i64,
    what: impl std::fmt::Display + Copy,
) -> Result<Cursors, RepositoryError> {
    Ok(Cursors {
        read_up_to: seq_from_row(read_up_to, what)?,
        delivered_up_to: seq_from_row(delivered_up_to, what)?,
    })
}
