//! `chat-bench`: a load generator for the chat API that speaks only the
//! public API (REST for setup, the chat WebSockets for traffic), so it can
//! drive any server of that API.
//!
//! A run: set up users and chats over REST ([`setup`]), open both
//! participants' sockets per chat and send closed-loop or at a rate
//! ([`live`], over the seed socket or protocol v2's [`v2`]), or replay
//! histories ([`history`]), or time the chat list ([`chat_list`]), or
//! reconnect v2 sockets and catch up ([`catchup`]), or page deep into a
//! chat ([`paging`]); then account for every message ([`accounting`]) and
//! report ([`report`]). Each message body carries a [`tag::Tag`] (run,
//! sender, sequence, send time), so receivers need no side channel.
//!
//! [`execute`] does a whole run; [`run_plan`] skips the REST setup and
//! drives a ready [`plan::Plan`] (tests point it at a fake relay).

pub mod accounting;
pub mod catchup;
pub mod chat_list;
pub mod cli;
pub mod conn;
pub mod curves;
pub mod history;
pub mod live;
pub mod paging;
pub mod plan;
pub mod relay;
pub mod report;
pub mod resources;
pub mod scenario;
pub mod setup;
pub mod summary;
pub mod tag;
pub mod target;
pub mod v2;

use std::time::Instant;

use crate::accounting::{histogram_us, tally, Percentiles};
use crate::plan::Plan;
use crate::report::{Report, Throughput, TypingStats};
use crate::scenario::{Mode, Protocol, Scenario};
use crate::setup::{Api, SetupError};
use crate::target::Target;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setup: {0}")]
    Setup(#[from] SetupError),
    #[error("connect: {0}")]
    Connect(#[from] conn::ConnectError),
    #[error("socket: {0}")]
    Socket(String),
    #[error("a worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Invalid(String),
}

/// A whole run: REST setup, then the scenario.
pub async fn execute(target: &Target, scenario: &Scenario) -> Result<Report, BenchError> {
    validate(scenario)?;
    if scenario.mode == Mode::ChatList {
        let outcome = chat_list::run(target, scenario).await?;
        let mut report = Report::new(scenario, &target.http_url(""));
        report.setup_s = outcome.setup_seconds;
        report.users = outcome.users;
        report.chat_list = Some(outcome.stats);
        report.server = outcome.server;
        return Ok(report);
    }
    let started = Instant::now();
    let plan = {
        let (api, run, users, chats, workers) = (
            Api::new(target),
            scenario.run_id,
            scenario.users(),
            scenario.chats,
            scenario.setup_concurrency,
        );
        tokio::task::spawn_blocking(move || setup::pairs(&api, run, users, chats, workers))
            .await??
    };
    let setup_s = started.elapsed().as_secs_f64();
    let mut report = run_plan(target, &plan, scenario).await?;
    report.setup_s = setup_s;
    Ok(report)
}

/// Runs a closed, rate or history scenario over a ready plan (no REST).
pub async fn run_plan(
    target: &Target,
    plan: &Plan,
    scenario: &Scenario,
) -> Result<Report, BenchError> {
    validate(scenario)?;
    let mut report = Report::new(scenario, &target.http_url(""));
    report.users = plan.users;
    match scenario.mode {
        Mode::Closed | Mode::Rate | Mode::V2Closed | Mode::V2Rate => {
            let outcome = live::run(target, plan, scenario).await;
            let t = tally(&outcome.ledgers);
            let window_s = outcome.window.seconds();
            let delivered_per_s = t.peer_deliveries_in_window as f64 / window_s;
            let offered = scenario
                .mode
                .is_rate()
                .then_some(outcome.active_connections as f64 * scenario.rate);
            report.throughput = Some(Throughput {
                window_s,
                delivered_per_s,
                frames_per_s: t.frames_in_window as f64 / window_s,
                offered_per_s: offered,
                delivered_ratio: offered.filter(|o| *o > 0.0).map(|o| delivered_per_s / o),
            });
            let peer = outcome
                .ledgers
                .iter()
                .flat_map(|l| l.peer_latency_us.iter().copied());
            report.latency_ms = Percentiles::from_us(&histogram_us(peer));
            let echo = outcome
                .ledgers
                .iter()
                .flat_map(|l| l.echo_latency_us.iter().copied());
            report.echo_ms = Percentiles::from_us(&histogram_us(echo));
            report.send_lag_ms = Percentiles::of_us(outcome.send_lag_us);
            report.delivery = Some(t);
            report.connect = Some(outcome.connect);
            report.ack_timeouts = outcome.ack_timeouts;
            report.disconnects = outcome.disconnects;
            report.drain_s = Some(outcome.drain_seconds);
            report.server = outcome.server;
            report.client_cpu_percent = outcome.client_cpu_percent;
            report.typing = scenario.typing_interval.map(|every| TypingStats {
                interval_s: every.as_secs_f64(),
                sent: outcome.typing_sent,
                received: outcome.typing_received,
            });
        }
        Mode::History => {
            let outcome = history::run(target, plan, scenario).await;
            report.delivery = Some(tally(&outcome.ledgers));
            report.connect = Some(outcome.connect);
            report.history = Some(outcome.stats);
            report.server = outcome.server;
        }
        Mode::V2Reconnect => {
            let outcome = catchup::run(target, plan, scenario).await?;
            report.delivery = Some(tally(&outcome.ledgers));
            report.connect = Some(outcome.connect);
            report.catchup = Some(outcome.stats);
            report.server = outcome.server;
        }
        Mode::V2Paging => {
            let outcome = paging::run(target, plan, scenario).await?;
            report.paging = Some(outcome.stats);
            report.server = outcome.server;
        }
        Mode::ChatList => {
            return Err(BenchError::Invalid(
                "chat-list mode does its own setup: use execute".into(),
            ))
        }
    }
    Ok(report)
}

fn validate(scenario: &Scenario) -> Result<(), BenchError> {
    let invalid = |what: &str| Err(BenchError::Invalid(what.to_owned()));
    if scenario.chats == 0 {
        return invalid("--chats must be at least 1");
    }
    if scenario.mode.is_live() && scenario.duration.is_zero() {
        return invalid("--duration must be more than 0");
    }
    if scenario.mode.is_rate() && !(scenario.rate > 0.0 && scenario.rate.is_finite()) {
        return invalid("--rate must be a positive number of messages per second");
    }
    if scenario.mode.protocol() == Protocol::V2 && scenario.users() < 2 * scenario.chats {
        // A v2 socket receives every chat of its user: shared users would
        // multiply the deliveries and no longer compare with the seed runs.
        return invalid("v2 modes need one user per socket: --users at least 2 x --chats");
    }
    if scenario.typing_interval.is_some() && !matches!(scenario.mode, Mode::V2Closed | Mode::V2Rate)
    {
        return invalid("--typing-interval is for the v2 live modes (v2-closed, v2-rate)");
    }
    let limit = scenario.page_limit();
    if scenario.mode.protocol() == Protocol::V2 && !(1..=200).contains(&limit) {
        return invalid("--page-limit must be 1..=200 (the API's range)");
    }
    if scenario.mode == Mode::V2Paging && scenario.history() <= limit {
        return invalid("v2-paging needs --history above --page-limit");
    }
    Ok(())
}
