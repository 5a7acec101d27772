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
//! checkpoint every [`INTERVAL`]: it copies what has been committed and
//! never waits for a lock (it takes SQLite's checkpoint lock, which no
//! reader or writer needs; a writer's own checkpoint that finds it taken is
//! skipped until its next commit).
//! What it cannot do is rewind the `-wal` file: SQLite starts the log over
//! only when a transaction begins after a checkpoint that copied all of it,
//! and under continuous writes this thread is always a few commits behind.
//! The connections therefore keep an automatic checkpoint as a backstop, at
//! [`BACKSTOP_PAGES`] instead of SQLite's 1,000: by then nearly all of the
//! log has been copied, so the writer's checkpoint is short and the log
//! starts over from the beginning of the file, which stays at about 40 MiB
//! (it measured 41-44 MB under 20,000 msg/s) as long as no reader holds a
//! snapshot for long; reads here are single statements.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, SqliteConnection};

/// How often the checkpointer copies the log into the database file.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// The log size (pages of 4 KiB) at which a committing connection runs a
/// checkpoint itself; see the module's comment.
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// Why the checkpointer could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("the checkpointer's connection: {0}")]
    Connect(#[from] ConnectionError),
    #[error("the checkpointer's connection: {0}")]
    Configure(#[from] diesel::result::Error),
    #[error("the checkpointer's thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The running checkpointer; dropping it (with the last clone of its
/// `Database`) stops the thread and closes its connection.
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`, which exists and is in
    /// WAL mode, every [`INTERVAL`]. The connection is opened here, so a
    /// database the checkpointer cannot reach fails the caller's connect
    /// instead of leaving every checkpoint to the writer.
    pub(crate) fn start(path: &str, busy_timeout_ms: u32) -> Result<Self, StartError> {
        Self::start_every(path, busy_timeout_ms, INTERVAL)
    }

    fn start_every(
        path: &str,
        busy_timeout_ms: u32,
        interval: Duration,
    ) -> Result<Self, StartError> {
        let mut conn = SqliteConnection::establish(path)?;
        conn.batch_execute(&format!("PRAGMA busy_timeout = {busy_timeout_ms}"))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&mut conn, interval, &stopping))?;
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

fn run(conn: &mut SqliteConnection, interval: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut failing = false;
    loop {
        let guard = stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, interval, |stopped| !*stopped)
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
            // Said once per outage, not every tenth of a second; meanwhile
            // the backstop still checkpoints in the committing connection.
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
    /// `immutable` URI flag reads the main file only, and without locks, so
    /// a read that meets a checkpoint half-way may fail: `None`, look again.
    fn rows_in_main_file(path: &std::path::Path) -> Option<i64> {
        let url = format!("file:{}?immutable=1", path.display());
        let mut conn = SqliteConnection::establish(&url).ok()?;
        diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result::<Count>(&mut conn)
            .ok()
            .map(|count| count.n)
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
        let mut seen = None;
        for _ in 0..200 {
            seen = rows_in_main_file(&path);
            if seen == Some(3) {
                break;
            }
            std::thread::sleep(INTERVAL / 4);
        }
        assert_eq!(
            seen,
            Some(3),
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
        assert_eq!(rows_in_main_file(&path), Some(0));
    }

    #[test]
    fn dropping_it_wakes_the_thread_instead_of_waiting_out_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let _conn = writer(&path);
        let interval = Duration::from_secs(600);
        let checkpointer =
            Checkpointer::start_every(path.to_str().unwrap(), 1000, interval).unwrap();
        // Let the thread reach its wait, so the drop has to wake it.
        std::thread::sleep(Duration::from_millis(200));
        let dropping = std::time::Instant::now();
        drop(checkpointer);
        // A liveness bound, not a speed claim: without the wake the drop
        // would take the whole interval, ten minutes.
        assert!(
            dropping.elapsed() < interval / 10,
            "the drop waited out the interval: {:?}",
            dropping.elapsed()
        );
    }
}
