//! A database and data directory that outlive server processes, for the
//! fault and storm tests that `kill -9` the real binary (or signal it, or
//! break its database) and start it again on the same data. The database is
//! SQLite in a temporary directory, or a fresh PostgreSQL database when the
//! postgres build runs with `TEST_DATABASE_URL`.

use std::time::Duration;

use chat_persistence::testing::TestDatabase;

use super::process::{ServerProcess, TEST_JWT_SECRET};

pub struct Deployment {
    pub data_dir: tempfile::TempDir,
    pub database: TestDatabase,
}

impl Deployment {
    pub fn new() -> Self {
        Self {
            data_dir: tempfile::tempdir().unwrap(),
            database: TestDatabase::create().unwrap(),
        }
    }

    /// Starts the binary on this deployment's data; `extra` adds to (or
    /// overrides) the settings below.
    pub fn start(&self, extra: &[(&str, &str)]) -> ServerProcess {
        start_with(&self.env(extra))
    }

    /// [`start`](Self::start) off the test's runtime thread (starting waits
    /// for the server's "listening" line), so the clients' tasks keep
    /// running meanwhile.
    pub async fn start_in_background(&self, extra: &[(&str, &str)]) -> ServerProcess {
        let env = self.env(extra);
        tokio::task::spawn_blocking(move || start_with(&env))
            .await
            .unwrap()
    }

    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("CHAT_DATA_DIR", self.data_dir.path().to_str().unwrap()),
            ("DATABASE_URL", self.database.url()),
            ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
            // The load is a test's, not a person's.
            ("CHAT_WS_RATE", "100000"),
            ("CHAT_WS_BURST", "100000"),
            ("CHAT_DB_POOL_SIZE", "4"),
        ];
        // Later entries win: `Command::envs` sets them in order.
        env.extend_from_slice(extra);
        env.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

fn start_with(env: &[(String, String)]) -> ServerProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start(&env).unwrap()
}

/// `kill -9`, then waits for the process to be gone.
pub fn kill_9(server: &mut ServerProcess) {
    server.signal("KILL");
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(!status.success(), "killed, not exited: {status}");
}

/// The server's logs hold no panic.
pub fn assert_no_panic_in_logs(server: &ServerProcess) {
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "the server panicked: {logs}");
}
