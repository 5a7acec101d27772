//! [`ChatRepository`]: direct chats and the chat list.

use chat_domain::chat::{ChatId, ChatRepository, ChatSummary, Creation, DirectChat, Seq, UserPair};
use chat_domain::user::UserId;
use chat_domain::RepositoryError;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::database::{with_conn, Backend, Database, WriteTransaction};
use crate::error::corrupt;
use crate::models::{
    chat_from_parts, cursors_from_row, now, to_utc, user_from_row, MessageParts, NewChatRow,
    NewParticipantRow, UserRow,
};
use crate::schema::{
    direct_chat_participants, direct_chat_participants as participants, direct_chats, users,
};

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

    fn chat_partners(&self, user: UserId) -> Result<Vec<UserId>, RepositoryError> {
        let (me, other) = diesel::alias!(
            direct_chat_participants as me,
            direct_chat_participants as other
        );
        let partners = with_conn!(self, |conn| me
            .inner_join(
                other.on(other
                    .field(participants::chat_id)
                    .eq(me.field(participants::chat_id))
                    .and(
                        other
                            .field(participants::user_id)
                            .ne(me.field(participants::user_id))
                    )),
            )
            .filter(me.field(participants::user_id).eq(user.get()))
            .select(other.field(participants::user_id))
            .distinct()
            .load::<i64>(conn))?;
        Ok(partners.into_iter().map(UserId::new).collect())
    }
}

/// The chat list, as ONE statement however many chats the viewer has: each
/// chat's last message (and so its head) is an index seek on
/// `direct_messages (chat_id, seq)` and its unread count a range count on
/// `(chat_id, sender_id, seq)`: the other participant's messages above the
/// viewer's read cursor (the domain's `is_unread_for`). `$1` is the viewer;
/// `SUMMARIES_ONE_CHAT` narrows it to chat `$2`.
///
/// `me` is the viewer's participant row, `other` the other participant's;
/// `low` and `high` are the chat's two users, so the other user's
/// `last_seen` is read from whichever of them is `other`, not from a third
/// join of `users` per chat.
const SUMMARIES_SELECT: &str = "
SELECT c.id                  AS chat_id,
       c.created             AS chat_created,
       low.id                AS low_id,
       low.username          AS low_username,
       high.id               AS high_id,
       high.username         AS high_username,
       me.read_up_to         AS my_read,
       me.delivered_up_to    AS my_delivered,
       other.read_up_to      AS other_read,
       other.delivered_up_to AS other_delivered,
       CASE WHEN other.user_id = low.id
            THEN low.last_seen ELSE high.last_seen END AS other_last_seen,
       m.id                  AS last_id,
       m.sender_id           AS last_sender_id,
       m.body                AS last_body,
       m.created             AS last_created,
       m.seq                 AS last_seq,
       m.client_id           AS last_client_id,
       (SELECT COUNT(*)
          FROM direct_messages unread
         WHERE unread.chat_id = c.id
           AND unread.sender_id = other.user_id
           AND unread.seq > me.read_up_to) AS unread_count
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
                ORDER BY newest.seq DESC
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
    #[diesel(sql_type = BigInt)]
    my_read: i64,
    #[diesel(sql_type = BigInt)]
    my_delivered: i64,
    #[diesel(sql_type = BigInt)]
    other_read: i64,
    #[diesel(sql_type = BigInt)]
    other_delivered: i64,
    #[diesel(sql_type = Nullable<Timestamp>)]
    other_last_seen: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_sender_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    last_body: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_created: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    last_client_id: Option<String>,
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
            self.last_seq,
        ) {
            (Some(id), Some(sender_id), Some(body), Some(created), Some(seq)) => {
                let sender = chat
                    .participants
                    .users()
                    .iter()
                    .find(|user| user.id.get() == sender_id)
                    .cloned()
                    .ok_or_else(|| {
                        corrupt(format_args!("message {id} sent by a non-participant"))
                    })?;
                let parts = MessageParts {
                    id,
                    chat_id: self.chat_id,
                    seq,
                    body,
                    created,
                    client_id: self.last_client_id,
                };
                Some(parts.into_domain(sender)?)
            }
            (None, None, None, None, None) => None,
            _ => {
                return Err(corrupt(format_args!(
                    "chat {}: partial last message",
                    chat.id
                )))
            }
        };
        let what = format_args!("chat {}", chat.id);
        let unread_count = u64::try_from(self.unread_count)
            .map_err(|_| corrupt(format_args!("chat {}: negative unread count", chat.id)))?;
        Ok(ChatSummary {
            viewer,
            head_seq: last_message.as_ref().map_or(Seq::ZERO, |m| m.seq),
            last_message,
            mine: cursors_from_row(self.my_read, self.my_delivered, what)?,
            theirs: cursors_from_row(self.other_read, self.other_delivered, what)?,
            unread_count,
            other_last_seen: self.other_last_seen.map(to_utc),
            chat,
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
