//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::report::Expectation;
use crate::scenario::{new_run_id, Mode, Scenario};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load generator for the chat API: connect times, delivery accounting (lost, duplicated, \
             out of order), end-to-end latency, server RSS and CPU. Prints a table, then one JSON line.",
    after_help = "The server and this tool share the machine: --threads 2 (the default) on 2 cores \
                  competes with the server; the report gives both processes' CPU."
)]
pub struct Cli {
    /// The server's base URL. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,

    /// Permit a non-loopback target.
    #[arg(long)]
    pub allow_remote: bool,

    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Chats (two connections each); for chat-list, the user's chat count.
    #[arg(long, default_value_t = 10)]
    pub chats: usize,

    /// Distinct users to pair into the chats (default: two per chat). Fewer
    /// users make setup faster: each costs a password hash on the server.
    #[arg(long)]
    pub users: Option<usize>,

    /// Measured time (closed and rate modes).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Traffic before the measurement, excluded from rates and latencies.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// After sending stops, how long missing deliveries are awaited before
    /// they count as lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// Messages per second per connection (rate mode).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Messages per chat (history: default 1000; chat-list: default 1).
    #[arg(long)]
    pub history: Option<usize>,

    /// Timed GET /api/chats/ requests (chat-list mode).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,

    /// Minimum message body length in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,

    /// Closed loop: send the next message anyway after this long without
    /// the echo.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,

    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Bind client sockets to 127.0.0.1..=127.0.0.N in turn (needed beyond
    /// about 28,000 connections to one port). 0: chosen automatically.
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,

    /// REST calls in flight during setup.
    #[arg(long, default_value_t = 8)]
    pub setup_concurrency: usize,

    /// The server's process id, to sample its RSS and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Client runtime threads. The server shares the machine's cores.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// A name for the scenario (e.g. `closed-500`), carried into the JSON.
    #[arg(long)]
    pub name: Option<String>,

    /// A label (e.g. the backend), carried into the JSON.
    #[arg(long)]
    pub label: Option<String>,

    /// A target to check, e.g. `delivered_per_s>=27000` or `lost==0`
    /// (repeatable). Reported, never fatal.
    #[arg(long = "expect", value_name = "METRIC OP N")]
    pub expect: Vec<Expectation>,

    /// Print the summary table of a file of JSON report lines, and exit.
    #[arg(long, value_name = "FILE")]
    pub summarize: Option<PathBuf>,
}

impl Cli {
    pub fn scenario(&self) -> Scenario {
        Scenario {
            mode: self.mode,
            run_id: new_run_id(),
            chats: self.chats,
            users: self.users,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            rate: self.rate,
            history: self.history,
            requests: self.requests,
            body_bytes: self.body_bytes,
            ack_timeout: self.ack_timeout,
            connect_concurrency: self.connect_concurrency,
            connect_timeout: self.connect_timeout,
            source_ips: self.source_ips,
            setup_concurrency: self.setup_concurrency,
            server_pid: self.server_pid,
            threads: self.threads.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_maps_onto_a_scenario() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "--mode",
            "rate",
            "--chats",
            "1000",
            "--users",
            "101",
            "--rate",
            "10",
            "--duration",
            "10s",
            "--warmup",
            "500ms",
            "--expect",
            "latency_p99_ms<=25",
            "--expect",
            "lost==0",
        ])
        .unwrap();
        let s = cli.scenario();
        assert_eq!(
            (s.mode, s.chats, s.users(), s.rate),
            (Mode::Rate, 1000, 101, 10.0)
        );
        assert_eq!(s.warmup, Duration::from_millis(500));
        assert_eq!(s.connections(), 2000);
        assert_eq!(cli.expect.len(), 2);
        assert!(Cli::try_parse_from(["chat-bench", "--mode", "fast"]).is_err());
        assert!(Cli::try_parse_from(["chat-bench", "--expect", "p99"]).is_err());
    }
}
