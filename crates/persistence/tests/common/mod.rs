//! Helpers shared by the repository tests: a fresh database per test and a
//! few one-line ways to make users, chats and messages.

#![allow(dead_code)] // not every test binary uses every helper

use std::ops::Deref;

use chat_domain::chat::{
    ChatRepository, DirectChat, DirectMessage, MessageBody, MessageLimit, MessageRepository,
    NewMessage, UserPair,
};
use chat_domain::user::{NewUser, PasswordHash, User, UserRepository, Username};
use chat_persistence::testing::TestDatabase;
use chat_persistence::{Backend, Database};
use diesel::sql_types::BigInt;
use diesel::{Connection as _, QueryableByName, RunQueryDsl as _};

/// A migrated, empty database of its own. Fields drop in order: the pool
/// closes before the database is removed.
pub struct TestDb {
    db: Database,
    handle: TestDatabase,
}

/// A fresh database: SQLite by default, PostgreSQL in the `postgres` build
/// when `TEST_DATABASE_URL` is set.
pub fn test_db() -> TestDb {
    let handle = TestDatabase::create().expect("create test database");
    let db = handle.connect().expect("connect to test database");
    TestDb { db, handle }
}

impl Deref for TestDb {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl TestDb {
    pub fn url(&self) -> &str {
        self.handle.url()
    }

    pub fn user(&self, name: &str) -> User {
        self.create_user(&NewUser {
            username: Username::parse(name).expect("valid username"),
            password_hash: PasswordHash::new(format!("$argon2id$v=19$fake-hash-of-{name}")),
        })
        .expect("create user")
    }

    pub fn chat(&self, a: &User, b: &User) -> DirectChat {
        let pair = UserPair::new(a.id, b.id).expect("two different users");
        self.find_or_create_chat(pair).expect("create chat").0
    }

    pub fn send(&self, chat: &DirectChat, sender: &User, body: &str) -> DirectMessage {
        self.insert_message(&NewMessage {
            chat_id: chat.id,
            sender: sender.clone(),
            body: MessageBody::parse(body, MessageLimit::DEFAULT).expect("valid body"),
        })
        .expect("insert message")
    }

    /// `SELECT COUNT(*) FROM <table>`, on a connection of its own: for facts
    /// the ports do not expose, such as participant rows.
    pub fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let count: Count = match self.handle.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(self.url()).expect("connect");
                diesel::sql_query(sql).get_result(&mut conn).expect("count")
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let mut conn = diesel::PgConnection::establish(self.url()).expect("connect");
                diesel::sql_query(sql).get_result(&mut conn).expect("count")
            }
            #[allow(unreachable_patterns)]
            other => panic!("this build has no {other}"),
        };
        count.n
    }
}
