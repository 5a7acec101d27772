//! The real `chat-server` binary as a child process, for tests that signal,
//! kill and restart it. Its JSON logs are captured; the port it listens on
//! is read from its "listening" line.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TEST_JWT_SECRET: &str = "process test secret of at least 32 bytes";

pub struct ServerProcess {
    child: Child,
    pub port: u16,
    /// Where `/metrics` is served by itself, when it is.
    pub metrics_port: Option<u16>,
    logs: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts the binary with JSON logs on a random port and waits for it to
    /// listen. `env` adds to (or overrides) the defaults; the caller names
    /// the database (`DATABASE_URL`) and data directory (`CHAT_DATA_DIR`).
    /// `Err` holds the logs when the server exits instead.
    pub fn start(env: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CHAT_ADDR", "127.0.0.1:0")
            // Never the fixed default: several servers may run at once.
            .env("CHAT_METRICS_ADDR", "127.0.0.1:0")
            .env("CHAT_LOG_FORMAT", "json")
            .env("CHAT_WORKERS", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start chat-server: {e}"))?;
        let logs = Arc::new(Mutex::new(String::new()));
        let outputs: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().ok_or("no stdout")?),
            Box::new(child.stderr.take().ok_or("no stderr")?),
        ];
        for output in outputs {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    let mut logs = logs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let mut server = Self {
            child,
            port: 0,
            metrics_port: None,
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = listening_port(&server.logs(), "listening") {
                server.port = port;
                // Logged before "listening" when there is one.
                server.metrics_port = listening_port(&server.logs(), "metrics listening");
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers drain
                return Err(format!("exited with {status}: {}", server.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("did not start within 30 s: {}", server.logs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn child_is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.child.id()).expect("the server's /proc status")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` now, in KiB (from /proc); `None` once
/// it is gone.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The port of the first JSON log line whose message is `message`.
fn listening_port(logs: &str, message: &str) -> Option<u16> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["fields"]["message"] == message)
        .and_then(|entry| entry["fields"]["port"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
}
