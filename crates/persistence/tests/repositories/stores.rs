//! The stores the contract runs on, and one-line ways to use them.

use std::ops::Deref;

use chat_domain::chat::{
    ChatId, ChatRepository, ChatSummary, ClientId, CursorChange, CursorKind, DirectChat,
    DirectMessage, Inserted, MessageBody, MessageLimit, MessagePage, MessageRepository, NewMessage,
    PageAnchor, PageLimit, Seq, UserPair,
};
use chat_domain::user::{NewUser, PasswordHash, User, UserId, UserRepository, Username};
#[cfg(feature = "postgres")]
use chat_persistence::testing::{TestDatabase, TEST_DATABASE_URL};
use chat_persistence::{Backend, Database, DatabaseOptions};

/// Everything a store implements: what the contract tests take.
pub trait Store: UserRepository + ChatRepository + MessageRepository {}

impl<T: UserRepository + ChatRepository + MessageRepository> Store for T {}

// ---- SQL databases ---------------------------------------------------------

/// A new SQL database with no tables yet, removed when dropped.
pub struct EmptyDb {
    url: String,
    backend: Backend,
    _removed_on_drop: Removal,
}

/// Held for what its `Drop` removes.
#[allow(dead_code)]
enum Removal {
    #[cfg(feature = "sqlite")]
    Dir(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Database(TestDatabase),
}

/// A SQLite file in a directory of its own. Made here rather than by
/// `TestDatabase`, which picks PostgreSQL whenever `TEST_DATABASE_URL` is
/// set: SQLite runs in every build.
#[cfg(feature = "sqlite")]
pub fn empty_sqlite() -> EmptyDb {
    let dir = tempfile::Builder::new()
        .prefix("chat-contract-")
        .tempdir()
        .expect("temporary directory");
    EmptyDb {
        url: format!("sqlite://{}", dir.path().join("chat.db").display()),
        backend: Backend::Sqlite,
        _removed_on_drop: Removal::Dir(dir),
    }
}

/// A PostgreSQL database of its own, or `None` (and a note) when
/// `TEST_DATABASE_URL` does not say where to make one.
#[cfg(feature = "postgres")]
pub fn empty_postgres() -> Option<EmptyDb> {
    if std::env::var_os(TEST_DATABASE_URL).is_none() {
        eprintln!("PostgreSQL skipped: {TEST_DATABASE_URL} is not set");
        return None;
    }
    let database = TestDatabase::create().expect("create a PostgreSQL test database");
    assert_eq!(database.backend(), Backend::Postgres);
    Some(EmptyDb {
        url: database.url().to_owned(),
        backend: Backend::Postgres,
        _removed_on_drop: Removal::Database(database),
    })
}

impl EmptyDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connects, which applies every migration.
    pub fn connect(self) -> SqlStore {
        let db = Database::connect(&self.url, &DatabaseOptions::default())
            .expect("connect to the test database");
        SqlStore { db, empty: self }
    }
}

/// A migrated SQL database. Fields drop in order: the pool closes before
/// the database is removed.
pub struct SqlStore {
    db: Database,
    empty: EmptyDb,
}

impl SqlStore {
    pub fn url(&self) -> &str {
        self.empty.url()
    }

    /// A second, independent pool on the same database: what a restarted
    /// server opens.
    pub fn reconnect(&self) -> Database {
        Database::connect(self.url(), &DatabaseOptions::default()).expect("reconnect")
    }
}

impl SqlStore {
    /// Closes the pool and connects to the same URL again: what a restarted
    /// server does.
    pub fn restart(self) -> SqlStore {
        let SqlStore { db, empty } = self;
        drop(db);
        empty.connect()
    }
}

impl Deref for SqlStore {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

// ---- values ----------------------------------------------------------------

pub fn seq(n: i64) -> Seq {
    Seq::new(n).expect("a seq is not negative")
}

pub fn client_id(raw: &str) -> ClientId {
    ClientId::parse(raw).expect("valid client_id")
}

pub fn page_limit(n: usize) -> PageLimit {
    PageLimit::new(n).expect("a page limit of 1 to 200")
}

pub fn new_message(
    chat: &DirectChat,
    sender: &User,
    body: &str,
    client: Option<&str>,
) -> NewMessage {
    NewMessage {
        chat_id: chat.id,
        sender: sender.clone(),
        body: MessageBody::parse(body, MessageLimit::DEFAULT).expect("valid body"),
        client_id: client.map(client_id),
    }
}

/// The message of an outcome that must be [`Inserted::New`].
pub fn new_one(outcome: Inserted) -> DirectMessage {
    match outcome {
        Inserted::New(message) => message,
        Inserted::Existing(message) => panic!("expected a new message, got {message:?}"),
    }
}

pub fn seqs(messages: &[DirectMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

pub fn bodies(messages: &[DirectMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

// ---- one-line operations on any store ----------------------------------------

pub trait StoreExt: Store {
    fn user(&self, name: &str) -> User {
        self.create_user(&NewUser {
            username: Username::parse(name).expect("valid username"),
            password_hash: PasswordHash::new(format!("$argon2id$v=19$fake-hash-of-{name}")),
        })
        .expect("create user")
    }

    fn chat(&self, a: &User, b: &User) -> DirectChat {
        let pair = UserPair::new(a.id, b.id).expect("two different users");
        self.find_or_create_chat(pair).expect("create chat").0
    }

    /// One message that must be stored now, without a `client_id`.
    fn send(&self, chat: &DirectChat, sender: &User, body: &str) -> DirectMessage {
        new_one(self.insert_one(new_message(chat, sender, body, None)))
    }

    /// One message with a `client_id`, whatever becomes of it.
    fn send_keyed(&self, chat: &DirectChat, sender: &User, body: &str, client: &str) -> Inserted {
        self.insert_one(new_message(chat, sender, body, Some(client)))
    }

    fn insert_one(&self, message: NewMessage) -> Inserted {
        let mut outcomes = self.insert_messages(&[message]).expect("insert message");
        assert_eq!(outcomes.len(), 1, "one outcome per message");
        outcomes.remove(0)
    }

    fn page(&self, chat: &DirectChat, anchor: PageAnchor, limit: usize) -> MessagePage {
        self.messages_page(chat.id, anchor, page_limit(limit))
            .expect("page of messages")
    }

    /// Every message of the chat, oldest first, paged forward.
    fn all_messages(&self, chat: &DirectChat) -> Vec<DirectMessage> {
        let mut all: Vec<DirectMessage> = Vec::new();
        loop {
            let after = all.last().map_or(Seq::ZERO, |m| m.seq);
            let page = self.page(chat, PageAnchor::After(after), 200);
            if page.messages.is_empty() {
                return all;
            }
            all.extend(page.messages);
        }
    }

    fn move_to(&self, chat: &DirectChat, user: &User, kind: CursorKind, to: i64) -> CursorChange {
        self.move_cursor(chat.id, user.id, kind, seq(to))
            .expect("move cursor")
    }

    fn read_to(&self, chat: &DirectChat, user: &User, to: i64) -> CursorChange {
        self.move_to(chat, user, CursorKind::Read, to)
    }

    fn deliver_to(&self, chat: &DirectChat, user: &User, to: i64) -> CursorChange {
        self.move_to(chat, user, CursorKind::Delivered, to)
    }

    fn summary(&self, viewer: UserId, chat: ChatId) -> ChatSummary {
        self.chat_summary(viewer, chat)
            .expect("chat summary")
            .expect("the viewer is in the chat")
    }

    fn unread(&self, viewer: &User, chat: &DirectChat) -> u64 {
        self.summary(viewer.id, chat.id).unread_count
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
