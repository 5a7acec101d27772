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

    /// A second instance of a cluster: each chat's second participant
    /// connects there (the first to --url), so every message crosses
    /// between instances. REST setup goes to --url.
    #[arg(long)]
    pub second_url: Option<String>,

    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Chats (two connections each); for chat-list, the user's chat count;
    /// v2-paging always uses one chat.
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

    /// Messages per chat (history: default 1000; chat-list: default 1;
    /// v2-reconnect: held before the disconnect, default 0; v2-paging:
    /// default 1000000).
    #[arg(long)]
    pub history: Option<usize>,

    /// History mode: both participants of every chat connect and replay
    /// the whole history at once (default: only the second).
    #[arg(long)]
    pub replay_both: bool,

    /// v2 live modes: every socket also sends `typing active:true` this
    /// often (e.g. 3s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub typing_interval: Option<Duration>,

    /// v2-reconnect: messages stored per chat over REST while its sockets
    /// are away (split between the participants).
    #[arg(long, default_value_t = 20)]
    pub missed: usize,

    /// Messages per page: v2-paging's GET (default 50), v2-reconnect's
    /// history requests (default 200).
    #[arg(long)]
    pub page_limit: Option<usize>,

    /// Timed GET requests (chat-list: /api/chats/; v2-paging: a page).
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
    /// Also `METRIC OP FACTORx@SCENARIO`: relative to the same figure of
    /// SCENARIO with the same --label in the --reference file, e.g.
    /// `latency_p99_ms<=1.2x@v2-rate-1000x10`; `@SCENARIO:LABEL` for
    /// another label's run, e.g. `replay_p99_ms<=2x@history-200:relay`
    /// (on the relay's own run such a target is only shown).
    #[arg(long = "expect", value_name = "METRIC OP N")]
    pub expect: Vec<Expectation>,

    /// A figure to carry into the report's checks and the summary without
    /// a target (repeatable).
    #[arg(long = "show", value_name = "METRIC")]
    pub show: Vec<String>,

    /// Earlier report lines (a results file of `make bench`) for relative
    /// targets.
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,

    /// Print the summary table of a file of JSON report lines, and exit.
    #[arg(long, value_name = "FILE")]
    pub summarize: Option<PathBuf>,

    /// Draw the curves of a file of JSON report lines (runs named
    /// `curve-<curve>-<x>`, crates/bench/curves.sh) as PNGs into
    /// --plot-dir, and exit.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Where --plot writes its PNGs.
    #[arg(long, value_name = "DIR", default_value = "docs/performance")]
    pub plot_dir: PathBuf,
}

impl Cli {
    pub fn scenario(&self) -> Scenario {
        Scenario {
            mode: self.mode,
            run_id: new_run_id(),
            chats: if self.mode == Mode::V2Paging {
                1
            } else {
                self.chats
            },
            users: self.users,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            rate: self.rate,
            history: self.history,
            replay_both: self.replay_both,
            typing_interval: self.typing_interval,
            missed: self.missed,
            page_limit: self.page_limit,
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

    /// The `--expect` targets, then the `--show` figures.
    pub fn expectations(&self) -> Vec<Expectation> {
        let shown = self.show.iter().map(|m| Expectation::show(m));
        self.expect.iter().cloned().chain(shown).collect()
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

    #[test]
    fn the_v2_modes_and_their_options_parse() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "--mode",
            "v2-rate",
            "--chats",
            "1000",
            "--typing-interval",
            "3s",
            "--expect",
            "latency_p99_ms<=1.2x@v2-rate-1000x10",
            "--show",
            "latency_p99_ms",
            "--reference",
            "results.jsonl",
        ])
        .unwrap();
        let s = cli.scenario();
        assert_eq!(
            (s.mode, s.users(), s.connections()),
            (Mode::V2Rate, 2000, 2000)
        );
        assert_eq!(s.typing_interval, Some(Duration::from_secs(3)));
        let targets = cli.expectations();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].relative_to.as_deref(), Some("v2-rate-1000x10"));
        assert!(targets[1].is_show());
        for (mode, name) in [
            (Mode::V2Closed, "v2-closed"),
            (Mode::V2Reconnect, "v2-reconnect"),
            (Mode::V2Paging, "v2-paging"),
        ] {
            let cli = Cli::try_parse_from(["chat-bench", "--mode", name]).unwrap();
            assert_eq!(cli.mode, mode);
            assert_eq!(mode.to_string(), name);
            assert_eq!(serde_json::to_value(mode).unwrap(), name);
        }
        let paging = Cli::try_parse_from(["chat-bench", "--mode", "v2-paging"])
            .unwrap()
            .scenario();
        assert_eq!(
            (
                paging.chats,
                paging.users(),
                paging.history(),
                paging.page_limit()
            ),
            (1, 2, 1_000_000, 50)
        );
        let reconnect = Cli::try_parse_from(["chat-bench", "--mode", "v2-reconnect"])
            .unwrap()
            .scenario();
        assert_eq!(
            (
                reconnect.missed,
                reconnect.history(),
                reconnect.page_limit()
            ),
            (20, 0, 200)
        );
    }
}
