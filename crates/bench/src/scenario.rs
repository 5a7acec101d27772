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
    /// Protocol v2 (`/ws/v2/`): the closed loop, the sender's `ack` in the
    /// echo's place. One user per socket, so each socket carries one chat.
    V2Closed,
    /// Protocol v2: the open loop of `rate`, optionally with every socket
    /// also sending `typing` every `typing_interval`.
    V2Rate,
    /// Protocol v2: connect every socket and note its chat's head, close,
    /// store `missed` messages per chat over REST, reconnect every socket at
    /// once and time until each has caught up (`hello` + `history after=`).
    V2Reconnect,
    /// Protocol v2: fill one chat with `history` messages, then time
    /// `GET /api/chats/<id>/messages/?before=<seq>` at random depths.
    V2Paging,
}

/// Which socket protocol a mode speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/ws/chat/<id>/`: `{"body"}` in, `{"message"}` out, history on connect.
    Seed,
    /// `/ws/v2/`: typed frames, one socket for all of a user's chats.
    V2,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Closed => "closed",
            Mode::Rate => "rate",
            Mode::History => "history",
            Mode::ChatList => "chat-list",
            Mode::V2Closed => "v2-closed",
            Mode::V2Rate => "v2-rate",
            Mode::V2Reconnect => "v2-reconnect",
            Mode::V2Paging => "v2-paging",
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
    /// 1000), sent before listing (chat-list mode, default 1), held before
    /// the disconnect (v2-reconnect, default 0), or filled before paging
    /// (v2-paging, default 1,000,000).
    pub history: Option<usize>,
    /// History mode: after the fill, both participants of every chat
    /// connect at once and each replays the whole history (its own
    /// messages too), as a chat's two people opening it do; otherwise only
    /// the second participant does.
    pub replay_both: bool,
    /// v2 live modes: each socket also sends `typing active:true` this
    /// often (`None`: never).
    #[serde(serialize_with = "opt_seconds")]
    pub typing_interval: Option<Duration>,
    /// v2-reconnect: messages stored per chat over REST while its sockets
    /// are away, split between the two participants.
    pub missed: usize,
    /// Messages per page: v2-paging's `GET` (default 50), v2-reconnect's
    /// `history` requests (default 200, the most the API serves).
    pub page_limit: Option<usize>,
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
            replay_both: false,
            typing_interval: None,
            missed: 20,
            page_limit: None,
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

impl Mode {
    pub fn protocol(self) -> Protocol {
        match self {
            Mode::V2Closed | Mode::V2Rate | Mode::V2Reconnect | Mode::V2Paging => Protocol::V2,
            Mode::Closed | Mode::Rate | Mode::History | Mode::ChatList => Protocol::Seed,
        }
    }

    /// Closed loop or open loop over either protocol.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Mode::Closed | Mode::Rate | Mode::V2Closed | Mode::V2Rate
        )
    }

    /// Sending on a fixed schedule (open loop).
    pub fn is_rate(self) -> bool {
        matches!(self, Mode::Rate | Mode::V2Rate)
    }
}

impl Scenario {
    pub fn connections(&self) -> usize {
        match self.mode {
            Mode::ChatList => 0,
            // The filler's socket; the GETs use one HTTP connection.
            Mode::V2Paging => 1,
            _ => self.chats * 2,
        }
    }

    pub fn history(&self) -> usize {
        self.history.unwrap_or(match self.mode {
            Mode::ChatList => 1,
            Mode::V2Reconnect => 0,
            Mode::V2Paging => 1_000_000,
            _ => 1000,
        })
    }

    pub fn page_limit(&self) -> usize {
        self.page_limit.unwrap_or(match self.mode {
            Mode::V2Paging => 50,
            _ => 200,
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

fn opt_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:x}"))
}
