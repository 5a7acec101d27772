//! [`ChatRepository`]: direct chats and the chat list.

use chat_domain::chat::{ChatId, ChatRepository, ChatSummary, Creation, DirectChat, UserPair};
use chat_domain::user::UserId;
use chat_domain::RepositoryError;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::database::{with_conn, Backend, Database, WriteTransaction};
use crate::error::corrupt;
use crate::models::{
    chat_from_parts, now, user_from_row, MessageParts, NewChatRow, NewParticipantRow, UserRow,
};
use crate::schema::{direct_chat_participants as participants, direct_chats, users};

impl ChatRepository for Database {
    fn find_or_create_chat(
        &self,
        pair: UserPair,
    ) -> Result<(DirectChat, Creation), RepositoryError> {
        let (low, high) = (pair.low().get(), pair.high().get());
        let new_chat = NewChatRow {
            user_low_id: low,
            user_high_id: high,
            created: now(),
        };
        // The unique (low, high) pair decides the race: of concurrent
        // inserts exactly one returns an id. PostgreSQL makes the others
        // wait for the winner's commit and then do nothing; SQLite runs the
        // write transactions one at a time. The losers then find the
        // winner's row.
        let (chat_id, creation) = with_conn!(self, |conn| conn.write_transaction(|conn| {
            let inserted = diesel::insert_into(direct_chats::table)
                .values(&new_chat)
                .on_conflict((direct_chats::user_low_id, direct_chats::user_high_id))
                .do_nothing()
                .returning(direct_chats::id)
                .get_result::<i64>(conn)
                .optional()?;
            match inserted {
                Some(id) => {
                    diesel::insert_into(participants::table)
                        .values(&[
                            NewParticipantRow {
                                chat_id: id,
                                user_id: low,
                            },
                            NewParticipantRow {
                                chat_id: id,
                                user_id: high,
                            },
                        ])
                        .execute(conn)?;
                    Ok((id, Creation::Created))
                }
                None => direct_chats::table
                    .filter(direct_chats::user_low_id.eq(low))
                    .filter(direct_chats::user_high_id.eq(high))
                    .select(direct_chats::id)
                    .first::<i64>(conn)
                    .map(|id| (id, Creation::Existing)),
            }
        }))?;

        // Committed and never deleted, so it is there.
        let chat = self.find_chat(ChatId::new(chat_id))?.ok_or_else(|| {
            RepositoryError::unexpected(format!("chat {chat_id} vanished after commit"))
        })?;
        Ok((chat, creation))
    }

    fn find_chat(&self, id: ChatId) -> Result<Option<DirectChat>, RepositoryError> {
        let (low, high) = diesel::alias!(users as low_user, users as high_user);
        let row = with_conn!(self, |conn| direct_chats::table
            .inner_join(low.on(low.field(users::id).eq(direct_chats::user_low_id)))
            .inner_join(high.on(high.field(users::id).eq(direct_chats::user_high_id)))
            .filter(direct_chats::id.eq(id.get()))
            .select((
                direct_chats::id,
                direct_chats::created,
                low.fields((users::id, users::username)),
                high.fields((users::id, users::username)),
            ))
            .first::<(i64, NaiveDateTime, UserRow, UserRow)>(conn)
            .optional())?;
        row.map(|(id, created, low, high)| {
            chat_from_parts(id, created, user_from_row(low)?, user_from_row(high)?)
        })
        .transpose()
    }

    fn chat_summaries(&self, viewer: UserId) -> Result<Vec<ChatSummary>, RepositoryError> {
        self.load_summaries(viewer, None)
    }

    fn chat_summary(
        &self,
        viewer: UserId,
        chat: ChatId,
    ) -> Result<Option<ChatSummary>, RepositoryError> {
        Ok(self.load_summaries(viewer, Some(chat))?.into_iter().next())
    }
}

/// The chat list, as ONE statement however many chats the viewer has: each
/// chat's last message is an index seek on `direct_messages (chat_id, id)`
/// and its unread count a range count on `(chat_id, sender_id, id)`: the
/// other participant's messages after the viewer's cursor. `$1` is the viewer; `SUMMARIES_ONE_CHAT` narrows it to chat `$2`.
///
/// `me` is the viewer's participant row (their read cursor), `other` the
/// other participant's (whether the viewer's own last message was read).
const SUMMARIES_SELECT: &str = "
SELECT c.id                       AS chat_id,
       c.created                  AS chat_created,
       low.id                     AS low_id,
       low.username               AS low_username,
       high.id                    AS high_id,
       high.username              AS high_username,
       me.last_read_message_id    AS my_cursor,
       other.last_read_message_id AS other_cursor,
       m.id                       AS last_id,
       m.sender_id                AS last_sender_id,
       m.body                     AS last_body,
       m.created                  AS last_created,
       (SELECT COUNT(*)
          FROM direct_messages unread
         WHERE unread.chat_id = c.id
           AND unread.id > COALESCE(me.last_read_message_id, 0)
           AND unread.sender_id = other.user_id) AS unread_count
  FROM direct_chat_participants me
  JOIN direct_chats c ON c.id = me.chat_id
  JOIN direct_chat_participants other
    ON other.chat_id = c.id AND other.user_id <> me.user_id
  JOIN users low ON low.id = c.user_low_id
  JOIN users high ON high.id = c.user_high_id
  LEFT JOIN direct_messages m
    ON m.id = (SELECT newest.id
                 FROM direct_messages newest
                WHERE newest.chat_id = c.id
                ORDER BY newest.id DESC
                LIMIT 1)
 WHERE me.user_id = $1";

const SUMMARIES_ONE_CHAT: &str = "
   AND c.id = $2";

/// Most recent activity first; the chat id breaks ties so the order is total.
const SUMMARIES_ORDER: &str = "
 ORDER BY COALESCE(m.created, c.created) DESC, c.id DESC";

fn summaries_sql(backend: Backend, one_chat: bool) -> String {
    let filter = if one_chat { SUMMARIES_ONE_CHAT } else { "" };
    let sql = format!("{SUMMARIES_SELECT}{filter}{SUMMARIES_ORDER}");
    match backend {
        Backend::Postgres => sql,
        // SQLite's numbered parameters are `?1`, PostgreSQL's `$1`; the
        // query has no other `$`.
        Backend::Sqlite => sql.replace('$', "?"),
    }
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = BigInt)]
    chat_id: i64,
    #[diesel(sql_type = Timestamp)]
    chat_created: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    low_id: i64,
    #[diesel(sql_type = Text)]
    low_username: String,
    #[diesel(sql_type = BigInt)]
    high_id: i64,
    #[diesel(sql_type = Text)]
    high_username: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    my_cursor: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    other_cursor: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_sender_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    last_body: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_created: Option<NaiveDateTime>,
    #[diesel(sql_type = BigInt)]
    unread_count: i64,
}

impl SummaryRow {
    fn into_domain(self, viewer: UserId) -> Result<ChatSummary, RepositoryError> {
        let chat = chat_from_parts(
            self.chat_id,
            self.chat_created,
            user_from_row((self.low_id, self.low_username))?,
            user_from_row((self.high_id, self.high_username))?,
        )?;
        let last_message = match (
            self.last_id,
            self.last_sender_id,
            self.last_body,
            self.last_created,
        ) {
            (Some(id), Some(sender_id), Some(body), Some(created)) => {
                let sender = chat
                    .participants
                    .users()
                    .iter()
                    .find(|user| user.id.get() == sender_id)
                    .cloned()
                    .ok_or_else(|| {
                        corrupt(format_args!("message {id} sent by a non-participant"))
                    })?;
                let recipient_cursor = if sender.id == viewer {
                    self.other_cursor
                } else {
                    self.my_cursor
                };
                let parts = MessageParts {
                    id,
                    chat_id: self.chat_id,
                    body,
                    created,
                };
                Some(parts.into_domain(sender, recipient_cursor))
            }
            (None, None, None, None) => None,
            _ => {
                return Err(corrupt(format_args!(
                    "chat {}: partial last message",
                    chat.id
                )))
            }
        };
        let unread_count = u64::try_from(self.unread_count)
            .map_err(|_| corrupt(format_args!("chat {}: negative unread count", chat.id)))?;
        Ok(ChatSummary {
            chat,
            last_message,
            unread_count,
        })
    }
}

impl Database {
    fn load_summaries(
        &self,
        viewer: UserId,
        chat: Option<ChatId>,
    ) -> Result<Vec<ChatSummary>, RepositoryError> {
        let sql = summaries_sql(self.backend(), chat.is_some());
        let rows = with_conn!(self, |conn| {
            let query = diesel::sql_query(sql.as_str()).bind::<BigInt, _>(viewer.get());
            match chat {
                None => query.load::<SummaryRow>(conn),
                Some(chat) => query.bind::<BigInt, _>(chat.get()).load::<SummaryRow>(conn),
            }
        })?;
        rows.into_iter()
            .map(|row| row.into_domain(viewer))
            .collect()
    }
}
