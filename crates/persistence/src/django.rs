//! Importing the original Django app's database (`chat-server
//! import-django`): read its tables ([`read_source`]), decide what becomes
//! of every row ([`plan`], pure), write the plan in batches that a re-run
//! completes ([`Database::write_import`]) and check the result
//! ([`Database::verify_import`]).
//!
//! The rules are in docs/migrating-from-django.md; in short: ids are kept,
//! password hashes are copied verbatim (logins verify Django's formats),
//! inactive users get an unusable (`!`) hash, each chat's messages are
//! numbered 1, 2, ... in id order, `is_read` becomes a read cursor that
//! gives the same unread counts, two chats of one pair are merged into the
//! older, and whatever the server would refuse is a [`Problem`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chat_domain::chat::{MessageBody, MessageLimit};
use chat_domain::user::Username;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::database::{with_conn, Database, Pools};
use crate::error::StoreError;
use crate::schema::{direct_chat_participants, direct_chats, direct_messages, users};

/// Rows per transaction when writing. Each batch is one multi-row INSERT:
/// 4,000 messages of 6 columns stay under SQLite's 32,766 bound parameters.
pub const BATCH_ROWS: usize = 4_000;

/// Why an import could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("invalid --from: {0}")]
    InvalidSource(String),
    #[error(
        "reading a PostgreSQL source needs the postgres build: rebuild with `--features postgres`"
    )]
    PostgresNotBuilt,
    #[error("cannot open the Django database: {0}")]
    Open(String),
    #[error("cannot read the Django database (is --app-label right?): {0}")]
    Read(#[source] diesel::result::Error),
    #[error("bad timestamp {value:?} in {table} {id}")]
    Timestamp {
        table: &'static str,
        id: i64,
        value: String,
    },
    #[error("cannot write the import: {0}")]
    Write(String),
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Pool(e) => Self::Write(e.to_string()),
            StoreError::Query(e) => Self::Write(e.to_string()),
        }
    }
}

/// The Django tables as read: `auth_user`, `<app>_directchat`,
/// `<app>_directchat_participants` and `<app>_directmessage`, each in id
/// order.
#[derive(Debug, Default, Clone)]
pub struct Source {
    pub users: Vec<SourceUser>,
    pub chats: Vec<SourceChat>,
    /// `(directchat_id, user_id)`.
    pub participants: Vec<(i64, i64)>,
    pub messages: Vec<SourceMessage>,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SourceUser {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = Text)]
    pub password: String,
    #[diesel(sql_type = Integer)]
    pub is_active: i32,
    #[diesel(sql_type = Text)]
    pub created: String,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SourceChat {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub created: String,
}

#[derive(Debug, Clone, QueryableByName)]
struct SourceParticipant {
    #[diesel(sql_type = BigInt)]
    chat_id: i64,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SourceMessage {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub chat_id: i64,
    #[diesel(sql_type = BigInt)]
    pub sender_id: i64,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Text)]
    pub created: String,
    #[diesel(sql_type = Integer)]
    pub is_read: i32,
}

/// The four queries, the same text on both backends: booleans become 0/1
/// with CASE, ids BIGINT, timestamps text (UTC: Django writes UTC on
/// SQLite, and the PostgreSQL session is set to UTC first).
fn queries(app_label: &str) -> [String; 4] {
    [
        "SELECT CAST(id AS BIGINT) AS id, username, password, \
                CASE WHEN is_active THEN 1 ELSE 0 END AS is_active, \
                CAST(date_joined AS TEXT) AS created \
           FROM auth_user ORDER BY id"
            .to_owned(),
        format!(
            "SELECT CAST(id AS BIGINT) AS id, CAST(created AS TEXT) AS created \
               FROM {app_label}_directchat ORDER BY id"
        ),
        format!(
            "SELECT CAST(directchat_id AS BIGINT) AS chat_id, CAST(user_id AS BIGINT) AS user_id \
               FROM {app_label}_directchat_participants ORDER BY directchat_id, user_id"
        ),
        format!(
            "SELECT CAST(id AS BIGINT) AS id, CAST(chat_id AS BIGINT) AS chat_id, \
                    CAST(sender_id AS BIGINT) AS sender_id, body, \
                    CAST(created AS TEXT) AS created, \
                    CASE WHEN is_read THEN 1 ELSE 0 END AS is_read \
               FROM {app_label}_directmessage ORDER BY id"
        ),
    ]
}

/// Reads the four tables with `$conn` (a concrete connection type) inside
/// the transaction already open on it.
macro_rules! read_tables {
    ($conn:expr, $app_label:expr) => {{
        let [users, chats, participants, messages] = queries($app_label);
        let participants: Vec<SourceParticipant> = diesel::sql_query(participants).load($conn)?;
        Ok::<Source, diesel::result::Error>(Source {
            users: diesel::sql_query(users).load($conn)?,
            chats: diesel::sql_query(chats).load($conn)?,
            participants: participants
                .into_iter()
                .map(|p| (p.chat_id, p.user_id))
                .collect(),
            messages: diesel::sql_query(messages).load($conn)?,
        })
    }};
}

/// Reads the Django database at `url` (`sqlite://path`, opened read-only,
/// or `postgres://...`, in one READ ONLY REPEATABLE READ transaction):
/// one consistent snapshot either way. `app_label` is the tables' prefix.
pub fn read_source(url: &str, app_label: &str) -> Result<Source, ImportError> {
    if app_label.is_empty()
        || !app_label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ImportError::InvalidSource(format!(
            "--app-label {app_label:?}: expected lower-case letters, digits and _"
        )));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        return read_sqlite(path, app_label);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return read_postgres(url, app_label);
    }
    Err(ImportError::InvalidSource(
        "expected sqlite://<path> or postgres://...".to_owned(),
    ))
}

#[cfg(feature = "sqlite")]
fn read_sqlite(path: &str, app_label: &str) -> Result<Source, ImportError> {
    use diesel::connection::SimpleConnection as _;
    if !std::path::Path::new(path).is_file() {
        return Err(ImportError::Open(format!("{path} is not a file")));
    }
    // A URI filename, so that `mode=ro` opens it read-only: nothing of the
    // Django database can change, not even its journal mode.
    let uri = format!("file:{}?mode=ro", uri_escaped(path));
    let mut conn =
        diesel::SqliteConnection::establish(&uri).map_err(|e| ImportError::Open(e.to_string()))?;
    conn.batch_execute("PRAGMA busy_timeout = 5000")
        .map_err(ImportError::Read)?;
    // One read transaction: one snapshot of all four tables.
    conn.transaction(|conn| read_tables!(conn, app_label))
        .map_err(ImportError::Read)
}

#[cfg(not(feature = "sqlite"))]
fn read_sqlite(_path: &str, _app_label: &str) -> Result<Source, ImportError> {
    Err(ImportError::InvalidSource(
        "this build has no SQLite support: rebuild with the `sqlite` feature".to_owned(),
    ))
}

/// `path` with the characters a URI filename gives meaning to escaped.
#[cfg(any(feature = "sqlite", test))]
fn uri_escaped(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3f"),
            '#' => escaped.push_str("%23"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(feature = "postgres")]
fn read_postgres(url: &str, app_label: &str) -> Result<Source, ImportError> {
    use diesel::connection::SimpleConnection as _;
    let mut conn =
        diesel::PgConnection::establish(url).map_err(|e| ImportError::Open(e.to_string()))?;
    // One snapshot of all four tables, and a promise to write nothing.
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(|conn| {
            conn.batch_execute("SET LOCAL TIME ZONE 'UTC'")?;
            read_tables!(conn, app_label)
        })
        .map_err(ImportError::Read)
}

#[cfg(not(feature = "postgres"))]
fn read_postgres(_url: &str, _app_label: &str) -> Result<Source, ImportError> {
    Err(ImportError::PostgresNotBuilt)
}

/// A Django timestamp as text (`2024-05-01 12:00:00.123456`, with `T` or a
/// zero UTC offset on some backends) as the naive UTC time we store.
fn parse_timestamp(
    table: &'static str,
    id: i64,
    value: &str,
) -> Result<NaiveDateTime, ImportError> {
    let trimmed = value
        .trim()
        .trim_end_matches('Z')
        .trim_end_matches("+00:00")
        .trim_end_matches("+00");
    let normalized = trimmed.replacen('T', " ", 1);
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| {
        ImportError::Timestamp {
            table,
            id,
            value: value.to_owned(),
        }
    })
}

/// Which table a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Chats,
    Participants,
    Messages,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Users,
        Table::Chats,
        Table::Participants,
        Table::Messages,
    ];
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Users => "user",
            Self::Chats => "chat",
            Self::Participants => "participant",
            Self::Messages => "message",
        })
    }
}

/// A row the server would refuse, and so is not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub table: Table,
    pub id: i64,
    pub reason: String,
    /// Skipped only because a row it depends on is (a skipped user's chat,
    /// a skipped chat's message).
    pub dependent: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} skipped: {}", self.table, self.id, self.reason)
    }
}

/// A chat folded into an older one of the same pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub merged: i64,
    pub into: i64,
    pub pair: (i64, i64),
}

impl fmt::Display for Merge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chat {} (users {} and {}) merged into chat {}: its messages are renumbered with chat {}'s in id order",
            self.merged, self.pair.0, self.pair.1, self.into, self.into
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUser {
    pub id: i64,
    pub username: String,
    pub username_key: String,
    pub password_hash: String,
    pub created: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChat {
    pub id: i64,
    pub user_low_id: i64,
    pub user_high_id: i64,
    pub created: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedParticipant {
    pub chat_id: i64,
    pub user_id: i64,
    /// Also the delivery cursor: reading implies delivery.
    pub read_up_to: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMessage {
    pub id: i64,
    pub chat_id: i64,
    pub sender_id: i64,
    pub body: String,
    pub created: NaiveDateTime,
    pub seq: i64,
}

/// Rows of one table: read from Django, planned to be written, skipped
/// (a [`Problem`]) and merged into another row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub read: usize,
    pub planned: usize,
    pub skipped: usize,
    pub merged: usize,
}

/// What an import will write, and what it will not and why.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub users: Vec<PlannedUser>,
    pub chats: Vec<PlannedChat>,
    pub participants: Vec<PlannedParticipant>,
    /// In chat, then seq order.
    pub messages: Vec<PlannedMessage>,
    pub problems: Vec<Problem>,
    pub merges: Vec<Merge>,
    /// Chats where some participant had an unread message older than a
    /// read one: the cursor keeps the unread count, so the unread ones
    /// become the newest ones.
    pub not_prefix_closed: Vec<i64>,
    /// The largest Django id of users, chats and messages, skipped rows
    /// included: new rows here get ids above them, so that a skipped row
    /// fixed in Django and imported again keeps its id.
    pub reserved_ids: [i64; 3],
}

impl Plan {
    pub fn counts(&self, source: &Source, table: Table) -> TableCounts {
        let skipped = self.problems.iter().filter(|p| p.table == table).count();
        match table {
            Table::Users => TableCounts {
                read: source.users.len(),
                planned: self.users.len(),
                skipped,
                merged: 0,
            },
            Table::Chats => TableCounts {
                read: source.chats.len(),
                planned: self.chats.len(),
                skipped,
                merged: self.merges.len(),
            },
            Table::Participants => {
                // A participant row is skipped with its chat, and merged
                // with it; a merged chat's two rows become its target's.
                let read = source.participants.len();
                let merged = 2 * self.merges.len();
                TableCounts {
                    read,
                    planned: self.participants.len(),
                    skipped: read.saturating_sub(self.participants.len() + merged),
                    merged,
                }
            }
            Table::Messages => TableCounts {
                read: source.messages.len(),
                planned: self.messages.len(),
                skipped,
                merged: 0,
            },
        }
    }

    /// Each planned chat's last message: `chat id -> (message id, seq)`.
    pub fn last_messages(&self) -> BTreeMap<i64, (i64, i64)> {
        let mut last = BTreeMap::new();
        for message in &self.messages {
            last.insert(message.chat_id, (message.id, message.seq));
        }
        last
    }
}

/// An unusable password in Django's sense (`make_password(None)` starts
/// with `!`): it never matches, here as there.
fn is_unusable(hash: &str) -> bool {
    hash.is_empty() || hash.starts_with('!')
}

/// Decides what becomes of every row of `source`; `limit` is the server's
/// longest message body.
pub fn plan(source: &Source, limit: MessageLimit) -> Result<Plan, ImportError> {
    let mut plan = Plan {
        reserved_ids: [
            source.users.iter().map(|u| u.id).max().unwrap_or(0),
            source.chats.iter().map(|c| c.id).max().unwrap_or(0),
            source.messages.iter().map(|m| m.id).max().unwrap_or(0),
        ],
        ..Plan::default()
    };

    // Users, in id order, so that of two names with one key the older
    // keeps it.
    let mut keys: HashMap<String, i64> = HashMap::new();
    let mut user_ids: HashSet<i64> = HashSet::new();
    let all_user_ids: HashSet<i64> = source.users.iter().map(|u| u.id).collect();
    for user in &source.users {
        let created = parse_timestamp("user", user.id, &user.created)?;
        let username = match Username::parse(&user.username) {
            Ok(username) => username,
            Err(error) => {
                plan.problems.push(Problem {
                    table: Table::Users,
                    id: user.id,
                    reason: format!("username {:?} is refused: {error}", user.username),
                    dependent: false,
                });
                continue;
            }
        };
        let key = username.key().as_ref().to_owned();
        if let Some(earlier) = keys.get(&key) {
            plan.problems.push(Problem {
                table: Table::Users,
                id: user.id,
                reason: format!(
                    "username {:?} is the same name as user {earlier}'s (key {key:?})",
                    user.username
                ),
                dependent: false,
            });
            continue;
        }
        keys.insert(key.clone(), user.id);
        user_ids.insert(user.id);
        // Inactive accounts keep their hash behind a `!`: they cannot log
        // in, and removing the `!` would reactivate them.
        let password_hash = if is_unusable(&user.password) {
            if user.password.is_empty() {
                "!".to_owned()
            } else {
                user.password.clone()
            }
        } else if user.is_active == 0 {
            format!("!{}", user.password)
        } else {
            user.password.clone()
        };
        plan.users.push(PlannedUser {
            id: user.id,
            username: user.username.clone(),
            username_key: key,
            password_hash,
            created,
        });
    }

    // Chats: exactly two imported users each, one per pair.
    let mut members: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(chat, user) in &source.participants {
        members.entry(chat).or_default().push(user);
    }
    // Django chat id -> (target chat id, its pair).
    let mut chat_target: HashMap<i64, (i64, (i64, i64))> = HashMap::new();
    let mut by_pair: HashMap<(i64, i64), i64> = HashMap::new();
    for chat in &source.chats {
        let created = parse_timestamp("chat", chat.id, &chat.created)?;
        let mut users = members.get(&chat.id).cloned().unwrap_or_default();
        users.sort_unstable();
        users.dedup();
        let [low, high] = users[..] else {
            plan.problems.push(Problem {
                table: Table::Chats,
                id: chat.id,
                reason: format!(
                    "has {} participant(s) {users:?}; a direct chat has two",
                    users.len()
                ),
                dependent: false,
            });
            continue;
        };
        if let Some(missing) = [low, high].into_iter().find(|u| !all_user_ids.contains(u)) {
            plan.problems.push(Problem {
                table: Table::Chats,
                id: chat.id,
                reason: format!("participant user {missing} does not exist"),
                dependent: false,
            });
            continue;
        }
        if let Some(skipped) = [low, high].into_iter().find(|u| !user_ids.contains(u)) {
            plan.problems.push(Problem {
                table: Table::Chats,
                id: chat.id,
                reason: format!("participant user {skipped} is skipped"),
                dependent: true,
            });
            continue;
        }
        let pair = (low, high);
        if let Some(&into) = by_pair.get(&pair) {
            plan.merges.push(Merge {
                merged: chat.id,
                into,
                pair,
            });
            chat_target.insert(chat.id, (into, pair));
            continue;
        }
        by_pair.insert(pair, chat.id);
        chat_target.insert(chat.id, (chat.id, pair));
        plan.chats.push(PlannedChat {
            id: chat.id,
            user_low_id: low,
            user_high_id: high,
            created,
        });
    }
    let chat_ids: HashSet<i64> = source.chats.iter().map(|c| c.id).collect();

    // Messages, in id order: each target chat's list is then in id order,
    // merged chats' messages interleaved by id.
    let mut per_chat: BTreeMap<i64, Vec<(PlannedMessage, bool)>> = BTreeMap::new();
    for message in &source.messages {
        let problem = |reason: String, dependent: bool| Problem {
            table: Table::Messages,
            id: message.id,
            reason,
            dependent,
        };
        let Some(&(target, (low, high))) = chat_target.get(&message.chat_id) else {
            plan.problems.push(if chat_ids.contains(&message.chat_id) {
                problem(format!("its chat {} is skipped", message.chat_id), true)
            } else {
                problem(format!("chat {} does not exist", message.chat_id), false)
            });
            continue;
        };
        if message.sender_id != low && message.sender_id != high {
            plan.problems.push(problem(
                format!(
                    "sender user {} is not in chat {}",
                    message.sender_id, message.chat_id
                ),
                false,
            ));
            continue;
        }
        if let Err(error) = MessageBody::parse(&message.body, limit) {
            plan.problems.push(problem(error.to_string(), false));
            continue;
        }
        let created = parse_timestamp("message", message.id, &message.created)?;
        let list = per_chat.entry(target).or_default();
        let seq = i64::try_from(list.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        list.push((
            PlannedMessage {
                id: message.id,
                chat_id: target,
                sender_id: message.sender_id,
                body: message.body.clone(),
                created,
                seq,
            },
            message.is_read != 0,
        ));
    }

    // Read state: a cursor per participant, placed so that the unread
    // count is Django's.
    for chat in &plan.chats {
        let messages = per_chat.get(&chat.id).map_or(&[][..], Vec::as_slice);
        let mut prefix_closed = true;
        for viewer in [chat.user_low_id, chat.user_high_id] {
            let (read_up_to, closed) = read_cursor(messages, viewer);
            prefix_closed &= closed;
            plan.participants.push(PlannedParticipant {
                chat_id: chat.id,
                user_id: viewer,
                read_up_to,
            });
        }
        if !prefix_closed {
            plan.not_prefix_closed.push(chat.id);
        }
    }
    plan.messages = per_chat
        .into_values()
        .flatten()
        .map(|(message, _)| message)
        .collect();
    Ok(plan)
}

/// `viewer`'s read cursor over `messages` (a chat's, in seq order, each
/// with Django's `is_read`): the largest seq with exactly as many of the
/// other user's messages above it as Django has unread ones, so that
/// `unread_count` is unchanged. Also whether Django's unread messages were
/// already the newest ones (prefix-closed); when not, the count is kept
/// and the cursor decides which of them count as unread: the newest.
fn read_cursor(messages: &[(PlannedMessage, bool)], viewer: i64) -> (i64, bool) {
    let others: Vec<&(PlannedMessage, bool)> = messages
        .iter()
        .filter(|(m, _)| m.sender_id != viewer)
        .collect();
    let unread = others.iter().filter(|(_, is_read)| !is_read).count();
    let head = messages.last().map_or(0, |(m, _)| m.seq);
    let prefix_closed = others
        .iter()
        .skip(others.len() - unread)
        .all(|(_, is_read)| !is_read);
    if unread == 0 {
        return (head, true);
    }
    // The oldest message that must stay unread; the cursor sits just below.
    let first_unread = others[others.len() - unread].0.seq;
    (first_unread - 1, prefix_closed)
}

// `treat_none_as_default_value = false` on every insert form: with it on,
// Diesel cannot write a batch as one multi-row INSERT on SQLite (see
// `NewMessageRow`).
#[derive(Insertable)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
struct UserInsert<'a> {
    id: i64,
    username: &'a str,
    username_key: &'a str,
    password_hash: &'a str,
    created: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = direct_chats)]
#[diesel(treat_none_as_default_value = false)]
struct ChatInsert {
    id: i64,
    user_low_id: i64,
    user_high_id: i64,
    created: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = direct_chat_participants)]
#[diesel(treat_none_as_default_value = false)]
struct ParticipantInsert {
    chat_id: i64,
    user_id: i64,
    read_up_to: i64,
    delivered_up_to: i64,
}

#[derive(Insertable)]
#[diesel(table_name = direct_messages)]
#[diesel(treat_none_as_default_value = false)]
struct MessageInsert<'a> {
    id: i64,
    chat_id: i64,
    sender_id: i64,
    body: &'a str,
    created: NaiveDateTime,
    seq: i64,
}

/// Rows actually inserted per table (a re-run inserts only what is missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub users: usize,
    pub chats: usize,
    pub participants: usize,
    pub messages: usize,
}

impl Written {
    pub fn get(&self, table: Table) -> usize {
        match table {
            Table::Users => self.users,
            Table::Chats => self.chats,
            Table::Participants => self.participants,
            Table::Messages => self.messages,
        }
    }
}

/// Inserts `rows` converted by `to_insert` into `$table`, `BATCH_ROWS` per
/// transaction in one multi-row INSERT each, skipping rows already there;
/// evaluates to the number inserted.
macro_rules! insert_batches {
    ($db:expr, $table:expr, $rows:expr, $progress:expr, $name:expr, $to_insert:expr) => {{
        let rows = $rows;
        let mut inserted = 0usize;
        for (index, batch) in rows.chunks(BATCH_ROWS).enumerate() {
            let values: Vec<_> = batch.iter().map($to_insert).collect();
            inserted += with_conn!($db, |conn| conn.transaction(|conn| {
                diesel::insert_into($table)
                    .values(&values)
                    .on_conflict_do_nothing()
                    .execute(conn)
            }))?;
            $progress($name, (index * BATCH_ROWS + batch.len()), rows.len());
        }
        inserted
    }};
}

impl Database {
    /// Writes `plan` in batches, each its own transaction, inserting only
    /// rows whose key is not there yet: an interrupted import completes
    /// when run again, and a finished one changes nothing. `progress` is
    /// told `(table, rows done, rows in all)` after each batch. On
    /// PostgreSQL the id sequences are then moved past the imported ids.
    pub fn write_import(
        &self,
        plan: &Plan,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Written, ImportError> {
        let users = insert_batches!(
            self,
            users::table,
            &plan.users,
            progress,
            "users",
            |u: &PlannedUser| UserInsert {
                id: u.id,
                username: &u.username,
                username_key: &u.username_key,
                password_hash: &u.password_hash,
                created: u.created,
            }
        );
        let chats = insert_batches!(
            self,
            direct_chats::table,
            &plan.chats,
            progress,
            "chats",
            |c: &PlannedChat| ChatInsert {
                id: c.id,
                user_low_id: c.user_low_id,
                user_high_id: c.user_high_id,
                created: c.created,
            }
        );
        let participants = insert_batches!(
            self,
            direct_chat_participants::table,
            &plan.participants,
            progress,
            "participants",
            |p: &PlannedParticipant| ParticipantInsert {
                chat_id: p.chat_id,
                user_id: p.user_id,
                read_up_to: p.read_up_to,
                delivered_up_to: p.read_up_to,
            }
        );
        let messages = insert_batches!(
            self,
            direct_messages::table,
            &plan.messages,
            progress,
            "messages",
            |m: &PlannedMessage| MessageInsert {
                id: m.id,
                chat_id: m.chat_id,
                sender_id: m.sender_id,
                body: &m.body,
                created: m.created,
                seq: m.seq,
            }
        );
        self.move_sequences_past(plan.reserved_ids)?;
        Ok(Written {
            users,
            chats,
            participants,
            messages,
        })
    }

    /// Moves each id sequence past the largest id stored and the
    /// `reserved` Django ids (users, chats, messages), skipped rows' too.
    /// PostgreSQL's BIGSERIAL sequences do not see explicit ids at all:
    /// without this the next registration would be given id 1 and fail.
    /// SQLite's AUTOINCREMENT follows the largest id stored by itself, but
    /// would give a skipped row's id to a new one.
    fn move_sequences_past(&self, reserved: [i64; 3]) -> Result<(), ImportError> {
        let tables = ["users", "direct_chats", "direct_messages"];
        match &self.pools {
            #[cfg(feature = "postgres")]
            Pools::Postgres(pool) => {
                use diesel::connection::SimpleConnection as _;
                let mut conn = pool.get().map_err(|e| ImportError::Write(e.to_string()))?;
                let statements: String = tables
                    .iter()
                    .zip(reserved)
                    .map(|(table, floor)| {
                        format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                                    GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), {floor}) + 1, \
                                    false);"
                        )
                    })
                    .collect();
                conn.batch_execute(&statements)
                    .map_err(|e| ImportError::Write(e.to_string()))
            }
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(pool) => {
                use diesel::connection::SimpleConnection as _;
                let mut conn = pool.get().map_err(|e| ImportError::Write(e.to_string()))?;
                // sqlite_sequence has one row per table that ever got an
                // AUTOINCREMENT id, and no unique key: update, else insert.
                let statements: String = tables
                    .iter()
                    .zip(reserved)
                    .map(|(table, floor)| {
                        format!(
                            "UPDATE sqlite_sequence SET seq = MAX(seq, {floor}) WHERE name = '{table}';
                             INSERT INTO sqlite_sequence (name, seq) SELECT '{table}', {floor}
                              WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '{table}');"
                        )
                    })
                    .collect();
                conn.batch_execute(&format!("BEGIN IMMEDIATE; {statements} COMMIT;"))
                    .map_err(|e| ImportError::Write(e.to_string()))
            }
        }
    }

    /// Compares the database with `plan`: the rows of each table, every
    /// participant's cursors and every chat's last message. Each
    /// difference is one line; none means the import is complete.
    pub fn verify_import(&self, plan: &Plan) -> Result<Vec<String>, ImportError> {
        #[derive(QueryableByName)]
        struct Last {
            #[diesel(sql_type = BigInt)]
            chat_id: i64,
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = BigInt)]
            seq: i64,
        }
        let (counts, cursors, lasts) = with_conn!(self, |conn| {
            let counts = [
                users::table.count().get_result::<i64>(conn)?,
                direct_chats::table.count().get_result::<i64>(conn)?,
                direct_chat_participants::table
                    .count()
                    .get_result::<i64>(conn)?,
                direct_messages::table.count().get_result::<i64>(conn)?,
            ];
            let cursors = direct_chat_participants::table
                .select((
                    direct_chat_participants::chat_id,
                    direct_chat_participants::user_id,
                    direct_chat_participants::read_up_to,
                    direct_chat_participants::delivered_up_to,
                ))
                .load::<(i64, i64, i64, i64)>(conn)?;
            let lasts = diesel::sql_query(
                "SELECT m.chat_id, m.id, m.seq FROM direct_messages m \
                  WHERE m.seq = (SELECT MAX(s.seq) FROM direct_messages s WHERE s.chat_id = m.chat_id)",
            )
            .load::<Last>(conn)?;
            Ok((counts, cursors, lasts))
        })?;

        let mut differences = Vec::new();
        let planned = [
            plan.users.len(),
            plan.chats.len(),
            plan.participants.len(),
            plan.messages.len(),
        ];
        for ((table, found), planned) in Table::ALL.iter().zip(counts).zip(planned) {
            if usize::try_from(found).ok() != Some(planned) {
                differences.push(format!(
                    "{table} rows: {found} in the database, {planned} planned"
                ));
            }
        }
        let found_cursors: HashMap<(i64, i64), (i64, i64)> = cursors
            .into_iter()
            .map(|(chat, user, read, delivered)| ((chat, user), (read, delivered)))
            .collect();
        for participant in &plan.participants {
            let key = (participant.chat_id, participant.user_id);
            let expected = (participant.read_up_to, participant.read_up_to);
            match found_cursors.get(&key) {
                Some(found) if *found == expected => {}
                found => differences.push(format!(
                    "chat {} user {}: cursors {found:?}, planned {expected:?}",
                    key.0, key.1
                )),
            }
        }
        let found_lasts: BTreeMap<i64, (i64, i64)> = lasts
            .into_iter()
            .map(|last| (last.chat_id, (last.id, last.seq)))
            .collect();
        let planned_lasts = plan.last_messages();
        for chat in &plan.chats {
            let found = found_lasts.get(&chat.id);
            let planned = planned_lasts.get(&chat.id);
            if found != planned {
                differences.push(format!(
                    "chat {}: last message (id, seq) {found:?}, planned {planned:?}",
                    chat.id
                ));
            }
        }
        Ok(differences)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, seq: i64, sender_id: i64) -> PlannedMessage {
        PlannedMessage {
            id,
            chat_id: 1,
            sender_id,
            body: "x".to_owned(),
            created: NaiveDateTime::default(),
            seq,
        }
    }

    #[test]
    fn the_cursor_keeps_django_s_unread_count() {
        // Viewer 1; user 2's messages at seqs 2, 3 and 5, the last two unread.
        let messages = vec![
            (message(10, 1, 1), true),
            (message(11, 2, 2), true),
            (message(12, 3, 2), false),
            (message(13, 4, 1), false),
            (message(14, 5, 2), false),
        ];
        assert_eq!(read_cursor(&messages, 1), (2, true));
        // Viewer 2: user 1's messages at seqs 1 (read) and 4 (unread); the
        // cursor sits just below 4.
        assert_eq!(read_cursor(&messages, 2), (3, true));
    }

    #[test]
    fn nothing_unread_puts_the_cursor_at_the_head_and_nothing_at_all_at_zero() {
        let messages = vec![(message(1, 1, 2), true), (message(2, 2, 1), false)];
        assert_eq!(read_cursor(&messages, 1), (2, true));
        assert_eq!(read_cursor(&[], 1), (0, true));
    }

    #[test]
    fn an_unread_message_before_a_read_one_keeps_the_count_and_is_reported() {
        let messages = vec![(message(1, 1, 2), false), (message(2, 2, 2), true)];
        // One unread: the newest one.
        assert_eq!(read_cursor(&messages, 1), (1, false));
    }

    #[test]
    fn django_timestamps_of_either_backend_parse_as_utc() {
        let expected = NaiveDateTime::parse_from_str("2024-05-01 12:00:00.5", "%F %T%.f").unwrap();
        for text in [
            "2024-05-01 12:00:00.500000",
            "2024-05-01T12:00:00.5",
            "2024-05-01 12:00:00.5+00",
            "2024-05-01 12:00:00.5+00:00",
        ] {
            assert_eq!(
                parse_timestamp("user", 1, text).unwrap(),
                expected,
                "{text}"
            );
        }
        assert!(parse_timestamp("user", 1, "2024-05-01 12:00:00+02").is_err());
    }

    #[test]
    fn uri_characters_in_a_path_are_escaped() {
        assert_eq!(uri_escaped("/tmp/a?b#c%d"), "/tmp/a%3fb%23c%25d");
    }
}
