//! A run's figures: a table for people, one JSON line for scripts, a flat
//! list of named metrics, and the `--expect` checks against targets.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::accounting::{Percentiles, Tally};
use crate::conn::ConnectError;
use crate::resources::ServerResources;
use crate::scenario::{Mode, Protocol, Scenario};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectStats {
    pub attempted: usize,
    pub failed: usize,
    /// TCP connect to `101`, per connection.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// From the first connect started to the last finished.
    pub total_s: f64,
    pub first_error: Option<String>,
}

impl ConnectStats {
    pub fn new<T>(results: &[Result<T, ConnectError>], times_us: &[u32], total: Duration) -> Self {
        let percentiles = Percentiles::of_us(times_us.iter().copied());
        Self {
            attempted: results.len(),
            failed: results.iter().filter(|r| r.is_err()).count(),
            p50_ms: percentiles.map(|p| p.p50),
            p99_ms: percentiles.map(|p| p.p99),
            max_ms: percentiles.map(|p| p.max),
            total_s: total.as_secs_f64(),
            first_error: results
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(ToString::to_string),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub window_s: f64,
    /// First copies received by the other participant (not the sender's
    /// echo) per second of the window.
    pub delivered_per_s: f64,
    /// Every message frame received, echoes included, per second.
    pub frames_per_s: f64,
    /// Rate mode: messages per second the schedule asked for.
    pub offered_per_s: Option<f64>,
    /// Rate mode: delivered / offered (1.0: keeps up).
    pub delivered_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryStats {
    pub messages_per_chat: u64,
    pub chats: usize,
    pub fill_seconds: f64,
    /// From the first replaying socket's connect to the last one's completion.
    pub replay_seconds: f64,
    /// Per replaying socket: start of the connect to the last history frame.
    pub replay_ms: Option<Percentiles>,
    pub complete: usize,
    pub incomplete: usize,
    pub frames_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatListStats {
    pub chats: usize,
    pub messages_per_chat: usize,
    pub requests: usize,
    /// Replies that were not `200` with the expected number of chats.
    pub errors: usize,
    pub response_bytes: usize,
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TypingStats {
    /// How often each socket sent `typing active:true`.
    pub interval_s: f64,
    pub sent: u64,
    /// `typing` events received (the server's start and stop of each).
    pub received: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatchupStats {
    pub chats: usize,
    /// Sockets that reconnected (two per chat).
    pub sockets: usize,
    /// Messages per chat before the disconnect (held by every socket).
    pub held_per_chat: u64,
    /// Messages per chat stored while the sockets were away.
    pub missed_per_chat: u64,
    pub fill_s: f64,
    /// Storing the missed messages over REST.
    pub post_s: f64,
    /// Missed-message POSTs not answered `201`.
    pub post_errors: usize,
    /// Repeated POSTs (same `client_id`) not answered `200` with the
    /// original message.
    pub repost_errors: usize,
    /// From the first reconnect to the last socket holding everything.
    pub catchup_s: f64,
    /// Per socket: start of its connect to holding everything.
    pub catchup_ms: Option<Percentiles>,
    pub complete: usize,
    pub incomplete: usize,
    /// Message objects received after `hello` (history and live), in all
    /// and per socket.
    pub messages: u64,
    pub messages_max: u64,
    pub messages_min: u64,
    /// Frames received per socket, `hello` included.
    pub frames: u64,
    pub frames_max: u64,
    pub history_requests: u64,
    /// Messages at or below the head a socket held before: more than asked.
    pub stale: u64,
    /// Seqs never received by sockets that did not finish.
    pub seq_gaps: u64,
    /// Sockets whose `hello` gave another `head_seq` than held + stored.
    pub head_mismatches: usize,
    /// `error` answers to `history` requests.
    pub error_answers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PagingStats {
    /// The chat's `head_seq` after the fill.
    pub messages: u64,
    pub fill_s: f64,
    pub fill_per_s: f64,
    pub limit: usize,
    pub requests: usize,
    /// `before` was drawn from this range.
    pub lowest_before: u64,
    pub highest_before: u64,
    /// Replies that were not the exact page asked for.
    pub errors: usize,
    pub first_error: Option<String>,
    pub response_bytes: usize,
    pub latency_ms: Option<Percentiles>,
}

/// `metric OP value`, e.g. `delivered_per_s>=27000`; or relative to the same
/// figure of another scenario of the same label in the same run,
/// `metric OP FACTORx@SCENARIO`, e.g. `latency_p99_ms<=1.2x@v2-rate-1000x10`
/// (the same label's run of SCENARIO), or `@SCENARIO:LABEL` for another
/// label's run, e.g. `replay_p99_ms<=2x@history-200:relay`;
/// or, with op `show`, a figure carried to the summary without a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    pub metric: String,
    pub op: String,
    /// The bound, or for a relative target the factor.
    pub target: f64,
    /// The scenario whose figure the target is relative to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<String>,
}

impl std::str::FromStr for Expectation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        for op in [">=", "<=", "==", ">", "<"] {
            if let Some((metric, value)) = s.split_once(op) {
                let (factor, relative_to) = match value.split_once('@') {
                    Some((factor, scenario)) if !scenario.trim().is_empty() => {
                        let factor = factor.trim();
                        let factor = factor.strip_suffix('x').unwrap_or(factor);
                        (factor, Some(scenario.trim().to_owned()))
                    }
                    Some(_) => return Err(format!("{s:?}: no scenario after @")),
                    None => (value, None),
                };
                let target = factor
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?}: {factor:?} is not a number"))?;
                return Ok(Self {
                    metric: metric.trim().to_owned(),
                    op: op.to_owned(),
                    target,
                    relative_to,
                });
            }
        }
        Err(format!(
            "{s:?}: expected METRIC>=N, METRIC<=N, METRIC==N, < or >, or METRIC>=Fx@SCENARIO"
        ))
    }
}

/// The targets as they apply to the run labelled `label`: one set against
/// that same label's run (`2x@history-200:relay` on the relay's own run)
/// has nothing else to compare with, so it is only shown.
pub fn for_label(expectations: Vec<Expectation>, label: &str) -> Vec<Expectation> {
    expectations
        .into_iter()
        .map(|e| match &e.relative_to {
            Some(reference) if reference.rsplit_once(':').is_some_and(|(_, l)| l == label) => {
                Expectation::show(&e.metric)
            }
            _ => e,
        })
        .collect()
}

impl Expectation {
    /// A figure reported without a target (`--show`).
    pub fn show(metric: &str) -> Self {
        Self {
            metric: metric.trim().to_owned(),
            op: "show".to_owned(),
            target: 0.0,
            relative_to: None,
        }
    }

    pub fn is_show(&self) -> bool {
        self.op == "show"
    }

    pub fn holds(&self, value: f64) -> bool {
        match self.op.as_str() {
            ">=" => value >= self.target,
            "<=" => value <= self.target,
            ">" => value > self.target,
            "<" => value < self.target,
            "show" => true,
            _ => value == self.target,
        }
    }

    /// `true` when larger values are better (for ratios between runs).
    pub fn higher_is_better(&self) -> Option<bool> {
        match self.op.as_str() {
            ">=" | ">" => Some(true),
            "<=" | "<" => Some(false),
            _ => None,
        }
    }

    /// The target as the summary's target column shows it.
    pub fn target_text(&self) -> String {
        match (&self.relative_to, self.is_show()) {
            (_, true) => "-".to_owned(),
            (Some(scenario), _) => format!("{} {}x {scenario}", self.op, number(self.target)),
            (None, _) => format!("{} {}", self.op, number(self.target)),
        }
    }
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_show() {
            return f.write_str(&self.metric);
        }
        write!(f, "{} {}", self.metric, self.target_text())
    }
}

/// A target and how the run did against it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    #[serde(flatten)]
    pub expectation: Expectation,
    /// `None` when the run has no such figure.
    pub value: Option<f64>,
    /// A relative target: the other scenario's figure, and value / it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name (e.g. `closed-500`), for summaries.
    pub name: Option<String>,
    /// A free label (e.g. the backend), for summaries.
    pub label: Option<String>,
    pub target: String,
    pub scenario: Scenario,
    pub setup_s: f64,
    pub users: usize,
    pub connect: Option<ConnectStats>,
    pub delivery: Option<Tally>,
    pub ack_timeouts: u64,
    pub disconnects: u64,
    /// How long after sending stopped the last owed delivery arrived (or
    /// the drain limit).
    pub drain_s: Option<f64>,
    pub throughput: Option<Throughput>,
    /// End to end, at the receiving (other) participant.
    pub latency_ms: Option<Percentiles>,
    /// Send to own echo, at the sender.
    pub echo_ms: Option<Percentiles>,
    /// Rate mode: how late the client sent behind its schedule (when this
    /// grows, the client, not the server, is the bottleneck).
    pub send_lag_ms: Option<Percentiles>,
    pub history: Option<HistoryStats>,
    pub chat_list: Option<ChatListStats>,
    pub typing: Option<TypingStats>,
    pub catchup: Option<CatchupStats>,
    pub paging: Option<PagingStats>,
    pub server: Option<ServerResources>,
    pub client_cpu_percent: Option<f64>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(scenario: &Scenario, target: &str) -> Self {
        Self {
            name: None,
            label: None,
            target: target.to_owned(),
            scenario: scenario.clone(),
            setup_s: 0.0,
            users: 0,
            connect: None,
            delivery: None,
            ack_timeouts: 0,
            disconnects: 0,
            drain_s: None,
            throughput: None,
            latency_ms: None,
            echo_ms: None,
            send_lag_ms: None,
            history: None,
            chat_list: None,
            typing: None,
            catchup: None,
            paging: None,
            server: None,
            client_cpu_percent: None,
            checks: Vec::new(),
        }
    }

    /// Every figure under a flat name, for `--expect`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = Vec::new();
        let mut put = |name: &str, value: Option<f64>| {
            if let Some(value) = value {
                m.push((name.to_owned(), value));
            }
        };
        put("setup_s", Some(self.setup_s));
        if let Some(c) = &self.connect {
            put("connect_failed", Some(c.failed as f64));
            put("connect_p50_ms", c.p50_ms);
            put("connect_p99_ms", c.p99_ms);
            put("connect_max_ms", c.max_ms);
            put("connect_total_s", Some(c.total_s));
        }
        if let Some(d) = &self.delivery {
            for (name, value) in [
                ("sent", d.sent),
                ("expected", d.expected),
                ("delivered", d.delivered),
                ("lost", d.lost),
                ("duplicated", d.duplicated),
                ("out_of_order", d.out_of_order),
                ("unexpected", d.unexpected),
                ("error_frames", d.error_frames),
                ("seq_disorder", d.seq_disorder),
                ("bad_acks", d.bad_acks),
                ("bad_client_ids", d.bad_client_ids),
                ("events", d.events),
            ] {
                put(name, Some(value as f64));
            }
            put("disconnects", Some(self.disconnects as f64));
            put("ack_timeouts", Some(self.ack_timeouts as f64));
        }
        if let Some(t) = &self.throughput {
            put("delivered_per_s", Some(t.delivered_per_s));
            put("frames_per_s", Some(t.frames_per_s));
            put("offered_per_s", t.offered_per_s);
            put("delivered_ratio", t.delivered_ratio);
        }
        for (prefix, p) in [
            ("latency", &self.latency_ms),
            ("echo", &self.echo_ms),
            ("send_lag", &self.send_lag_ms),
        ] {
            if let Some(p) = p {
                put(&format!("{prefix}_p50_ms"), Some(p.p50));
                put(&format!("{prefix}_p90_ms"), Some(p.p90));
                put(&format!("{prefix}_p99_ms"), Some(p.p99));
                put(&format!("{prefix}_p999_ms"), Some(p.p999));
                put(&format!("{prefix}_max_ms"), Some(p.max));
            }
        }
        if let Some(h) = &self.history {
            put("replay_incomplete", Some(h.incomplete as f64));
            put("replay_frames_per_s", Some(h.frames_per_s));
            if let Some(p) = &h.replay_ms {
                put("replay_p50_ms", Some(p.p50));
                put("replay_p99_ms", Some(p.p99));
                put("replay_max_ms", Some(p.max));
            }
        }
        if let Some(l) = &self.chat_list {
            put("list_errors", Some(l.errors as f64));
            if let Some(p) = &l.latency_ms {
                put("list_p50_ms", Some(p.p50));
                put("list_p90_ms", Some(p.p90));
                put("list_p99_ms", Some(p.p99));
                put("list_max_ms", Some(p.max));
            }
        }
        if let Some(t) = &self.typing {
            put("typing_sent", Some(t.sent as f64));
            put("typing_events", Some(t.received as f64));
        }
        if let Some(c) = &self.catchup {
            put("catchup_s", Some(c.catchup_s));
            if let Some(p) = &c.catchup_ms {
                put("catchup_p50_ms", Some(p.p50));
                put("catchup_p99_ms", Some(p.p99));
                put("catchup_max_ms", Some(p.max));
            }
            for (name, value) in [
                ("catchup_incomplete", c.incomplete as f64),
                ("catchup_messages", c.messages as f64),
                ("catchup_messages_max", c.messages_max as f64),
                ("catchup_messages_min", c.messages_min as f64),
                ("catchup_frames_max", c.frames_max as f64),
                ("catchup_history_requests", c.history_requests as f64),
                ("catchup_stale", c.stale as f64),
                ("catchup_seq_gaps", c.seq_gaps as f64),
                ("catchup_head_mismatches", c.head_mismatches as f64),
                ("catchup_error_answers", c.error_answers as f64),
                ("post_errors", c.post_errors as f64),
                ("repost_errors", c.repost_errors as f64),
                ("fill_s", c.fill_s),
            ] {
                put(name, Some(value));
            }
        }
        if let Some(p) = &self.paging {
            put("page_errors", Some(p.errors as f64));
            put("fill_s", Some(p.fill_s));
            put("fill_per_s", Some(p.fill_per_s));
            if let Some(l) = &p.latency_ms {
                put("page_p50_ms", Some(l.p50));
                put("page_p90_ms", Some(l.p90));
                put("page_p99_ms", Some(l.p99));
                put("page_max_ms", Some(l.max));
            }
        }
        if let Some(s) = &self.server {
            put("server_rss_start_mb", Some(s.rss_start_mb));
            put("server_rss_peak_mb", Some(s.rss_peak_mb));
            // What the run itself added, setup's leftovers aside.
            put("server_rss_growth_mb", Some(s.rss_peak_mb - s.rss_start_mb));
            put("server_cpu_percent", s.cpu_percent);
        }
        put("client_cpu_percent", self.client_cpu_percent);
        m
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// Evaluates the targets and records them in the report (relative
    /// targets miss: there is nothing to compare with).
    pub fn check(&mut self, expectations: &[Expectation]) {
        self.check_against(expectations, |_, _| None);
    }

    /// Evaluates the targets; `reference(scenario, metric)` gives the figure
    /// a relative target is set against.
    pub fn check_against(
        &mut self,
        expectations: &[Expectation],
        reference: impl Fn(&str, &str) -> Option<f64>,
    ) {
        self.checks = expectations
            .iter()
            .map(|e| {
                let value = self.metric(&e.metric);
                let Some(scenario) = &e.relative_to else {
                    return Check {
                        expectation: e.clone(),
                        value,
                        reference_value: None,
                        ratio: None,
                        met: value.is_some_and(|v| e.holds(v)),
                    };
                };
                let reference_value = reference(scenario, &e.metric);
                let ratio = value
                    .zip(reference_value)
                    .map(|(v, r)| v / r)
                    .filter(|r| r.is_finite());
                Check {
                    expectation: e.clone(),
                    value,
                    reference_value,
                    ratio,
                    met: ratio.is_some_and(|r| e.holds(r)),
                }
            })
            .collect();
    }

    /// The report as one JSON object, with every figure of
    /// [`Report::metrics`] under `"metrics"` (what relative targets and
    /// scripts read back).
    pub fn json(&self) -> String {
        let report = match serde_json::to_string(self) {
            Ok(text) => text,
            Err(e) => return format!("{{\"error\": \"{e}\"}}"),
        };
        let metrics: serde_json::Map<String, serde_json::Value> = self
            .metrics()
            .into_iter()
            .map(|(name, value)| (name, serde_json::json!(value)))
            .collect();
        // The report's own fields first, in their order.
        match report.strip_suffix('}') {
            Some(fields) => format!(
                "{fields},\"metrics\":{}}}",
                serde_json::Value::Object(metrics)
            ),
            None => report,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "  {key:<15} {value}");
        };
        let title = match s.mode {
            Mode::Closed => format!(
                "closed loop: {} chats, {} connections, {} s (+{} s warm-up)",
                s.chats,
                s.chats * 2,
                number(s.duration.as_secs_f64()),
                number(s.warmup.as_secs_f64())
            ),
            Mode::Rate => format!(
                "rate: {} chats, {} connections x {} msg/s, {} s (+{} s warm-up)",
                s.chats,
                s.chats * 2,
                number(s.rate),
                number(s.duration.as_secs_f64()),
                number(s.warmup.as_secs_f64())
            ),
            Mode::History => format!("history: {} chats x {} messages", s.chats, s.history()),
            Mode::ChatList => format!(
                "chat list: one user with {} chats, {} requests",
                s.chats, s.requests
            ),
            Mode::V2Closed => format!(
                "v2 closed loop: {} chats, {} sockets (a user each), {} s (+{} s warm-up)",
                s.chats,
                s.chats * 2,
                number(s.duration.as_secs_f64()),
                number(s.warmup.as_secs_f64())
            ),
            Mode::V2Rate => format!(
                "v2 rate: {} chats, {} sockets (a user each) x {} msg/s{}, {} s (+{} s warm-up)",
                s.chats,
                s.chats * 2,
                number(s.rate),
                s.typing_interval.map_or_else(String::new, |t| format!(
                    ", typing every {} s",
                    number(t.as_secs_f64())
                )),
                number(s.duration.as_secs_f64()),
                number(s.warmup.as_secs_f64())
            ),
            Mode::V2Reconnect => format!(
                "v2 reconnect: {} chats, {} sockets; {} messages held, {} missed per chat",
                s.chats,
                s.chats * 2,
                s.history(),
                s.missed
            ),
            Mode::V2Paging => format!(
                "v2 paging: one chat of {} messages, {} GETs of {} before a random seq",
                s.history(),
                s.requests,
                s.page_limit()
            ),
        };
        let tags = [self.name.as_deref(), self.label.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ");
        let mut header = format!("chat-bench {title}; run {:x}", s.run_id);
        if !tags.is_empty() {
            let _ = write!(header, " [{tags}]");
        }
        line(
            "setup",
            format!("{:.1} s ({} users)", self.setup_s, self.users),
        );
        if let Some(c) = &self.connect {
            let mut text = format!(
                "{} ok, {} failed; p50 {} ms, p99 {} ms, max {} ms; all in {:.2} s",
                c.attempted - c.failed,
                c.failed,
                opt(c.p50_ms),
                opt(c.p99_ms),
                opt(c.max_ms),
                c.total_s
            );
            if let Some(e) = &c.first_error {
                let _ = write!(text, " (first error: {e})");
            }
            line("connect", text);
        }
        if let Some(d) = &self.delivery {
            line(
                "messages",
                format!(
                    "sent {}, deliveries expected {}, delivered {}",
                    d.sent, d.expected, d.delivered
                ),
            );
            line(
                "faults",
                format!(
                    "lost {}, duplicated {}, out of order {}, unexpected {}, error frames {}, foreign {}, disconnects {}, ack timeouts {}",
                    d.lost, d.duplicated, d.out_of_order, d.unexpected, d.error_frames, d.foreign,
                    self.disconnects, self.ack_timeouts
                ),
            );
            if s.mode.protocol() == Protocol::V2 && s.mode.is_live() {
                line(
                    "v2 checks",
                    format!(
                        "seq out of order {}, bad acks {}, bad client ids {}; {} other events",
                        d.seq_disorder, d.bad_acks, d.bad_client_ids, d.events
                    ),
                );
            }
        }
        if let Some(drain) = self.drain_s {
            line("drain", format!("{drain:.2} s until the last delivery"));
        }
        if let Some(t) = &self.throughput {
            let mut text = format!(
                "{} msg/s delivered to the other participant; {} frames/s in all",
                number(t.delivered_per_s),
                number(t.frames_per_s)
            );
            if let (Some(offered), Some(ratio)) = (t.offered_per_s, t.delivered_ratio) {
                let _ = write!(
                    text,
                    "; offered {} msg/s (ratio {ratio:.3})",
                    number(offered)
                );
            }
            line("throughput", text);
        }
        for (key, p) in [
            ("latency e2e", &self.latency_ms),
            ("echo", &self.echo_ms),
            ("send lag", &self.send_lag_ms),
        ] {
            if let Some(p) = p {
                line(key, percentiles(p));
            }
        }
        if let Some(h) = &self.history {
            line(
                "history",
                format!(
                    "filled in {:.1} s; {} complete, {} incomplete; {} frames/s",
                    h.fill_seconds,
                    h.complete,
                    h.incomplete,
                    number(h.frames_per_s)
                ),
            );
            if let Some(p) = &h.replay_ms {
                line("replay", percentiles(p));
            }
        }
        if let Some(l) = &self.chat_list {
            line(
                "chat list",
                format!(
                    "{} chats, {} bytes per reply, {} errors",
                    l.chats, l.response_bytes, l.errors
                ),
            );
            if let Some(p) = &l.latency_ms {
                line("GET latency", percentiles(p));
            }
        }
        if let Some(t) = &self.typing {
            line(
                "typing",
                format!(
                    "every {} s per socket: {} sent, {} typing events received",
                    number(t.interval_s),
                    t.sent,
                    t.received
                ),
            );
        }
        if let Some(c) = &self.catchup {
            line(
                "before",
                format!(
                    "{} held per chat (filled in {:.1} s); {} missed per chat stored in {:.1} s, {} POSTs failed, {} retries not idempotent",
                    c.held_per_chat, c.fill_s, c.missed_per_chat, c.post_s, c.post_errors, c.repost_errors
                ),
            );
            line(
                "caught up",
                format!(
                    "{} of {} sockets in {:.2} s; {} incomplete, {} head mismatches",
                    c.complete, c.sockets, c.catchup_s, c.incomplete, c.head_mismatches
                ),
            );
            if let Some(p) = &c.catchup_ms {
                line("per socket", percentiles(p));
            }
            line(
                "received",
                format!(
                    "{} messages ({}..{} per socket), at most {} frames per socket, {} history requests; {} stale, {} seq gaps, {} errors",
                    c.messages, c.messages_min, c.messages_max, c.frames_max, c.history_requests,
                    c.stale, c.seq_gaps, c.error_answers
                ),
            );
        }
        if let Some(p) = &self.paging {
            line(
                "fill",
                format!(
                    "{} messages in {:.1} s ({} msg/s)",
                    p.messages,
                    p.fill_s,
                    number(p.fill_per_s)
                ),
            );
            let mut text = format!(
                "{} GETs of {} before {}..={}, {} bytes per reply, {} wrong",
                p.requests, p.limit, p.lowest_before, p.highest_before, p.response_bytes, p.errors
            );
            if let Some(e) = &p.first_error {
                let _ = write!(text, " (first: {e})");
            }
            line("pages", text);
            if let Some(l) = &p.latency_ms {
                line("GET latency", percentiles(l));
            }
        }
        if let Some(srv) = &self.server {
            line(
                "server",
                format!(
                    "RSS peak {:.1} MB (start {:.1} MB, end {:.1} MB), CPU {} % (pid {})",
                    srv.rss_peak_mb,
                    srv.rss_start_mb,
                    srv.rss_end_mb,
                    opt(srv.cpu_percent),
                    srv.pid
                ),
            );
        }
        if let Some(cpu) = self.client_cpu_percent {
            line(
                "client",
                format!("CPU {cpu:.0} % ({} runtime threads)", s.threads),
            );
        }
        for c in &self.checks {
            let verdict = if c.expectation.is_show() {
                ""
            } else if c.met {
                " ok"
            } else {
                " MISSED"
            };
            let against = match (&c.expectation.relative_to, c.reference_value) {
                (Some(_), Some(r)) => format!(" against {} ({}x)", number(r), opt(c.ratio)),
                (Some(_), None) => " (nothing to compare with)".to_owned(),
                (None, _) => String::new(),
            };
            line(
                "check",
                format!("{}: {}{against}{verdict}", c.expectation, opt(c.value)),
            );
        }
        format!("{header}\n{out}")
    }
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} ms (n={})",
        number(p.p50),
        number(p.p90),
        number(p.p99),
        number(p.p999),
        number(p.max),
        p.count
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), number)
}

/// A figure with sensible precision: 3 significant digits below 100,
/// whole numbers above.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_against_the_relay_is_only_shown_on_the_relay_itself() {
        let targets: Vec<Expectation> = ["replay_p99_ms<=2x@history-200:relay", "lost==0"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(targets[0].relative_to.as_deref(), Some("history-200:relay"));
        assert_eq!(for_label(targets.clone(), "sqlite"), targets);
        let on_relay = for_label(targets.clone(), "relay");
        assert!(on_relay[0].is_show(), "{on_relay:?}");
        assert_eq!(on_relay[0].metric, "replay_p99_ms");
        assert_eq!(on_relay[1], targets[1]);
    }

    #[test]
    fn expectations_parse_and_hold() {
        let e: Expectation = "delivered_per_s>=27000".parse().unwrap();
        assert_eq!(e.metric, "delivered_per_s");
        assert!(e.holds(27000.0) && !e.holds(26999.0));
        assert_eq!(e.higher_is_better(), Some(true));
        let e: Expectation = "lost == 0".parse().unwrap();
        assert!(e.holds(0.0) && !e.holds(1.0));
        assert_eq!(e.higher_is_better(), None);
        let e: Expectation = "latency_p99_ms<25".parse().unwrap();
        assert!(e.holds(24.9) && !e.holds(25.0));
        assert!("latency".parse::<Expectation>().is_err());
        assert!("lost==none".parse::<Expectation>().is_err());
    }

    #[test]
    fn checks_find_their_metric_or_fail() {
        let mut report = Report::new(&Scenario::default(), "http://127.0.0.1:1");
        report.delivery = Some(Tally {
            sent: 10,
            expected: 20,
            delivered: 19,
            lost: 1,
            ..Tally::default()
        });
        report.check(&[
            "lost==0".parse().unwrap(),
            "sent>=10".parse().unwrap(),
            "latency_p99_ms<=25".parse().unwrap(),
        ]);
        let met: Vec<_> = report.checks.iter().map(|c| (c.value, c.met)).collect();
        assert_eq!(
            met,
            vec![(Some(1.0), false), (Some(10.0), true), (None, false)]
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["checks"][0]["metric"], "lost");
        assert_eq!(json["delivery"]["lost"], 1);
        assert!(report.table().contains("MISSED"));
    }

    #[test]
    fn relative_targets_are_set_against_another_scenarios_figure() {
        let e: Expectation = "latency_p99_ms<=1.2x@v2-rate-1000x10".parse().unwrap();
        assert_eq!(
            (
                e.metric.as_str(),
                e.op.as_str(),
                e.target,
                e.relative_to.as_deref()
            ),
            ("latency_p99_ms", "<=", 1.2, Some("v2-rate-1000x10"))
        );
        assert_eq!(e.to_string(), "latency_p99_ms <= 1.20x v2-rate-1000x10");
        assert!("lost==1x@".parse::<Expectation>().is_err());
        let mut report = Report::new(&Scenario::default(), "http://127.0.0.1:1");
        report.delivery = Some(Tally {
            sent: 30,
            ..Tally::default()
        });
        let targets = [
            "sent>=1x@closed-500".parse().unwrap(),
            "sent>=1x@missing".parse().unwrap(),
            Expectation::show("sent"),
        ];
        report.check_against(&targets, |scenario, metric| {
            (scenario == "closed-500" && metric == "sent").then_some(20.0)
        });
        let c = &report.checks;
        assert_eq!(
            (c[0].reference_value, c[0].ratio, c[0].met),
            (Some(20.0), Some(1.5), true)
        );
        assert_eq!((c[1].reference_value, c[1].met), (None, false));
        assert_eq!((c[2].value, c[2].met), (Some(30.0), true));
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["checks"][0]["relative_to"], "closed-500");
        assert_eq!(json["checks"][0]["ratio"], 1.5);
        assert_eq!(json["checks"][2]["op"], "show");
        assert_eq!(json["metrics"]["sent"], 30.0);
        assert!(json["checks"][2].get("relative_to").is_none());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(27345.6), "27346");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(3.0), "3");
    }
}
