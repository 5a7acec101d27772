//! [`MessageRepository`]: storing messages, pages of history, cursors.
//!
//! Every chat numbers its messages 1, 2, 3, ... (`seq`), assigned in the
//! commit that stores them: a batch reads the head of each of its chats and
//! numbers its messages on from there, all under the chats' write lock (see
//! `append_to_chats`), so the sequence is dense and ids and `seq`s grow
//! together within a chat. A message with a `client_id` its sender already
//! used in that chat is not stored again; the stored one is returned.
//!
//! Read and delivery state is two cursors per participant, in `seq` space;
//! how they move is the domain's rule ([`Cursors::advanced`]), applied here
//! inside one transaction.

use std::collections::HashMap;

use chat_domain::chat::{
    ChatId, CursorChange, CursorKind, Cursors, DirectMessage, Gap, GapFill, Inserted, MessagePage,
    MessageRepository, NewMessage, PageAnchor, PageLimit, ReadCursors, Seq,
};
use chat_domain::user::{User, UserId};
use chat_domain::RepositoryError;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use crate::database::{with_conn, Database, WriteTransaction as _};
use crate::error::corrupt;
use crate::models::{
    cursors_from_row, now, seq_from_row, user_from_row, MessageParts, NewMessageRow,
};
use crate::schema::{direct_chat_participants as participants, direct_messages, users};
use crate::stored_time::StoredTime;

/// A message as the page and lookup queries select it.
type MessageRow = (i64, i64, String, StoredTime, i64, Option<String>);

/// The columns of [`MessageRow`], in order.
macro_rules! message_columns {
    () => {
        (
            direct_messages::id,
            direct_messages::sender_id,
            direct_messages::body,
            direct_messages::created,
            direct_messages::seq,
            direct_messages::client_id,
        )
    };
}

/// Gaps read by one statement.
const GAPS_PER_STATEMENT: usize = 500;

impl Database {
    /// Two statements for up to [`GAPS_PER_STATEMENT`] gaps: their chats'
    /// participants, then one range of the `(chat_id, seq)` index per gap,
    /// each cut to `limit` rows by its bounds (a chat's `seq`s are dense).
    fn read_gap_batch(
        &self,
        gaps: &[Gap],
        limit: PageLimit,
    ) -> Result<Vec<GapFill>, RepositoryError> {
        let width = i64::try_from(limit.get()).unwrap_or(i64::MAX);
        let ranges: Vec<(i64, i64, i64)> = gaps
            .iter()
            .filter(|gap| gap.up_to > gap.after)
            .map(|gap| {
                let (after, up_to) = (gap.after.get(), gap.up_to.get());
                (
                    gap.chat.get(),
                    after,
                    up_to.min(after.saturating_add(width)),
                )
            })
            .collect();
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let chat_ids: Vec<i64> = ranges.iter().map(|(chat, _, _)| *chat).collect();
        let (members, rows) = with_conn!(self, |conn| {
            let members = participants::table
                .inner_join(users::table.on(users::id.eq(participants::user_id)))
                .filter(participants::chat_id.eq_any(&chat_ids))
                .select((participants::chat_id, (users::id, users::username)))
                .load::<(i64, (i64, String))>(conn)?;
            let mut query = direct_messages::table
                .select((direct_messages::chat_id, message_columns!()))
                .order((direct_messages::chat_id, direct_messages::seq))
                .into_boxed();
            for &(chat, after, up_to) in &ranges {
                query = query.or_filter(
                    direct_messages::chat_id
                        .eq(chat)
                        .and(direct_messages::seq.gt(after))
                        .and(direct_messages::seq.le(up_to)),
                );
            }
            let rows = query.load::<(i64, MessageRow)>(conn)?;
            Ok((members, rows))
        })?;
        let mut users_of: HashMap<i64, Vec<User>> = HashMap::new();
        for (chat, user) in members {
            users_of.entry(chat).or_default().push(user_from_row(user)?);
        }
        let mut fills: Vec<GapFill> = Vec::new();
        for (chat, row) in rows {
            let users = users_of.get(&chat).map(Vec::as_slice).unwrap_or_default();
            let message = message_from_row(chat, row, users)?;
            match fills.last_mut() {
                Some(fill) if fill.chat.get() == chat => fill.messages.push(message),
                _ => {
                    let participants = match users {
                        [a, b] => [a.id, b.id],
                        _ => {
                            return Err(corrupt(format_args!(
                                "chat {chat} has {} participants",
                                users.len()
                            )))
                        }
                    };
                    fills.push(GapFill {
                        chat: ChatId::new(chat),
                        participants,
                        messages: vec![message],
                    });
                }
            }
        }
        Ok(fills)
    }
}

impl MessageRepository for Database {
    fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<Inserted>, RepositoryError> {
        self.append(messages, None)?
            .into_iter()
            .map(|outcome| {
                outcome.ok_or_else(|| RepositoryError::unexpected("a chat waited for was skipped"))
            })
            .collect()
    }

    fn insert_messages_skipping_busy(
        &self,
        messages: &[NewMessage],
        wait_for: &[ChatId],
    ) -> Result<Vec<Option<Inserted>>, RepositoryError> {
        let mut wait_for: Vec<i64> = wait_for.iter().map(|c| c.get()).collect();
        wait_for.sort_unstable();
        wait_for.dedup();
        self.append(messages, Some(&wait_for))
    }

    fn heads(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, Seq)>, RepositoryError> {
        // One seek per chat, not the `max(seq)` of a group, which read
        // every message of every chat named (the cluster's resync names all
        // it follows, every few seconds).
        let ids: Vec<i64> = chats.iter().map(|c| c.get()).collect();
        let rows = with_conn!(self, |conn| conn.chat_heads(&ids))?;
        rows.into_iter()
            .filter_map(|row| row.head.map(|head| (row.chat_id, head)))
            .map(|(chat, head)| Ok((ChatId::new(chat), seq_from_row(head, "a chat head")?)))
            .collect()
    }

    fn messages_page(
        &self,
        chat: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
    ) -> Result<MessagePage, RepositoryError> {
        let limit_rows = i64::try_from(limit.get()).unwrap_or(i64::MAX);
        // Three small statements rather than joins: the two participants
        // (names and read cursors), the page itself, a keyset range on the
        // (chat_id, seq) index that touches no other table, and the chat's
        // head (a seek on that index). Each statement sees what committed
        // before it, so the head is read last: it is then at least every
        // seq on the page.
        let (members, head, mut rows) = with_conn!(self, |conn| {
            let members = participants::table
                .inner_join(users::table.on(users::id.eq(participants::user_id)))
                .filter(participants::chat_id.eq(chat.get()))
                .select(((users::id, users::username), participants::read_up_to))
                .load::<((i64, String), i64)>(conn)?;
            let in_chat = direct_messages::table.filter(direct_messages::chat_id.eq(chat.get()));
            let rows = match anchor {
                PageAnchor::Newest => in_chat
                    .order(direct_messages::seq.desc())
                    .limit(limit_rows)
                    .select(message_columns!())
                    .load::<MessageRow>(conn)?,
                PageAnchor::Before(before) => in_chat
                    .filter(direct_messages::seq.lt(before.get()))
                    .order(direct_messages::seq.desc())
                    .limit(limit_rows)
                    .select(message_columns!())
                    .load::<MessageRow>(conn)?,
                PageAnchor::After(after) => in_chat
                    .filter(direct_messages::seq.gt(after.get()))
                    .order(direct_messages::seq.asc())
                    .limit(limit_rows)
                    .select(message_columns!())
                    .load::<MessageRow>(conn)?,
            };
            let head = head_of!(conn, chat.get())?;
            Ok((members, head, rows))
        })?;
        if !matches!(anchor, PageAnchor::After(_)) {
            // Read newest first; pages are oldest first.
            rows.reverse();
        }
        let head_seq = seq_from_row(head, format_args!("chat {chat}"))?;
        let members = members
            .into_iter()
            .map(|(user, read_up_to)| {
                let user = user_from_row(user)?;
                let read = seq_from_row(read_up_to, format_args!("chat {chat} cursor"))?;
                Ok((user, read))
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        let read_cursors = match members.as_slice() {
            [(a, a_read), (b, b_read)] => ReadCursors::new((a.id, *a_read), (b.id, *b_read)),
            _ => {
                return Err(corrupt(format_args!(
                    "chat {chat} has {} participants",
                    members.len()
                )))
            }
        };
        let users: Vec<User> = members.into_iter().map(|(user, _)| user).collect();
        let messages = rows
            .into_iter()
            .map(|row| message_from_row(chat.get(), row, &users))
            .collect::<Result<Vec<_>, _>>()?;
        let (has_more_before, has_more_after) = surroundings(anchor, &messages, head_seq);
        Ok(MessagePage {
            messages,
            has_more_before,
            has_more_after,
            head_seq,
            read_cursors,
        })
    }

    fn read_gaps(&self, gaps: &[Gap], limit: PageLimit) -> Result<Vec<GapFill>, RepositoryError> {
        let mut fills = Vec::new();
        // Three bound values a gap: SQLite allows 32,766.
        for batch in gaps.chunks(GAPS_PER_STATEMENT) {
            fills.extend(self.read_gap_batch(batch, limit)?);
        }
        Ok(fills)
    }

    fn move_cursor(
        &self,
        chat: ChatId,
        user: UserId,
        kind: CursorKind,
        requested: Seq,
    ) -> Result<CursorChange, RepositoryError> {
        // One transaction holding the participant's row from the read to
        // the write, so that concurrent moves apply one after the other and
        // none leaves a smaller value behind. The head is read after the
        // lock: a cursor stored by a move that held it before was clamped
        // to a head no higher than this one, so the cursor never passes
        // the head reported with it (on PostgreSQL, a head read first could
        // be older than the cursor the lock then hands over).
        let (head, before, unread) = with_conn!(self, |conn| conn.write_transaction(|conn| {
            let before = conn.lock_cursors(chat.get(), user.get())?;
            let head = head_of!(conn, chat.get())?;
            let Some((read_before, delivered_before)) = before else {
                return Ok((head, None, 0));
            };
            // Stored cursors are never negative (checked again below).
            let stored = |raw| Seq::new(raw).unwrap_or(Seq::ZERO);
            let after = Cursors {
                read_up_to: stored(read_before),
                delivered_up_to: stored(delivered_before),
            }
            .advanced(kind, requested, stored(head));
            if after.read_up_to.get() != read_before
                || after.delivered_up_to.get() != delivered_before
            {
                diesel::update(
                    participants::table
                        .filter(participants::chat_id.eq(chat.get()))
                        .filter(participants::user_id.eq(user.get())),
                )
                .set((
                    participants::read_up_to.eq(after.read_up_to.get()),
                    participants::delivered_up_to.eq(after.delivered_up_to.get()),
                ))
                .execute(conn)?;
            }
            // The caller's unread count: the other participant's messages
            // above the read cursor (the domain's `is_unread_for`), up to
            // the head reported with it (later statements may see later
            // messages on PostgreSQL).
            let unread = direct_messages::table
                .filter(direct_messages::chat_id.eq(chat.get()))
                .filter(direct_messages::sender_id.ne(user.get()))
                .filter(direct_messages::seq.gt(after.read_up_to.get()))
                .filter(direct_messages::seq.le(head))
                .count()
                .get_result::<i64>(conn)?;
            Ok((head, Some((read_before, delivered_before)), unread))
        }))?;
        let Some((read_before, delivered_before)) = before else {
            return Err(RepositoryError::unexpected(format!(
                "user {user} is not a participant of chat {chat}"
            )));
        };
        let what = format_args!("chat {chat} cursor of user {user}");
        let before = cursors_from_row(read_before, delivered_before, what)?;
        let head_seq = seq_from_row(head, what)?;
        Ok(CursorChange {
            before,
            after: before.advanced(kind, requested, head_seq),
            head_seq,
            unread_count: u64::try_from(unread).map_err(|_| corrupt(what))?,
        })
    }
}

impl Database {
    /// Stores `all` in one transaction, or, with `skip_busy_except`, those
    /// of the chats no other transaction is appending to (and of the chats
    /// listed, waited for); `None` for each message left out.
    fn append(
        &self,
        all: &[NewMessage],
        skip_busy_except: Option<&[i64]>,
    ) -> Result<Vec<Option<Inserted>>, RepositoryError> {
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let mut chats: Vec<i64> = all.iter().map(|m| m.chat_id.get()).collect();
        chats.sort_unstable();
        chats.dedup();

        // A constant number of statements whatever the batch: the chats'
        // locks, their heads, the retry keys it reuses (if it has any; on
        // SQLite only if the insert says some are), one multi-row INSERT,
        // one commit (one fsync) for all of it.
        let (included, messages, existing, plan, ids, created) = with_conn!(self, |conn| conn
            .append_to_chats(&chats, skip_busy_except, |conn, locked| {
                // The messages of the chats this transaction holds, as
                // indexes into `all`.
                let included: Vec<usize> = (0..all.len())
                    .filter(|&i| locked.binary_search(&all[i].chat_id.get()).is_ok())
                    .collect();
                let messages = subset(all, &included);
                let keys: Vec<(i64, &str, i64)> = messages
                    .iter()
                    .filter_map(|m| {
                        let client_id = m.client_id.as_ref()?;
                        Some((m.chat_id.get(), client_id.as_ref(), m.sender.id.get()))
                    })
                    .collect();
                let heads = if locked.is_empty() {
                    HashMap::new()
                } else {
                    conn.chat_heads(locked)?
                        .into_iter()
                        .map(|row| (row.chat_id, row.head.unwrap_or(0)))
                        .collect::<HashMap<i64, i64>>()
                };
                // Numbers the new messages given what the keys name, and
                // inserts them.
                let plan_and_insert = |conn: &mut _, known: &[(i64, MessageRow)]| {
                    let plan = Plan::new(&messages, &heads, known);
                    // The time is taken under the lock, so times never run
                    // backwards against ids.
                    let created = now();
                    let rows: Vec<NewMessageRow> = plan
                        .new_rows(&messages)
                        .map(|(message, seq)| NewMessageRow {
                            chat_id: message.chat_id.get(),
                            sender_id: message.sender.id.get(),
                            body: message.body.as_ref(),
                            created,
                            seq,
                            client_id: message.client_id.as_ref().map(AsRef::as_ref),
                        })
                        .collect();
                    let ids = if rows.is_empty() {
                        Vec::new()
                    } else {
                        InsertRows::insert_rows(conn, &rows)?
                    };
                    Ok((plan, ids, created))
                };
                if keys.is_empty() || !conn.inserts_before_looking_up() {
                    let existing = if keys.is_empty() {
                        Vec::new()
                    } else {
                        conn.stored_with_keys(&keys)?
                    };
                    let (plan, ids, created) = plan_and_insert(conn, &existing)?;
                    return Ok((included, messages, existing, plan, ids, created));
                }
                match plan_and_insert(conn, &[]) {
                    Ok((plan, ids, created)) => {
                        Ok((included, messages, Vec::new(), plan, ids, created))
                    }
                    // A key of the batch was stored before: the statement is
                    // undone (the transaction goes on), so look the keys up
                    // and plan again.
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        let existing = conn.stored_with_keys(&keys)?;
                        let (plan, ids, created) = plan_and_insert(conn, &existing)?;
                        Ok((included, messages, existing, plan, ids, created))
                    }
                    Err(error) => Err(error),
                }
            }))?;
        let outcomes = plan.outcomes(&messages, ids, created, existing)?;
        let mut spread: Vec<Option<Inserted>> = (0..all.len()).map(|_| None).collect();
        for (index, outcome) in included.into_iter().zip(outcomes) {
            spread[index] = Some(outcome);
        }
        Ok(spread)
    }
}

/// The messages of `all` at `included` (all of them, without a copy, when
/// nothing was left out).
fn subset<'m>(all: &'m [NewMessage], included: &[usize]) -> std::borrow::Cow<'m, [NewMessage]> {
    if included.len() == all.len() {
        std::borrow::Cow::Borrowed(all)
    } else {
        std::borrow::Cow::Owned(included.iter().map(|&i| all[i].clone()).collect())
    }
}

/// One multi-row INSERT of a batch's rows, and their ids in the rows'
/// order.
trait InsertRows {
    fn insert_rows(&mut self, rows: &[NewMessageRow<'_>]) -> QueryResult<Vec<i64>>;
}

#[cfg(feature = "sqlite")]
diesel::define_sql_function! {
    /// SQLite's id of the last row this connection inserted.
    fn last_insert_rowid() -> BigInt;
}

#[cfg(feature = "sqlite")]
impl InsertRows for diesel::SqliteConnection {
    /// Without `RETURNING`, which makes SQLite copy every inserted row into
    /// a temporary table and step it out again (an extra b-tree insert and
    /// a step per message in the writer). The ids are known without it:
    /// the statement runs under the database's one write lock (`BEGIN
    /// IMMEDIATE`), and `AUTOINCREMENT` gives each row one more than the
    /// highest id the table has ever had, so one statement's rows get
    /// consecutive ids, ending at `last_insert_rowid()`.
    fn insert_rows(&mut self, rows: &[NewMessageRow<'_>]) -> QueryResult<Vec<i64>> {
        let inserted = diesel::insert_into(direct_messages::table)
            .values(rows)
            .execute(self)?;
        let last = diesel::select(last_insert_rowid()).get_result::<i64>(self)?;
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if inserted != rows.len() || last < count {
            return Err(diesel::result::Error::DeserializationError(
                format!(
                    "inserting {} messages reported {inserted} rows, the last id {last}",
                    rows.len()
                )
                .into(),
            ));
        }
        Ok((last - count + 1..=last).collect())
    }
}

#[cfg(feature = "postgres")]
impl InsertRows for diesel::PgConnection {
    /// The ids come from a sequence that other transactions draw from too,
    /// so they are read back with `RETURNING`.
    fn insert_rows(&mut self, rows: &[NewMessageRow<'_>]) -> QueryResult<Vec<i64>> {
        diesel::insert_into(direct_messages::table)
            .values(rows)
            .returning(direct_messages::id)
            .get_results::<i64>(self)
    }
}

/// The heads of chats (their highest `seq`, `None` without messages), one
/// index seek on `(chat_id, seq)` each, in one statement: the batch's
/// numbering and the cluster's resync both read many at once.
trait ChatHeads {
    fn chat_heads(&mut self, chat_ids: &[i64]) -> QueryResult<Vec<HeadRow>>;
}

#[cfg(feature = "sqlite")]
impl ChatHeads for diesel::SqliteConnection {
    /// The ids as literals: SQLite seeks the primary key for each.
    fn chat_heads(&mut self, chat_ids: &[i64]) -> QueryResult<Vec<HeadRow>> {
        let ids: Vec<String> = chat_ids.iter().map(i64::to_string).collect();
        diesel::sql_query(format!(
            "SELECT c.id AS chat_id,
                    (SELECT m.seq FROM direct_messages m
                      WHERE m.chat_id = c.id ORDER BY m.seq DESC LIMIT 1) AS head
               FROM direct_chats c
              WHERE c.id IN ({})",
            ids.join(", ")
        ))
        .load(self)
    }
}

#[cfg(feature = "postgres")]
impl ChatHeads for diesel::PgConnection {
    /// The ids as one array parameter: the statement's text never changes,
    /// so it is prepared once per connection (a list of literals was parsed
    /// and planned anew for every batch, and filtered a scan of every
    /// chat); `direct_chats` is not read at all.
    fn chat_heads(&mut self, chat_ids: &[i64]) -> QueryResult<Vec<HeadRow>> {
        diesel::sql_query(
            "SELECT ids.id AS chat_id,
                    (SELECT m.seq FROM direct_messages m
                      WHERE m.chat_id = ids.id ORDER BY m.seq DESC LIMIT 1) AS head
               FROM unnest($1::bigint[]) AS ids(id)",
        )
        .bind::<diesel::sql_types::Array<BigInt>, _>(chat_ids)
        .load(self)
    }
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = BigInt)]
    chat_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    head: Option<i64>,
}

/// A chat's highest `seq`, 0 without messages: one index seek. A macro
/// because it runs inside `with_conn!` on each backend's connection type.
macro_rules! head_of {
    ($conn:expr, $chat:expr) => {
        direct_messages::table
            .filter(direct_messages::chat_id.eq($chat))
            .order(direct_messages::seq.desc())
            .select(direct_messages::seq)
            .limit(1)
            .get_result::<i64>($conn)
            .optional()
            .map(|head| head.unwrap_or(0))
    };
}
use head_of;

/// The messages already stored under any of `keys` (chat, client_id,
/// sender), as `(chat_id, row)`: one statement, one index seek per key on
/// `(client_id, chat_id, sender_id)`. (Filtering on `chat_id IN (..)` and
/// `client_id IN (..)` instead would seek every pair of the two lists: a
/// quarter of a million seeks for a batch of 500.)
trait FindRetryKeys {
    /// Whether to try the insert first and look the keys up only when it
    /// fails on one: on SQLite a failed statement is undone alone and the
    /// transaction goes on, so a batch without a reused key (nearly all)
    /// saves the lookup; on PostgreSQL it would abort the transaction.
    fn inserts_before_looking_up(&self) -> bool;

    fn stored_with_keys(
        &mut self,
        keys: &[(i64, &str, i64)],
    ) -> QueryResult<Vec<(i64, MessageRow)>>;
}

const STORED_WITH_KEYS: &str =
    "SELECT m.chat_id, m.id, m.sender_id, m.body, m.created, m.seq, m.client_id
  FROM direct_messages m";

#[derive(QueryableByName)]
struct KeyedRow {
    #[diesel(sql_type = BigInt)]
    chat_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    sender_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    body: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    created: StoredTime,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<diesel::sql_types::Text>)]
    client_id: Option<String>,
}

impl KeyedRow {
    fn into_row(self) -> (i64, MessageRow) {
        (
            self.chat_id,
            (
                self.id,
                self.sender_id,
                self.body,
                self.created,
                self.seq,
                self.client_id,
            ),
        )
    }
}

#[cfg(feature = "sqlite")]
impl FindRetryKeys for diesel::SqliteConnection {
    fn inserts_before_looking_up(&self) -> bool {
        true
    }

    /// The keys as a `VALUES` list, one triple of parameters per key,
    /// joined first (`CROSS JOIN` fixes the order) so that each is one seek;
    /// a row-value `IN (VALUES ...)` scans the whole index instead.
    /// `client_id IS NOT NULL` lets the planner use the partial index.
    fn stored_with_keys(
        &mut self,
        keys: &[(i64, &str, i64)],
    ) -> QueryResult<Vec<(i64, MessageRow)>> {
        let mut query =
            diesel::sql_query(sqlite_keys_sql(keys.len())).into_boxed::<diesel::sqlite::Sqlite>();
        for (chat, client_id, sender) in keys {
            query = query
                .bind::<BigInt, _>(*chat)
                .bind::<diesel::sql_types::Text, _>(*client_id)
                .bind::<BigInt, _>(*sender);
        }
        Ok(query
            .load::<KeyedRow>(self)?
            .into_iter()
            .map(KeyedRow::into_row)
            .collect())
    }
}

/// [`STORED_WITH_KEYS`] for `count` keys on SQLite.
#[cfg(feature = "sqlite")]
fn sqlite_keys_sql(count: usize) -> String {
    let values = vec!["(?, ?, ?)"; count].join(", ");
    STORED_WITH_KEYS.replacen(
        "FROM direct_messages m",
        &format!(
            "FROM (VALUES {values}) AS k
 CROSS JOIN direct_messages m
    ON m.chat_id = k.column1 AND m.client_id = k.column2 AND m.sender_id = k.column3
 WHERE m.client_id IS NOT NULL"
        ),
        1,
    )
}

#[cfg(feature = "postgres")]
impl FindRetryKeys for diesel::PgConnection {
    fn inserts_before_looking_up(&self) -> bool {
        false
    }

    /// The keys as three arrays, joined as a table: the same statement
    /// text whatever the batch.
    fn stored_with_keys(
        &mut self,
        keys: &[(i64, &str, i64)],
    ) -> QueryResult<Vec<(i64, MessageRow)>> {
        use diesel::sql_types::{Array, Text};
        let sql = format!(
            "{STORED_WITH_KEYS}
  JOIN unnest($1, $2, $3) AS k(chat_id, client_id, sender_id)
    ON m.chat_id = k.chat_id AND m.client_id = k.client_id AND m.sender_id = k.sender_id
 WHERE m.client_id IS NOT NULL"
        );
        let chats: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let client_ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let senders: Vec<i64> = keys.iter().map(|k| k.2).collect();
        Ok(diesel::sql_query(sql)
            .bind::<Array<BigInt>, _>(chats)
            .bind::<Array<Text>, _>(client_ids)
            .bind::<Array<BigInt>, _>(senders)
            .load::<KeyedRow>(self)?
            .into_iter()
            .map(KeyedRow::into_row)
            .collect())
    }
}

/// The participant's `(read_up_to, delivered_up_to)`, locked until the
/// transaction ends on PostgreSQL (SQLite's write transaction already
/// excludes every other writer); `None` if they are not in the chat.
trait LockCursors {
    fn lock_cursors(&mut self, chat: i64, user: i64) -> QueryResult<Option<(i64, i64)>>;
}

#[cfg(feature = "sqlite")]
impl LockCursors for diesel::SqliteConnection {
    fn lock_cursors(&mut self, chat: i64, user: i64) -> QueryResult<Option<(i64, i64)>> {
        participants::table
            .filter(participants::chat_id.eq(chat))
            .filter(participants::user_id.eq(user))
            .select((participants::read_up_to, participants::delivered_up_to))
            .first(self)
            .optional()
    }
}

#[cfg(feature = "postgres")]
impl LockCursors for diesel::PgConnection {
    fn lock_cursors(&mut self, chat: i64, user: i64) -> QueryResult<Option<(i64, i64)>> {
        participants::table
            .filter(participants::chat_id.eq(chat))
            .filter(participants::user_id.eq(user))
            .select((participants::read_up_to, participants::delivered_up_to))
            .for_update()
            .first(self)
            .optional()
    }
}

fn message_from_row(
    chat: i64,
    (id, sender_id, body, created, seq, client_id): MessageRow,
    users: &[User],
) -> Result<DirectMessage, RepositoryError> {
    let sender = users
        .iter()
        .find(|user| user.id.get() == sender_id)
        .cloned()
        .ok_or_else(|| {
            corrupt(format_args!(
                "message {id}: its sender is not in chat {chat}"
            ))
        })?;
    MessageParts {
        id,
        chat_id: chat,
        seq,
        body,
        created: created.0,
        client_id,
    }
    .into_domain(sender)
}

/// Whether messages exist before and after a page. A chat's `seq`s are
/// dense (1 to `head`, every one present), so this is arithmetic on the
/// page's range `lo..=hi`, which for an empty page is where it would
/// have been.
fn surroundings(anchor: PageAnchor, messages: &[DirectMessage], head: Seq) -> (bool, bool) {
    let head = head.get();
    let first = messages.first().map(|m| m.seq.get());
    let last = messages.last().map(|m| m.seq.get());
    let (lo, hi) = match anchor {
        // The head is read after the page, so newer messages may follow it.
        PageAnchor::Newest => (
            first.unwrap_or(head.saturating_add(1)),
            last.unwrap_or(head),
        ),
        PageAnchor::Before(before) => (
            first.unwrap_or(before.get()),
            last.unwrap_or(before.get().saturating_sub(1)),
        ),
        PageAnchor::After(after) => (
            first.unwrap_or(after.get().saturating_add(1)),
            last.unwrap_or(after.get()),
        ),
    };
    // Messages 1..lo exist if lo > 1 and the chat has any; hi+1..=head
    // exist if hi < head (`hi` is -1 for an empty page before seq 0).
    let before = lo.saturating_sub(1).min(head) >= 1;
    let after = hi.max(0) < head;
    (before, after)
}

/// Which messages of a batch are new, with the `seq` each gets, and which
/// reuse a retry key (stored before, or earlier in the same batch).
struct Plan {
    /// Per message of the batch, in order.
    steps: Vec<Step>,
}

enum Step {
    New {
        seq: i64,
    },
    /// The same key as a message stored before: index into `existing`.
    Stored(usize),
    /// The same key as an earlier message of this batch: its index.
    EarlierInBatch(usize),
}

impl Plan {
    fn new(
        messages: &[NewMessage],
        heads: &HashMap<i64, i64>,
        existing: &[(i64, MessageRow)],
    ) -> Self {
        let mut next_seq: HashMap<i64, i64> = HashMap::new();
        let mut keys: HashMap<(i64, i64, &str), usize> = HashMap::new();
        let steps = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let (chat, sender) = (message.chat_id.get(), message.sender.id.get());
                if let Some(client_id) = message.client_id.as_ref().map(AsRef::as_ref) {
                    let stored = existing.iter().position(|(c, row)| {
                        *c == chat && row.1 == sender && row.5.as_deref() == Some(client_id)
                    });
                    if let Some(stored) = stored {
                        return Step::Stored(stored);
                    }
                    if let Some(&earlier) = keys.get(&(chat, sender, client_id)) {
                        return Step::EarlierInBatch(earlier);
                    }
                    keys.insert((chat, sender, client_id), index);
                }
                let seq = next_seq
                    .entry(chat)
                    .or_insert_with(|| heads.get(&chat).copied().unwrap_or(0));
                *seq += 1;
                Step::New { seq: *seq }
            })
            .collect();
        Self { steps }
    }

    /// The messages to insert, in batch order, each with its `seq`.
    fn new_rows<'m>(
        &'m self,
        messages: &'m [NewMessage],
    ) -> impl Iterator<Item = (&'m NewMessage, i64)> {
        messages
            .iter()
            .zip(&self.steps)
            .filter_map(|(message, step)| match step {
                Step::New { seq } => Some((message, *seq)),
                _ => None,
            })
    }

    fn outcomes(
        self,
        messages: &[NewMessage],
        mut ids: Vec<i64>,
        created: NaiveDateTime,
        existing: Vec<(i64, MessageRow)>,
    ) -> Result<Vec<Inserted>, RepositoryError> {
        let new_count = self
            .steps
            .iter()
            .filter(|step| matches!(step, Step::New { .. }))
            .count();
        if ids.len() != new_count {
            return Err(RepositoryError::unexpected(format!(
                "stored {} of {new_count} messages",
                ids.len()
            )));
        }
        // Rows take ids in the order of the VALUES list; RETURNING may list
        // them in any order, so sort before pairing them up.
        ids.sort_unstable();
        let mut ids = ids.into_iter();
        let mut outcomes: Vec<Inserted> = Vec::with_capacity(messages.len());
        for (message, step) in messages.iter().zip(self.steps) {
            let outcome = match step {
                Step::New { seq } => {
                    let id = ids
                        .next()
                        .ok_or_else(|| RepositoryError::unexpected("fewer ids than rows"))?;
                    let parts = MessageParts {
                        id,
                        chat_id: message.chat_id.get(),
                        seq,
                        body: message.body.as_ref().to_owned(),
                        created,
                        client_id: message.client_id.as_ref().map(ToString::to_string),
                    };
                    Inserted::New(parts.into_domain(message.sender.clone())?)
                }
                Step::Stored(index) => {
                    let (chat, row) = existing[index].clone();
                    let sender = std::slice::from_ref(&message.sender);
                    Inserted::Existing(message_from_row(chat, row, sender)?)
                }
                Step::EarlierInBatch(index) => match &outcomes[index] {
                    Inserted::New(first) | Inserted::Existing(first) => {
                        Inserted::Existing(first.clone())
                    }
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::chat::MessageId;
    use chat_domain::user::Username;

    fn page_of(seqs: std::ops::RangeInclusive<i64>) -> Vec<DirectMessage> {
        seqs.map(|seq| DirectMessage {
            id: MessageId::new(seq),
            chat_id: ChatId::new(1),
            seq: Seq::new(seq).unwrap(),
            sender: User {
                id: UserId::new(1),
                username: Username::parse("a").unwrap(),
            },
            body: String::new(),
            created: chrono::Utc::now(),
            client_id: None,
        })
        .collect()
    }

    fn seq(n: i64) -> Seq {
        Seq::new(n).unwrap()
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_retry_key_lookup_seeks_each_key_instead_of_scanning() {
        #[derive(diesel::QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        use diesel::Connection as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let url = format!("sqlite://{}", path.display());
        // Migrated, then read on a connection of its own.
        drop(Database::connect(&url, &crate::DatabaseOptions::default()).unwrap());
        let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", sqlite_keys_sql(3));
        let mut query = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
        for n in 0..3_i64 {
            query = query
                .bind::<BigInt, _>(n)
                .bind::<diesel::sql_types::Text, _>("c")
                .bind::<BigInt, _>(n);
        }
        let plan: Vec<Plan> = query.load(&mut conn).unwrap();
        let steps: Vec<&str> = plan.iter().map(|p| p.detail.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.starts_with("SEARCH m USING")
                && s.contains("client_id=? AND chat_id=? AND sender_id=?")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.starts_with("SCAN m")), "{steps:?}");
    }

    #[test]
    fn what_lies_around_a_page_follows_from_dense_seqs() {
        let head = seq(10);
        assert_eq!(
            surroundings(PageAnchor::Newest, &page_of(6..=10), head),
            (true, false)
        );
        assert_eq!(
            surroundings(PageAnchor::Newest, &page_of(1..=10), head),
            (false, false)
        );
        // Messages that committed between the page and the head.
        assert_eq!(
            surroundings(PageAnchor::Newest, &page_of(4..=8), head),
            (true, true)
        );
        assert_eq!(
            surroundings(PageAnchor::After(seq(0)), &page_of(1..=5), head),
            (false, true)
        );
        assert_eq!(
            surroundings(PageAnchor::After(seq(5)), &page_of(6..=10), head),
            (true, false)
        );
        assert_eq!(
            surroundings(PageAnchor::After(seq(10)), &[], head),
            (true, false)
        );
        assert_eq!(
            surroundings(PageAnchor::After(seq(99)), &[], head),
            (true, false)
        );
        assert_eq!(
            surroundings(PageAnchor::Before(seq(6)), &page_of(1..=5), head),
            (false, true)
        );
        assert_eq!(
            surroundings(PageAnchor::Before(seq(1)), &[], head),
            (false, true)
        );
        assert_eq!(
            surroundings(PageAnchor::Before(seq(0)), &[], head),
            (false, true)
        );
        assert_eq!(
            surroundings(PageAnchor::Before(seq(50)), &page_of(6..=10), head),
            (true, false)
        );
        // An empty chat has nothing anywhere.
        for anchor in [
            PageAnchor::Newest,
            PageAnchor::Before(seq(0)),
            PageAnchor::Before(seq(5)),
            PageAnchor::After(seq(0)),
            PageAnchor::After(seq(5)),
        ] {
            assert_eq!(surroundings(anchor, &[], Seq::ZERO), (false, false));
        }
    }
}
