//! SQLite's checkpoints, off the writer's thread.
//!
//! In WAL mode every commit appends the pages it changed to the `-wal`
//! file; a checkpoint copies them back into the database file and syncs it.
//! Left to SQLite (`wal_autocheckpoint`), the connection whose commit
//! crosses the threshold runs the checkpoint inside that commit: here that
//! is always the message writer, the one thread every message goes
//! through. Profiled under 20,000 msg/s offered (perf, the writer thread
//! only), checkpoints were 28% of its CPU time, plus the waits for their two
//! fsyncs, and the writer fell behind.
//!
//! So a thread of its own, with its own connection, runs a `PASSIVE`
//! checkpoint every [`INTERVAL`]: it copies what has been committed without
//! taking any lock a writer or reader needs, and it never waits for them.
//! What it cannot do is rewind the `-wal` file: SQLite starts the log over
//! only when a transaction begins after a checkpoint that copied all of it,
//! and under continuous writes this thread is always a few commits behind.
//! The connections therefore keep an automatic checkpoint as a backstop, at
//! [`BACKSTOP_PAGES`] instead of SQLite's 1,000: by then nearly all of the
//! log has been copied, so the writer's checkpoint is short, the log
//! starts over, and the file stays bounded (about 40 MiB).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};

/// How often the checkpointer copies the log into the database file.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// The log size (pages of 4 KiB) at which a committing connection runs a
/// checkpoint itself; see the module's comment.
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// The running checkpointer; dropping it (with the last clone of its
/// `Database`) stops the thread and closes its connection.
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`, which exists and is in
    /// WAL mode.
    pub(crate) fn start(path: &str, busy_timeout_ms: u32) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let path = path.to_owned();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&path, busy_timeout_ms, &stopping))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(path: &str, busy_timeout_ms: u32, stop: &(Mutex<bool>, Condvar)) {
    let opened = SqliteConnection::establish(path)
        .map_err(|e| e.to_string())
        .and_then(|mut conn| {
            conn.batch_execute(&format!("PRAGMA busy_timeout = {busy_timeout_ms}"))
                .map(|()| conn)
                .map_err(|e| e.to_string())
        });
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(error) => {
            // The pool's connections still checkpoint, at the backstop.
            tracing::warn!(%error, "the SQLite checkpointer cannot connect; checkpoints stay with the writer");
            return;
        }
    };
    let (stopped, wake) = stop;
    let mut failing = false;
    loop {
        let guard = stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, INTERVAL, |stopped| !*stopped)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *guard {
            break;
        }
        drop(guard);
        // PASSIVE: copy what no reader still needs, wait for no one.
        match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("SQLite checkpoints work again");
            }
            Ok(()) => {}
            // Said once per outage, not every tenth of a second.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "an SQLite checkpoint failed; retrying");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// What the database file itself holds, ignoring the log: SQLite's
    /// `immutable` URI flag reads the main file only.
    fn rows_in_main_file(path: &std::path::Path) -> i64 {
        let url = format!("file:{}?immutable=1", path.display());
        let mut conn = SqliteConnection::establish(&url).unwrap();
        diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n
    }

    fn writer(path: &std::path::Path) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        // The table before WAL mode, so the database file has it.
        conn.batch_execute(&format!(
            "CREATE TABLE t (x INTEGER);
             PRAGMA journal_mode = WAL;
             PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES};"
        ))
        .unwrap();
        conn
    }

    #[test]
    fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let mut conn = writer(&path);
        let checkpointer = Checkpointer::start(path.to_str().unwrap(), 1000).unwrap();
        conn.batch_execute("INSERT INTO t VALUES (1), (2), (3)")
            .unwrap();
        // Far below the backstop: only the checkpointer copies these.
        let mut seen = 0;
        for _ in 0..200 {
            seen = rows_in_main_file(&path);
            if seen == 3 {
                break;
            }
            std::thread::sleep(INTERVAL / 4);
        }
        assert_eq!(
            seen, 3,
            "the checkpointer never copied the commit into the file"
        );
        drop(checkpointer);
    }

    #[test]
    fn without_it_the_commits_stay_in_the_log() {
        // The control for the test above: the same commit, no checkpointer.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let mut conn = writer(&path);
        conn.batch_execute("INSERT INTO t VALUES (1), (2), (3)")
            .unwrap();
        std::thread::sleep(INTERVAL * 3);
        assert_eq!(rows_in_main_file(&path), 0);
    }

    #[test]
    fn dropping_it_stops_the_thread_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let _conn = writer(&path);
        let checkpointer = Checkpointer::start(path.to_str().unwrap(), 1000).unwrap();
        // The join in `drop` returns: the condvar wakes the thread at once
        // (a hang here fails the test by its timeout, not by a clock).
        drop(checkpointer);
    }
}
