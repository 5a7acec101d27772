//! [`MessageRepository`]: storing messages, history pages, read cursors.
//!
//! Read state is one cursor per participant (`last_read_message_id`): a
//! message is read iff its id is at or below the cursor of the participant
//! who did not send it. Marking read moves one cursor, whatever the number of
//! messages. Ids only grow, so a message stored after the cursor was set is
//! unread.

use chat_domain::chat::{ChatId, DirectMessage, MessageId, MessageRepository, NewMessage};
use chat_domain::user::UserId;
use chat_domain::RepositoryError;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::database::{with_conn, Database, WriteTransaction as _};
use crate::error::corrupt;
use crate::models::{now, user_from_row, MessageParts, NewMessageRow};
use crate::schema::{direct_chat_participants as participants, direct_messages, users};

impl MessageRepository for Database {
    fn insert_messages(
        &self,
        messages: &[NewMessage],
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut chats: Vec<i64> = messages.iter().map(|m| m.chat_id.get()).collect();
        chats.sort_unstable();
        chats.dedup();
        // One statement, one commit (and so one fsync) for the whole batch,
        // appended so that ids become visible in order within each chat
        // (see `append_to_chats`); the time is taken inside, so times never
        // run backwards against ids.
        let (mut ids, created) = with_conn!(self, |conn| conn.append_to_chats(&chats, |conn| {
            let created = now();
            let rows: Vec<NewMessageRow> = messages
                .iter()
                .map(|m| NewMessageRow {
                    chat_id: m.chat_id.get(),
                    sender_id: m.sender.id.get(),
                    body: m.body.as_ref(),
                    created,
                })
                .collect();
            // One multi-row INSERT ... RETURNING id.
            let ids = diesel::insert_into(direct_messages::table)
                .values(&rows)
                .returning(direct_messages::id)
                .get_results::<i64>(conn)?;
            Ok((ids, created))
        }))?;
        if ids.len() != messages.len() {
            return Err(RepositoryError::unexpected(format!(
                "stored {} of {} messages",
                ids.len(),
                messages.len()
            )));
        }
        // Rows take ids in the order of the VALUES list; RETURNING may list
        // them in any order, so sort before pairing them up.
        ids.sort_unstable();
        Ok(messages
            .iter()
            .zip(ids)
            .map(|(message, id)| {
                let parts = MessageParts {
                    id,
                    chat_id: message.chat_id.get(),
                    body: message.body.as_ref().to_owned(),
                    created,
                };
                // Cursors only ever point at messages that existed when
                // they were set, and ids only grow: a new message is unread.
                parts.into_domain(message.sender.clone(), None)
            })
            .collect())
    }

    fn history_page(
        &self,
        chat: ChatId,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Ids start at 1, so "after nothing" is "after 0".
        let after = after.map_or(0, MessageId::get);

        // Two small statements rather than one join: the chat's two
        // participants (names and read cursors), then the page itself, a
        // keyset range on the (chat_id, id) index that touches no other
        // table. Per message this saves two index lookups and a username
        // check, which is most of a replay's database time.
        let (members, rows) = with_conn!(self, |conn| {
            let members = participants::table
                .inner_join(users::table.on(users::id.eq(participants::user_id)))
                .filter(participants::chat_id.eq(chat.get()))
                .select((
                    (users::id, users::username),
                    participants::last_read_message_id,
                ))
                .load::<((i64, String), Option<i64>)>(conn)?;
            let rows = direct_messages::table
                .filter(direct_messages::chat_id.eq(chat.get()))
                .filter(direct_messages::id.gt(after))
                .order(direct_messages::id.asc())
                .limit(limit)
                .select((
                    direct_messages::id,
                    direct_messages::sender_id,
                    direct_messages::body,
                    direct_messages::created,
                ))
                .load::<(i64, i64, String, NaiveDateTime)>(conn)?;
            Ok((members, rows))
        })?;
        let members = members
            .into_iter()
            .map(|(user, cursor)| Ok((user_from_row(user)?, cursor)))
            .collect::<Result<Vec<_>, RepositoryError>>()?;

        rows.into_iter()
            .map(|(id, sender_id, body, created)| {
                let sender = members
                    .iter()
                    .find(|(user, _)| user.id.get() == sender_id)
                    .map(|(user, _)| user.clone())
                    .ok_or_else(|| {
                        corrupt(format_args!(
                            "message {id}: its sender is not in chat {chat}"
                        ))
                    })?;
                // The recipient is the participant who did not send it.
                let recipient_cursor = members
                    .iter()
                    .find(|(user, _)| user.id.get() != sender_id)
                    .and_then(|(_, cursor)| *cursor);
                let parts = MessageParts {
                    id,
                    chat_id: chat.get(),
                    body,
                    created,
                };
                Ok(parts.into_domain(sender, recipient_cursor))
            })
            .collect()
    }

    fn mark_read(
        &self,
        chat: ChatId,
        reader: UserId,
        up_to: MessageId,
    ) -> Result<(), RepositoryError> {
        let cursor = participants::last_read_message_id;
        with_conn!(self, |conn| {
            // The cursor lands on the newest message at or before `up_to`, never
            // beyond the chat's messages: an oversized `up_to` must not mark
            // messages that do not exist yet.
            let newest = direct_messages::table
                .filter(direct_messages::chat_id.eq(chat.get()))
                .filter(direct_messages::id.le(up_to.get()))
                .select(diesel::dsl::max(direct_messages::id))
                .first::<Option<i64>>(conn)?;
            let Some(newest) = newest else {
                return Ok(0);
            };
            // Forward only: the condition is part of the UPDATE, so concurrent
            // calls cannot leave the smaller value behind.
            diesel::update(
                participants::table
                    .filter(participants::chat_id.eq(chat.get()))
                    .filter(participants::user_id.eq(reader.get()))
                    .filter(cursor.is_null().or(cursor.lt(newest))),
            )
            .set(cursor.eq(newest))
            .execute(conn)
        })?;
        Ok(())
    }
}
