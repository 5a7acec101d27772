//! A run's figures: a table for people, one JSON line for scripts, a flat
//! list of named metrics, and the `--expect` checks against targets.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::accounting::{Percentiles, Tally};
use crate::conn::ConnectError;
use crate::resources::ServerResources;
use crate::scenario::{Mode, Scenario};

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
    /// From the first reader's connect to the last reader's completion.
    pub replay_seconds: f64,
    /// Per chat: start of the connect to the last history frame.
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

/// `metric OP value`, e.g. `delivered_per_s>=27000`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    pub metric: String,
    pub op: String,
    pub target: f64,
}

impl std::str::FromStr for Expectation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        for op in [">=", "<=", "==", ">", "<"] {
            if let Some((metric, value)) = s.split_once(op) {
                let target = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
                return Ok(Self {
                    metric: metric.trim().to_owned(),
                    op: op.to_owned(),
                    target,
                });
            }
        }
        Err(format!(
            "{s:?}: expected METRIC>=N, METRIC<=N, METRIC==N, < or >"
        ))
    }
}

impl Expectation {
    pub fn holds(&self, value: f64) -> bool {
        match self.op.as_str() {
            ">=" => value >= self.target,
            "<=" => value <= self.target,
            ">" => value > self.target,
            "<" => value < self.target,
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
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, number(self.target))
    }
}

/// A target and how the run did against it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    #[serde(flatten)]
    pub expectation: Expectation,
    /// `None` when the run has no such figure.
    pub value: Option<f64>,
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

    /// Evaluates the targets and records them in the report.
    pub fn check(&mut self, expectations: &[Expectation]) {
        self.checks = expectations
            .iter()
            .map(|e| {
                let value = self.metric(&e.metric);
                Check {
                    expectation: e.clone(),
                    value,
                    met: value.is_some_and(|v| e.holds(v)),
                }
            })
            .collect();
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
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
            line(
                "check",
                format!(
                    "{}: {} {}",
                    c.expectation,
                    opt(c.value),
                    if c.met { "ok" } else { "MISSED" }
                ),
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
    fn numbers_read_well() {
        assert_eq!(number(27345.6), "27346");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(3.0), "3");
    }
}
