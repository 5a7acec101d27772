//! Importing the original Django app's database (`chat-server
//! import-django`): open one snapshot of it ([`SourceReader`]), read its
//! small tables and decide what becomes of their rows ([`plan`], pure),
//! stream the messages once to check them without holding them
//! ([`check_messages`]), refuse a target holding other rows
//! ([`Database::check_target`]), stream them again to write them in
//! transactions that a re-run completes ([`Database::write_import`]) and
//! check the result ([`Database::verify_import`]). Memory follows the
//! number of users and chats and of the problem rows (each skipped message
//! is listed in the report), not of the messages imported.
//!
//! The rules are in docs/migrating-from-django.md; in short: ids are kept,
//! password hashes are copied verbatim (logins verify Django's formats),
//! inactive users get an unusable (`!`) hash, each chat's messages are
//! numbered 1, 2, ... in id order, `is_read` becomes a read cursor that
//! gives the same unread counts, two chats of one pair are merged into the
//! older, and whatever the server would refuse is a [`Problem`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use chat_domain::chat::{MessageBody, MessageLimit};
use chat_domain::user::Username;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::database::{with_conn, Database, Pools};
use crate::error::StoreError;
use crate::schema::{direct_chat_participants, direct_chats, direct_messages, users};

/// Rows per multi-row INSERT when writing (and per keyset chunk read):
/// 4,000 messages of 6 columns stay under SQLite's 32,766 bound parameters.
/// Users, chats and participants go in one transaction per INSERT;
/// messages ten INSERTs to a transaction (see `insert_messages`).
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
    #[error(
        "the target is not empty and holds rows that are not this source's ({0}): \
         nothing written; import into an empty database, or one holding only an \
         earlier (possibly interrupted) import of this same source"
    )]
    Conflict(String),
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Pool(e) => Self::Write(e.to_string()),
            StoreError::Query(e) => Self::Write(e.to_string()),
        }
    }
}

/// The small Django tables as read, whole: `auth_user`, `<app>_directchat`
/// and `<app>_directchat_participants`, each in id order. Messages are not
/// here: they are streamed ([`SourceReader::messages_after`]).
#[derive(Debug, Default, Clone)]
pub struct Source {
    pub users: Vec<SourceUser>,
    pub chats: Vec<SourceChat>,
    /// `(directchat_id, user_id)`.
    pub participants: Vec<(i64, i64)>,
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

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The small tables' three queries, the same text on both backends:
/// booleans become 0/1 with CASE, ids BIGINT, timestamps text (UTC: Django
/// writes UTC on SQLite, and the PostgreSQL session is set to UTC first).
fn table_queries(app_label: &str) -> [String; 3] {
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
    ]
}

/// One chunk of messages by keyset: the `limit` next ones after id
/// `after` (from the first without it). The numbers are written into the text (they are integers) so
/// that one text serves both backends' placeholder styles. The primary
/// key's index makes each chunk a range scan, however deep, but only if
/// WHERE and ORDER BY name the column, `m.id`: a bare `id` in ORDER BY is
/// the CAST alias, which SQLite and PostgreSQL then sort by, every row
/// past the chunk's start each time (15.5 s to check a million messages
/// instead of 2.1).
fn messages_query(app_label: &str, after: Option<i64>, limit: usize) -> String {
    // No literal for "before every id": i64::MIN is not one in PostgreSQL
    // (it parses as a numeric, which would cost the index).
    let after = after.map_or(String::new(), |id| format!("WHERE m.id > {id}"));
    format!(
        "SELECT CAST(id AS BIGINT) AS id, CAST(chat_id AS BIGINT) AS chat_id, \
                CAST(sender_id AS BIGINT) AS sender_id, body, \
                CAST(created AS TEXT) AS created, \
                CASE WHEN is_read THEN 1 ELSE 0 END AS is_read \
           FROM {app_label}_directmessage m {after} ORDER BY m.id LIMIT {limit}"
    )
}

enum SourceConn {
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
}

/// The Django database, open in one read transaction for as long as this
/// lives: every pass over its messages (checking, then writing) sees the
/// same snapshot, whatever Django does meanwhile.
pub struct SourceReader {
    conn: SourceConn,
    app_label: String,
}

/// Runs `$body` with `$conn` bound to the reader's concrete connection.
macro_rules! on_source {
    ($reader:expr, |$conn:ident| $body:expr) => {
        match &mut $reader.conn {
            #[cfg(feature = "sqlite")]
            SourceConn::Sqlite($conn) => $body,
            #[cfg(feature = "postgres")]
            SourceConn::Postgres($conn) => $body,
        }
    };
}

impl SourceReader {
    /// Opens the Django database at `url` (`sqlite://path`, read-only, or
    /// `postgres://...`, in a READ ONLY REPEATABLE READ transaction) and
    /// starts the read transaction. `app_label` is the tables' prefix.
    pub fn open(url: &str, app_label: &str) -> Result<SourceReader, ImportError> {
        if app_label.is_empty()
            || !app_label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ImportError::InvalidSource(format!(
                "--app-label {app_label:?}: expected lower-case letters, digits and _"
            )));
        }
        let conn = if let Some(path) = url.strip_prefix("sqlite://") {
            open_sqlite(path)?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(url)?
        } else {
            return Err(ImportError::InvalidSource(
                "expected sqlite://<path> or postgres://...".to_owned(),
            ));
        };
        Ok(SourceReader {
            conn,
            app_label: app_label.to_owned(),
        })
    }

    /// Users, chats and participants, whole (they are small: one row per
    /// account or conversation).
    pub fn read_tables(&mut self) -> Result<Source, ImportError> {
        let [users, chats, participants] = table_queries(&self.app_label);
        on_source!(self, |conn| {
            let participants: Vec<SourceParticipant> = diesel::sql_query(participants)
                .load(conn)
                .map_err(ImportError::Read)?;
            Ok(Source {
                users: diesel::sql_query(users)
                    .load(conn)
                    .map_err(ImportError::Read)?,
                chats: diesel::sql_query(chats)
                    .load(conn)
                    .map_err(ImportError::Read)?,
                participants: participants
                    .into_iter()
                    .map(|p| (p.chat_id, p.user_id))
                    .collect(),
            })
        })
    }

    /// How many messages there are (for the progress bar).
    pub fn message_count(&mut self) -> Result<u64, ImportError> {
        let query = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {}_directmessage",
            self.app_label
        );
        let count: Count = on_source!(self, |conn| diesel::sql_query(query).get_result(conn))
            .map_err(ImportError::Read)?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }

    /// The next `limit` messages after id `after` (from the first when
    /// `None`), in id order; fewer than `limit` means the last chunk.
    pub fn messages_after(
        &mut self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SourceMessage>, ImportError> {
        let query = messages_query(&self.app_label, after, limit);
        on_source!(self, |conn| diesel::sql_query(query).load(conn)).map_err(ImportError::Read)
    }

    /// Calls `each` with every message, in id order, `BATCH_ROWS` at a
    /// time: at most one chunk is held.
    pub fn for_each_chunk(
        &mut self,
        each: &mut dyn FnMut(Vec<SourceMessage>) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        let mut after = None;
        loop {
            let chunk = self.messages_after(after, BATCH_ROWS)?;
            let full = chunk.len() == BATCH_ROWS;
            let Some(last) = chunk.last() else {
                return Ok(());
            };
            after = Some(last.id);
            each(chunk)?;
            if !full {
                return Ok(());
            }
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &str) -> Result<SourceConn, ImportError> {
    use diesel::connection::SimpleConnection as _;
    if !std::path::Path::new(path).is_file() {
        return Err(ImportError::Open(format!("{path} is not a file")));
    }
    // A URI filename, so that `mode=ro` opens it read-only: nothing of the
    // Django database can change, not even its journal mode.
    let uri = format!("file:{}?mode=ro", uri_escaped(path));
    let mut conn =
        diesel::SqliteConnection::establish(&uri).map_err(|e| ImportError::Open(e.to_string()))?;
    // One read transaction for the whole import: one snapshot of all four
    // tables, taken at the first SELECT and kept until the connection
    // closes (nothing is ever written on it, so nothing is rolled back).
    conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN DEFERRED")
        .map_err(ImportError::Read)?;
    Ok(SourceConn::Sqlite(conn))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_path: &str) -> Result<SourceConn, ImportError> {
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
fn open_postgres(url: &str) -> Result<SourceConn, ImportError> {
    use diesel::connection::SimpleConnection as _;
    let mut conn =
        diesel::PgConnection::establish(url).map_err(|e| ImportError::Open(e.to_string()))?;
    // One snapshot of all four tables for every pass, and a promise to
    // write nothing; the transaction ends when the connection closes.
    conn.batch_execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL TIME ZONE 'UTC'",
    )
    .map_err(ImportError::Read)?;
    Ok(SourceConn::Postgres(conn))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str) -> Result<SourceConn, ImportError> {
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

/// What an import will write, and what it will not and why. Users, chats
/// and participants are held whole; messages are only counted here
/// ([`check_messages`] streams them), and what the cursors need is kept per
/// participant.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub users: Vec<PlannedUser>,
    pub chats: Vec<PlannedChat>,
    /// Their `read_up_to` is final only once the messages have been
    /// numbered by [`Database::write_import`]; 0 until then.
    pub participants: Vec<PlannedParticipant>,
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
    /// Messages read from Django, and planned to be written.
    pub messages_read: usize,
    pub messages_planned: usize,
    /// Each planned chat's last message: `chat id -> (message id, seq)`.
    pub last_messages: BTreeMap<i64, (i64, i64)>,
    /// Django chat id -> the chat its messages go to (itself, or the one
    /// it is merged into) and that chat's pair.
    routes: HashMap<i64, (i64, (i64, i64))>,
    /// Every Django chat id, skipped ones too.
    source_chat_ids: HashSet<i64>,
    /// `(chat, viewer)` -> how many of the other user's messages Django
    /// has as read: the cursor sits just below the next one of theirs.
    read_by: HashMap<(i64, i64), usize>,
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
                read: self.messages_read,
                planned: self.messages_planned,
                skipped,
                merged: 0,
            },
        }
    }

    /// Problems that stop an import without `--skip-invalid` (not the rows
    /// skipped only because of another).
    pub fn refusals(&self) -> usize {
        self.problems.iter().filter(|p| !p.dependent).count()
    }
}

/// What becomes of one Django message.
#[derive(Debug)]
enum Checked {
    Planned {
        message: PlannedMessage,
        is_read: bool,
    },
    Skipped(Problem),
}

/// Decides each message's fate and numbers the planned ones, given the
/// messages in id order: each chat's counter then numbers its messages in
/// id order, a merged chat's interleaved by id with its target's. Both
/// passes use one of these from the start, so they number alike.
struct MessageChecker<'a> {
    plan: &'a Plan,
    limit: MessageLimit,
    /// Target chat -> the last seq given.
    seqs: HashMap<i64, i64>,
}

impl<'a> MessageChecker<'a> {
    fn new(plan: &'a Plan, limit: MessageLimit) -> Self {
        MessageChecker {
            plan,
            limit,
            seqs: HashMap::new(),
        }
    }

    fn check(&mut self, message: SourceMessage) -> Result<Checked, ImportError> {
        let problem = |reason: String, dependent: bool| {
            Checked::Skipped(Problem {
                table: Table::Messages,
                id: message.id,
                reason,
                dependent,
            })
        };
        let Some(&(target, (low, high))) = self.plan.routes.get(&message.chat_id) else {
            return Ok(if self.plan.source_chat_ids.contains(&message.chat_id) {
                problem(format!("its chat {} is skipped", message.chat_id), true)
            } else {
                problem(format!("chat {} does not exist", message.chat_id), false)
            });
        };
        if message.sender_id != low && message.sender_id != high {
            return Ok(problem(
                format!(
                    "sender user {} is not in chat {}",
                    message.sender_id, message.chat_id
                ),
                false,
            ));
        }
        if let Err(error) = MessageBody::parse(&message.body, self.limit) {
            return Ok(problem(error.to_string(), false));
        }
        let created = parse_timestamp("message", message.id, &message.created)?;
        let seq = self.seqs.entry(target).or_insert(0);
        *seq = seq.saturating_add(1);
        Ok(Checked::Planned {
            message: PlannedMessage {
                id: message.id,
                chat_id: target,
                sender_id: message.sender_id,
                body: message.body,
                created,
                seq: *seq,
            },
            is_read: message.is_read != 0,
        })
    }

    /// The other participant of `message`'s chat: the one whose read state
    /// Django's `is_read` is.
    fn viewer(&self, message: &PlannedMessage) -> i64 {
        self.plan
            .chats
            .binary_search_by_key(&message.chat_id, |c| c.id)
            .ok()
            .and_then(|index| self.plan.chats.get(index))
            .map_or(0, |chat| {
                if chat.user_low_id == message.sender_id {
                    chat.user_high_id
                } else {
                    chat.user_low_id
                }
            })
    }
}

/// Where each participant's cursor lands, found while the messages are
/// numbered a second time: just below the first of the other user's
/// messages past the ones Django has as read (pass one counted those),
/// else at the chat's head. Only a position per participant is held.
struct CursorFinder {
    /// `(chat, viewer)` -> the other user's messages seen so far.
    seen: HashMap<(i64, i64), usize>,
    found: HashMap<(i64, i64), i64>,
}

impl CursorFinder {
    fn new() -> Self {
        CursorFinder {
            seen: HashMap::new(),
            found: HashMap::new(),
        }
    }

    /// `message` (numbered) is one of the other user's, for `viewer`, who
    /// has read `read` of those.
    fn other_message(&mut self, viewer: i64, read: usize, message: &PlannedMessage) {
        let key = (message.chat_id, viewer);
        let seen = self.seen.entry(key).or_insert(0);
        if *seen == read {
            // The oldest that must stay unread: the cursor sits below it.
            self.found.entry(key).or_insert(message.seq - 1);
        }
        *seen += 1;
    }

    /// The cursor for `viewer` in `chat` whose last seq is `head`.
    fn cursor(&self, chat: i64, viewer: i64, head: i64) -> i64 {
        self.found.get(&(chat, viewer)).copied().unwrap_or(head)
    }
}

/// Pass one over the messages (streamed from `reader`, in id order):
/// checks every one, keeping only the problem rows, counts what the
/// cursors need, and, when `target` is given, compares the target's
/// messages with the planned ones by id, in bounded chunks, so that a
/// target holding other rows is refused before anything is written.
/// `progress` is told the rows read after each chunk.
pub fn check_messages(
    reader: &mut SourceReader,
    plan: &mut Plan,
    limit: MessageLimit,
    target: Option<&Database>,
    progress: &mut dyn Progress,
) -> Result<(), ImportError> {
    let mut checker = MessageChecker::new(plan, limit);
    let mut problems = Vec::new();
    let mut read_by: HashMap<(i64, i64), usize> = HashMap::new();
    let mut unread_seen: HashSet<(i64, i64)> = HashSet::new();
    let mut not_prefix_closed = BTreeSet::new();
    let mut last_messages = BTreeMap::new();
    let (mut read, mut planned, mut max_id) = (0usize, 0usize, 0i64);
    let mut compared = target.map(TargetMessages::new);
    reader.for_each_chunk(&mut |chunk| {
        let rows = chunk.len();
        for message in chunk {
            read += 1;
            max_id = max_id.max(message.id);
            match checker.check(message)? {
                Checked::Skipped(problem) => {
                    if let Some(target) = &mut compared {
                        target.expect(problem.id, None)?;
                    }
                    problems.push(problem);
                }
                Checked::Planned { message, is_read } => {
                    if let Some(target) = &mut compared {
                        target.expect(message.id, Some(&message))?;
                    }
                    planned += 1;
                    last_messages.insert(message.chat_id, (message.id, message.seq));
                    let key = (message.chat_id, checker.viewer(&message));
                    if is_read {
                        *read_by.entry(key).or_insert(0) += 1;
                        // Read after an unread one: Django's unread ones are
                        // not the newest.
                        if unread_seen.contains(&key) {
                            not_prefix_closed.insert(message.chat_id);
                        }
                    } else {
                        unread_seen.insert(key);
                    }
                }
            }
        }
        progress.advance(rows as u64);
        Ok(())
    })?;
    if let Some(target) = &mut compared {
        target.expect_no_more()?;
    }
    plan.problems.extend(problems);
    plan.read_by = read_by;
    plan.not_prefix_closed = not_prefix_closed.into_iter().collect();
    plan.last_messages = last_messages;
    plan.messages_read = read;
    plan.messages_planned = planned;
    plan.reserved_ids[2] = max_id;
    Ok(())
}

/// A message already in the target, as compared with a planned one.
#[derive(Debug, Queryable)]
struct TargetMessage {
    id: i64,
    chat_id: i64,
    sender_id: i64,
    body: String,
    created: NaiveDateTime,
    seq: i64,
}

/// The target's messages in id order, `BATCH_ROWS` at a time, walked
/// beside the source's: a merge join with one chunk held.
struct TargetMessages<'a> {
    database: &'a Database,
    chunk: std::collections::VecDeque<TargetMessage>,
    after: Option<i64>,
    exhausted: bool,
}

impl<'a> TargetMessages<'a> {
    fn new(database: &'a Database) -> Self {
        TargetMessages {
            database,
            chunk: std::collections::VecDeque::new(),
            after: None,
            exhausted: false,
        }
    }

    fn peek(&mut self) -> Result<Option<&TargetMessage>, ImportError> {
        if self.chunk.is_empty() && !self.exhausted {
            let after = self.after.unwrap_or(i64::MIN);
            let rows: Vec<TargetMessage> = with_conn!(self.database, |conn| {
                direct_messages::table
                    .filter(direct_messages::id.gt(after))
                    .order(direct_messages::id)
                    .limit(BATCH_ROWS as i64)
                    .select((
                        direct_messages::id,
                        direct_messages::chat_id,
                        direct_messages::sender_id,
                        direct_messages::body,
                        direct_messages::created,
                        direct_messages::seq,
                    ))
                    .load(conn)
            })?;
            self.exhausted = rows.len() < BATCH_ROWS;
            self.after = rows.last().map(|m| m.id).or(self.after);
            self.chunk.extend(rows);
        }
        Ok(self.chunk.front())
    }

    /// The source's message `id` is next: the target may hold it only as
    /// `planned`, and nothing with a smaller id (those before were matched
    /// by earlier calls, since the source's ids only grow).
    fn expect(&mut self, id: i64, planned: Option<&PlannedMessage>) -> Result<(), ImportError> {
        let Some(found) = self.peek()? else {
            return Ok(());
        };
        if found.id > id {
            return Ok(());
        }
        if found.id < id {
            return Err(conflict(format!(
                "message {} is there and not in this source",
                found.id
            )));
        }
        let same = planned.is_some_and(|m| {
            (m.chat_id, m.sender_id, m.body.as_str(), m.created, m.seq)
                == (
                    found.chat_id,
                    found.sender_id,
                    found.body.as_str(),
                    found.created,
                    found.seq,
                )
        });
        if !same {
            return Err(conflict(match planned {
                Some(_) => format!("message {id} there differs from this source's"),
                None => format!("message {id} is there but skipped in this source"),
            }));
        }
        self.chunk.pop_front();
        Ok(())
    }

    fn expect_no_more(&mut self) -> Result<(), ImportError> {
        match self.peek()? {
            Some(found) => Err(conflict(format!(
                "message {} is there and not in this source",
                found.id
            ))),
            None => Ok(()),
        }
    }
}

fn conflict(what: String) -> ImportError {
    ImportError::Conflict(what)
}

/// An unusable password in Django's sense (`make_password(None)` starts
/// with `!`): it never matches, here as there.
fn is_unusable(hash: &str) -> bool {
    hash.is_empty() || hash.starts_with('!')
}

/// Decides what becomes of every user, chat and participant of `source`;
/// the messages are decided by [`check_messages`], streamed.
pub fn plan(source: &Source) -> Result<Plan, ImportError> {
    let mut plan = Plan {
        reserved_ids: [
            source.users.iter().map(|u| u.id).max().unwrap_or(0),
            source.chats.iter().map(|c| c.id).max().unwrap_or(0),
            0,
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
    // Their cursors are placed once the messages are numbered.
    for chat in &plan.chats {
        for viewer in [chat.user_low_id, chat.user_high_id] {
            plan.participants.push(PlannedParticipant {
                chat_id: chat.id,
                user_id: viewer,
                read_up_to: 0,
            });
        }
    }
    plan.source_chat_ids = source.chats.iter().map(|c| c.id).collect();
    plan.routes = chat_target;
    Ok(plan)
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

/// Rows actually inserted per table (a re-run inserts only what is
/// missing), and the participants whose cursors were moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub users: usize,
    pub chats: usize,
    pub participants: usize,
    pub messages: usize,
    pub cursors: usize,
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

/// Told how an import goes, for a progress bar: the command line's, or
/// nothing.
pub trait Progress {
    /// A new stage, named, of `total` rows.
    fn stage(&mut self, name: &str, total: u64);
    /// `rows` more of the stage done.
    fn advance(&mut self, rows: u64);
}

/// No progress shown.
impl Progress for () {
    fn stage(&mut self, _name: &str, _total: u64) {}
    fn advance(&mut self, _rows: u64) {}
}

/// Inserts `rows` converted by `to_insert` into `$table`, `BATCH_ROWS` per
/// transaction in one multi-row INSERT each, skipping rows already there;
/// evaluates to the number inserted.
macro_rules! insert_batches {
    ($db:expr, $table:expr, $rows:expr, $progress:expr, $name:expr, $to_insert:expr) => {{
        let rows = $rows;
        $progress.stage($name, rows.len() as u64);
        let mut inserted = 0usize;
        for batch in rows.chunks(BATCH_ROWS) {
            let values: Vec<_> = batch.iter().map($to_insert).collect();
            inserted += with_conn!($db, |conn| conn.transaction(|conn| {
                diesel::insert_into($table)
                    .values(&values)
                    .on_conflict_do_nothing()
                    .execute(conn)
            }))?;
            $progress.advance(batch.len() as u64);
        }
        inserted
    }};
}

/// Messages per transaction when writing (in `BATCH_ROWS` statements).
/// Messages arrive in id order, spread over every chat: each transaction
/// dirties about one index page per chat and index, whatever its size, and
/// SQLite writes each dirty page to its WAL at every commit. At 4,000 a
/// transaction a million messages in 1,000 chats wrote gigabytes of WAL
/// (28,000 messages/s); ten times more per transaction is ten times less,
/// for some 6 MB more held.
const MESSAGES_PER_TRANSACTION: usize = 10 * BATCH_ROWS;

/// Participants' cursors per UPDATE statement (three integers each).
const CURSOR_ROWS: usize = 1_000;

impl Database {
    /// Refuses a target holding users, chats or participants that are not
    /// exactly the planned ones (a user id with another name or hash, a
    /// chat with other participants, anything not from this source). A
    /// previous import of the same source, complete or not, passes. Three
    /// queries, whatever the size; the messages are compared in bounded
    /// chunks by [`check_messages`].
    pub fn check_target(&self, plan: &Plan) -> Result<(), ImportError> {
        type UserRow = (i64, String, Option<String>, String, NaiveDateTime);
        type ChatRow = (i64, i64, i64, NaiveDateTime);
        let (found_users, found_chats, found_participants) = with_conn!(self, |conn| {
            let found_users = users::table
                .select((
                    users::id,
                    users::username,
                    users::username_key,
                    users::password_hash,
                    users::created,
                ))
                // Ordered, so that a refusal names the lowest id.
                .order(users::id)
                .load::<UserRow>(conn)?;
            let found_chats = direct_chats::table
                .select((
                    direct_chats::id,
                    direct_chats::user_low_id,
                    direct_chats::user_high_id,
                    direct_chats::created,
                ))
                .order(direct_chats::id)
                .load::<ChatRow>(conn)?;
            let found_participants = direct_chat_participants::table
                .select((
                    direct_chat_participants::chat_id,
                    direct_chat_participants::user_id,
                ))
                .order((
                    direct_chat_participants::chat_id,
                    direct_chat_participants::user_id,
                ))
                .load::<(i64, i64)>(conn)?;
            Ok((found_users, found_chats, found_participants))
        })?;
        let planned_users: HashMap<i64, &PlannedUser> =
            plan.users.iter().map(|u| (u.id, u)).collect();
        for (id, username, key, hash, created) in &found_users {
            match planned_users.get(id) {
                None => {
                    return Err(conflict(format!(
                        "user {id} ({username:?}) is there and not in this source"
                    )))
                }
                Some(u)
                    if (&u.username, Some(&u.username_key), &u.password_hash, &u.created)
                        != (username, key.as_ref(), hash, created) =>
                {
                    return Err(conflict(format!(
                        "user {id} there is {username:?}, not this source's {:?} (or its hash or creation differ)",
                        u.username
                    )))
                }
                Some(_) => {}
            }
        }
        let planned_chats: HashMap<i64, &PlannedChat> =
            plan.chats.iter().map(|c| (c.id, c)).collect();
        for &(id, low, high, created) in &found_chats {
            match planned_chats.get(&id) {
                None => {
                    return Err(conflict(format!(
                        "chat {id} (users {low} and {high}) is there and not in this source"
                    )))
                }
                Some(c) if (c.user_low_id, c.user_high_id, c.created) != (low, high, created) => {
                    return Err(conflict(format!(
                        "chat {id} there is users {low} and {high}, this source's is users {} and {} (or its creation differs)",
                        c.user_low_id, c.user_high_id
                    )))
                }
                Some(_) => {}
            }
        }
        let planned_participants: HashSet<(i64, i64)> = plan
            .participants
            .iter()
            .map(|p| (p.chat_id, p.user_id))
            .collect();
        if let Some((chat, user)) = found_participants
            .iter()
            .find(|key| !planned_participants.contains(key))
        {
            return Err(conflict(format!(
                "user {user} is a participant of chat {chat} there, not in this source"
            )));
        }
        Ok(())
    }

    /// Writes `plan`: users, chats and participants from memory, then the
    /// messages streamed a second time from `reader` (checked and numbered
    /// as [`check_messages`] did, a chunk per transaction), then the
    /// participants' cursors, found on the way. Each batch inserts only
    /// rows whose key is not there yet: an interrupted import completes
    /// when run again, and a finished one changes nothing. On PostgreSQL
    /// the id sequences are then moved past the imported ids.
    pub fn write_import(
        &self,
        reader: &mut SourceReader,
        plan: &mut Plan,
        limit: MessageLimit,
        progress: &mut dyn Progress,
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
        // Before the messages (they reference their chat's participants),
        // cursors at 0 until the messages have shown where they land.
        let participants = insert_batches!(
            self,
            direct_chat_participants::table,
            &plan.participants,
            progress,
            "participants",
            |p: &PlannedParticipant| ParticipantInsert {
                chat_id: p.chat_id,
                user_id: p.user_id,
                read_up_to: 0,
                delivered_up_to: 0,
            }
        );

        progress.stage("messages", plan.messages_read as u64);
        let mut checker = MessageChecker::new(plan, limit);
        let mut finder = CursorFinder::new();
        let mut messages = 0usize;
        let mut pending: Vec<PlannedMessage> = Vec::with_capacity(MESSAGES_PER_TRANSACTION);
        reader.for_each_chunk(&mut |chunk| {
            let rows = chunk.len();
            for message in chunk {
                // Skipped ones were reported by the first pass.
                if let Checked::Planned { message, .. } = checker.check(message)? {
                    let viewer = checker.viewer(&message);
                    let read = plan.read_by.get(&(message.chat_id, viewer));
                    finder.other_message(viewer, read.copied().unwrap_or(0), &message);
                    pending.push(message);
                }
            }
            if pending.len() >= MESSAGES_PER_TRANSACTION {
                messages += self.insert_messages(&mut pending)?;
            }
            progress.advance(rows as u64);
            Ok(())
        })?;
        messages += self.insert_messages(&mut pending)?;

        for participant in &mut plan.participants {
            let head = plan
                .last_messages
                .get(&participant.chat_id)
                .map_or(0, |&(_, seq)| seq);
            participant.read_up_to = finder.cursor(participant.chat_id, participant.user_id, head);
        }
        progress.stage("cursors", plan.participants.len() as u64);
        let mut cursors = 0usize;
        for batch in plan.participants.chunks(CURSOR_ROWS) {
            // Integers only, so written into the text; `column1..3` is
            // what both SQLite and PostgreSQL name a VALUES list's columns.
            let values: Vec<String> = batch
                .iter()
                .map(|p| format!("({}, {}, {})", p.chat_id, p.user_id, p.read_up_to))
                .collect();
            let statement = format!(
                "UPDATE direct_chat_participants \
                    SET read_up_to = v.column3, delivered_up_to = v.column3 \
                   FROM (VALUES {}) AS v \
                  WHERE direct_chat_participants.chat_id = v.column1 \
                    AND direct_chat_participants.user_id = v.column2 \
                    AND (direct_chat_participants.read_up_to <> v.column3 \
                         OR direct_chat_participants.delivered_up_to <> v.column3)",
                values.join(", ")
            );
            cursors += with_conn!(self, |conn| diesel::sql_query(&statement).execute(conn))?;
            progress.advance(batch.len() as u64);
        }
        self.move_sequences_past(plan.reserved_ids)?;
        Ok(Written {
            users,
            chats,
            participants,
            messages,
            cursors,
        })
    }

    /// Inserts `pending` (emptied) in one transaction, `BATCH_ROWS` per
    /// INSERT statement, sorted by chat and seq so that each chat's index
    /// pages are visited once; returns the rows inserted.
    fn insert_messages(&self, pending: &mut Vec<PlannedMessage>) -> Result<usize, ImportError> {
        if pending.is_empty() {
            return Ok(0);
        }
        pending.sort_unstable_by_key(|m| (m.chat_id, m.seq));
        let inserted = with_conn!(self, |conn| conn.transaction(|conn| {
            let mut inserted = 0;
            for batch in pending.chunks(BATCH_ROWS) {
                let values: Vec<MessageInsert<'_>> = batch
                    .iter()
                    .map(|m| MessageInsert {
                        id: m.id,
                        chat_id: m.chat_id,
                        sender_id: m.sender_id,
                        body: &m.body,
                        created: m.created,
                        seq: m.seq,
                    })
                    .collect();
                inserted += diesel::insert_into(direct_messages::table)
                    .values(&values)
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            Ok(inserted)
        }))?;
        pending.clear();
        Ok(inserted)
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
            plan.messages_planned,
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
        let planned_lasts = &plan.last_messages;
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

    /// `viewer`'s cursor over one chat's messages (in seq order, each with
    /// Django's `is_read`), found as the two passes find it: the first
    /// counts the other user's read messages, the second walks them.
    fn read_cursor(messages: &[(PlannedMessage, bool)], viewer: i64) -> i64 {
        let read = messages
            .iter()
            .filter(|(m, is_read)| m.sender_id != viewer && *is_read)
            .count();
        let mut finder = CursorFinder::new();
        for (m, _) in messages.iter().filter(|(m, _)| m.sender_id != viewer) {
            finder.other_message(viewer, read, m);
        }
        let head = messages.last().map_or(0, |(m, _)| m.seq);
        finder.cursor(1, viewer, head)
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
        assert_eq!(read_cursor(&messages, 1), 2);
        // Viewer 2: user 1's messages at seqs 1 (read) and 4 (unread); the
        // cursor sits just below 4.
        assert_eq!(read_cursor(&messages, 2), 3);
    }

    #[test]
    fn nothing_unread_puts_the_cursor_at_the_head_and_nothing_at_all_at_zero() {
        let messages = vec![(message(1, 1, 2), true), (message(2, 2, 1), false)];
        assert_eq!(read_cursor(&messages, 1), 2);
        assert_eq!(read_cursor(&[], 1), 0);
    }

    #[test]
    fn an_unread_message_before_a_read_one_keeps_the_count() {
        let messages = vec![(message(1, 1, 2), false), (message(2, 2, 2), true)];
        // One unread: the newest one.
        assert_eq!(read_cursor(&messages, 1), 1);
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
