//! What to run: the mode and its parameters, independent of the command
//! line (tests build these directly).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each connection sends its next message when its own echo arrives.
    Closed,
    /// Each connection sends `rate` messages per second on a fixed schedule
    /// (open loop; latency counted from the scheduled send time).
    Rate,
    /// Fill each chat with `history` messages, then time how long the other
    /// participant's new connection takes to receive them all.
    History,
    /// Time `GET /api/chats/` for one user with `chats` chats.
    ChatList,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Closed => "closed",
            Mode::Rate => "rate",
            Mode::History => "history",
            Mode::ChatList => "chat-list",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub mode: Mode,
    /// Identifies this run's users and messages.
    #[serde(serialize_with = "hex")]
    pub run_id: u64,
    pub chats: usize,
    /// Distinct users behind the chats (default: two per chat).
    pub users: Option<usize>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// How long, after sending stops, missing deliveries are waited for
    /// before they count as lost.
    #[serde(serialize_with = "seconds")]
    pub drain: Duration,
    /// Messages per second per connection (rate mode).
    pub rate: f64,
    /// Messages per chat: filled before the replay (history mode, default
    /// 1000), or sent before listing (chat-list mode, default 1).
    pub history: Option<usize>,
    /// `GET /api/chats/` requests timed (chat-list mode).
    pub requests: usize,
    /// Minimum message body length (padding after the tag).
    pub body_bytes: usize,
    /// Closed loop: send the next message anyway when the echo of the last
    /// has not come after this long.
    #[serde(serialize_with = "seconds")]
    pub ack_timeout: Duration,
    /// WebSocket handshakes in flight at once.
    pub connect_concurrency: usize,
    #[serde(serialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N (0: don't bind).
    pub source_ips: usize,
    /// REST calls in flight during setup (each register/login is a
    /// deliberately slow password hash on the server).
    pub setup_concurrency: usize,
    /// Server process to sample for RSS and CPU.
    pub server_pid: Option<u32>,
    /// Client runtime threads (for the record; the caller builds the
    /// runtime).
    pub threads: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            mode: Mode::Closed,
            run_id: new_run_id(),
            chats: 10,
            users: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            drain: Duration::from_secs(3),
            rate: 10.0,
            history: None,
            requests: 200,
            body_bytes: 64,
            ack_timeout: Duration::from_secs(2),
            connect_concurrency: 256,
            connect_timeout: Duration::from_secs(30),
            source_ips: 0,
            setup_concurrency: 8,
            server_pid: None,
            threads: 2,
        }
    }
}

impl Scenario {
    pub fn connections(&self) -> usize {
        match self.mode {
            Mode::ChatList => 0,
            _ => self.chats * 2,
        }
    }

    pub fn history(&self) -> usize {
        self.history.unwrap_or(match self.mode {
            Mode::ChatList => 1,
            _ => 1000,
        })
    }

    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.chats * 2)
    }
}

/// A run id unique enough to keep runs against one server apart: the clock
/// and the process id, mixed (splitmix64) and cut to 40 bits so usernames
/// stay short.
pub fn new_run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ (u64::from(std::process::id()) << 40);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 0xff_ffff_ffff
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:x}"))
}
