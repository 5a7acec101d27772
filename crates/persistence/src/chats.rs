//! [`ChatRepository`]: direct chats and the chat list.

use chat_domain::chat::{ChatId, ChatRepository, ChatSummary, Creation, DirectChat, Seq, UserPair};
use chat_domain::user::UserId;
use chat_domain::RepositoryError;
use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text, Timestamp};

use crate::database::{with_conn, Database, WriteTransaction};
use crate::error::corrupt;
use crate::models::{
    chat_from_parts, cursors_from_row, now, to_utc, user_from_row, MessageParts, NewChatRow,
    NewParticipantRow, UserRow,
};
use crate::schema::{
    direct_chat_participants, direct_chat_participants as participants, direct_chats, users,
};
use crate::stored_time::StoredTime;

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
/// viewer's read cursor (the domain's `is_unread_for`). The viewer is bound
/// after the text; [`Summaries::chat`] narrows it to one chat.
///
/// `me` is the viewer's participant row, `other` the other participant's;
/// `low` and `high` are the chat's two users, so the other user's
/// `last_seen` is read from whichever of them is `other`, not from a third
/// join of `users` per chat. The columns are in [`SummaryRow`]'s order.
const SUMMARIES_SELECT: &str = "
SELECT c.id, c.created, low.id, low.username, high.id, high.username,
       me.read_up_to, me.delivered_up_to, other.read_up_to, other.delivered_up_to,
       CASE WHEN other.user_id = low.id THEN low.last_seen ELSE high.last_seen END,
       m.id, m.sender_id, m.body, m.created, m.seq, m.client_id,
       (SELECT COUNT(*)
          FROM direct_messages unread
         WHERE unread.chat_id = c.id
           AND unread.sender_id = other.user_id
           AND unread.seq > me.read_up_to)
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
 WHERE me.user_id = ";

/// The summaries statement as a query of its own rather than `sql_query`:
/// its rows are decoded by position (by name, Diesel looked every column up
/// in every row: a tenth of the chat list's time), and its static query id
/// lets Diesel keep it prepared per pooled connection, so PostgreSQL plans
/// it once per connection instead of once per request.
struct Summaries<const ONE_CHAT: bool> {
    viewer: i64,
    /// Bound only when `ONE_CHAT`: a separate type per shape, since Diesel
    /// caches the prepared statement by the query's type.
    chat: i64,
}

impl<const ONE_CHAT: bool> QueryId for Summaries<ONE_CHAT> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const ONE_CHAT: bool> Query for Summaries<ONE_CHAT> {
    type SqlType = SummarySql;
}

impl<const ONE_CHAT: bool, Conn> RunQueryDsl<Conn> for Summaries<ONE_CHAT> {}

impl<const ONE_CHAT: bool, DB> QueryFragment<DB> for Summaries<ONE_CHAT>
where
    DB: Backend + HasSqlType<BigInt>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(SUMMARIES_SELECT);
        out.push_bind_param::<BigInt, _>(&self.viewer)?;
        if ONE_CHAT {
            out.push_sql(" AND c.id = ");
            out.push_bind_param::<BigInt, _>(&self.chat)?;
        }
        Ok(())
    }
}

/// [`SummaryRow`]'s column types, grouped as its parts are (Diesel's tuples
/// stop at 16 columns).
type SummarySql = (
    (BigInt, Timestamp, BigInt, Text, BigInt, Text),
    (BigInt, BigInt, BigInt, BigInt, Nullable<Timestamp>),
    (
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<Text>,
        Nullable<Timestamp>,
        Nullable<BigInt>,
        Nullable<Text>,
    ),
    BigInt,
);

/// The chat and its two users.
#[derive(Queryable)]
struct ChatColumns {
    id: i64,
    created: StoredTime,
    low_id: i64,
    low_username: String,
    high_id: i64,
    high_username: String,
}

/// Both participants' cursors and the other user's `last_seen`.
#[derive(Queryable)]
struct CursorColumns {
    my_read: i64,
    my_delivered: i64,
    other_read: i64,
    other_delivered: i64,
    other_last_seen: Option<StoredTime>,
}

/// The chat's newest message, all `NULL` while it has none.
#[derive(Queryable)]
struct LastMessageColumns {
    id: Option<i64>,
    sender_id: Option<i64>,
    body: Option<String>,
    created: Option<StoredTime>,
    seq: Option<i64>,
    client_id: Option<String>,
}

#[derive(Queryable)]
struct SummaryRow {
    chat: ChatColumns,
    cursors: CursorColumns,
    last: LastMessageColumns,
    unread_count: i64,
}

impl SummaryRow {
    fn into_domain(self, viewer: UserId) -> Result<ChatSummary, RepositoryError> {
        let Self {
            chat: columns,
            cursors,
            last,
            unread_count,
        } = self;
        let chat = chat_from_parts(
            columns.id,
            columns.created.0,
            user_from_row((columns.low_id, columns.low_username))?,
            user_from_row((columns.high_id, columns.high_username))?,
        )?;
        let last_message = match (last.id, last.sender_id, last.body, last.created, last.seq) {
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
                    chat_id: columns.id,
                    seq,
                    body,
                    created: created.0,
                    client_id: last.client_id,
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
        let unread_count = u64::try_from(unread_count)
            .map_err(|_| corrupt(format_args!("chat {}: negative unread count", chat.id)))?;
        Ok(ChatSummary {
            viewer,
            head_seq: last_message.as_ref().map_or(Seq::ZERO, |m| m.seq),
            last_message,
            mine: cursors_from_row(cursors.my_read, cursors.my_delivered, what)?,
            theirs: cursors_from_row(cursors.other_read, cursors.other_delivered, what)?,
            unread_count,
            other_last_seen: cursors.other_last_seen.map(|seen| to_utc(seen.0)),
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
        let viewer_id = viewer.get();
        let rows = with_conn!(self, |conn| match chat {
            None => Summaries::<false> {
                viewer: viewer_id,
                chat: 0,
            }
            .load::<SummaryRow>(conn),
            Some(chat) => Summaries::<true> {
                viewer: viewer_id,
                chat: chat.get(),
            }
            .load::<SummaryRow>(conn),
        })?;
        let mut summaries = rows
            .into_iter()
            .map(|row| row.into_domain(viewer))
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted here, not by an ORDER BY: SQLite's sorter copied all 18
        // columns of every row through a temporary b-tree (a tenth of the
        // statement); sorting the decoded rows is a few thousand compares.
        ChatSummary::sort_by_activity(&mut summaries);
        Ok(summaries)
    }
}
