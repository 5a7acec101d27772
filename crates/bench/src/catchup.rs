//! Reconnect and catch up over protocol v2 (`v2-reconnect`).
//!
//! 1. Optionally fill each chat with `history` messages (its first
//!    participant's socket, pipelined), which the sockets then hold.
//! 2. Connect every participant's v2 socket; each notes its chat's
//!    `head_seq` from `hello`: what it holds. Close them all.
//! 3. Store `missed` messages per chat over REST (`POST .../messages/` with a
//!    `client_id`, alternately from each participant: "another device"),
//!    and repeat each chat's last POST once, which must be answered `200`
//!    with the same message (a retry stores nothing).
//! 4. Reconnect every socket at once. Each catches up by the protocol's
//!    algorithm: from `hello`, while the contiguous prefix it holds (`held`)
//!    is below `head_seq`, ask `history after=held`; live messages count
//!    too, and any message already held by `(chat_id, seq)` is dropped.
//!
//! Figures: time from the first reconnect to the last socket caught up, per
//! socket time, the message objects and frames each socket received, and the
//! usual ledger accounting of the missed messages (lost, duplicated, out of
//! order), with each socket owed its chat's missed messages, its own user's
//! included.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{ConnLedger, Percentiles, Window};
use crate::conn::{self, Ws};
use crate::live::connect_all;
use crate::plan::{peer_of, Plan};
use crate::report::{CatchupStats, ConnectStats};
use crate::resources::{CpuMark, RssSampler, ServerResources};
use crate::scenario::Scenario;
use crate::setup::{self, Api, SetupError};
use crate::tag::Tag;
use crate::target::Target;
use crate::v2::{self, Frame, Hello, Msg};
use crate::BenchError;

/// Marks the run id of messages stored before the disconnect, so that one
/// received during the catch-up is not taken for a missed one. Run ids
/// have 40 bits.
const PREFILL_RUN_BIT: u64 = 1 << 63;

/// After a socket has caught up, it keeps reading this long so that late
/// extra copies are still counted.
const DUPLICATE_GRACE: Duration = Duration::from_millis(150);

/// `error` answers to `history` a socket retries before it gives up.
const MAX_ERRORS: u64 = 3;

pub(crate) struct CatchupOutcome {
    /// The reconnect storm's connects (until `hello`).
    pub connect: ConnectStats,
    pub ledgers: Vec<ConnLedger>,
    pub stats: CatchupStats,
    pub server: Option<ServerResources>,
}

pub(crate) async fn run(
    target: &Target,
    plan: &Plan,
    scenario: &Scenario,
) -> Result<CatchupOutcome, BenchError> {
    let sampler = scenario.server_pid.map(RssSampler::start);
    let chats = plan.chats.len();
    let prefill = scenario.history() as u64;

    // 1. The history the sockets hold before they go away.
    let fill_started = Instant::now();
    if prefill > 0 {
        let fillers: Vec<usize> = (0..chats).map(|k| 2 * k).collect();
        let (sockets, _) = connect_all(target, plan, &fillers, scenario).await;
        let mut tasks = JoinSet::new();
        for (k, socket) in sockets.into_iter().enumerate() {
            let mut ws = socket?.ws;
            let (chat_id, run, body_bytes) = (
                plan.chats[k].id,
                scenario.run_id | PREFILL_RUN_BIT,
                scenario.body_bytes,
            );
            let progress = (chats == 1).then_some("v2-reconnect: history");
            tasks.spawn(async move {
                let filled = v2::fill(
                    &mut ws,
                    chat_id,
                    2 * k as u32,
                    run,
                    prefill,
                    body_bytes,
                    progress,
                )
                .await;
                close(ws).await;
                filled
            });
        }
        while let Some(filled) = tasks.join_next().await {
            let filled = filled?;
            if filled.acked < prefill {
                eprintln!(
                    "v2-reconnect: a history fill stored {} of {prefill}",
                    filled.acked
                );
            }
        }
    }
    let fill_s = fill_started.elapsed().as_secs_f64();

    // 2. Every socket connects once and notes what it holds.
    let conns: Vec<usize> = (0..plan.connections()).collect();
    let (sockets, first) = connect_all(target, plan, &conns, scenario).await;
    eprintln!(
        "v2-reconnect: {} sockets connected in {:.2} s ({} failed); closing them",
        first.attempted - first.failed,
        first.total_s,
        first.failed
    );
    let mut held0: Vec<Option<u64>> = vec![None; conns.len()];
    let mut closing = JoinSet::new();
    for (conn, socket) in sockets.into_iter().enumerate() {
        match socket {
            Ok(connected) => {
                let chat_id = plan.chats[conn / 2].id;
                held0[conn] = connected.hello.as_ref().and_then(|h| h.head_of(chat_id));
                closing.spawn(close(connected.ws));
            }
            Err(error) => eprintln!("v2-reconnect: socket {conn} did not connect: {error}"),
        }
    }
    while closing.join_next().await.is_some() {}
    // A chat takes part only if both its sockets know their head.
    for k in 0..chats {
        if held0[2 * k].is_none() || held0[2 * k + 1].is_none() {
            held0[2 * k] = None;
            held0[2 * k + 1] = None;
        }
    }

    // 3. The messages they miss, from "another device" of each participant.
    let post_started = Instant::now();
    let posted = {
        let (api, plan, run, missed, body_bytes, workers) = (
            Api::new(target),
            plan.clone(),
            scenario.run_id,
            scenario.missed,
            scenario.body_bytes,
            scenario.setup_concurrency * 2,
        );
        let taking_part: Vec<bool> = (0..chats).map(|k| held0[2 * k].is_some()).collect();
        tokio::task::spawn_blocking(move || {
            setup::parallel(chats, workers, |k| {
                if !taking_part[k] {
                    return Ok(Posted::default());
                }
                post_missed(&api, &plan, k, run, missed, body_bytes)
            })
        })
        .await??
    };
    let post_s = post_started.elapsed().as_secs_f64();
    let post_errors = posted.iter().map(|p| p.errors).sum::<usize>();
    let repost_errors = posted.iter().map(|p| p.repost_errors).sum::<usize>();
    eprintln!(
        "v2-reconnect: {} messages stored over REST in {post_s:.1} s ({post_errors} failed)",
        posted.iter().map(|p| p.sent[0] + p.sent[1]).sum::<u64>()
    );

    // 4. The storm.
    let cpu_start = scenario.server_pid.and_then(CpuMark::now);
    let permits = Arc::new(Semaphore::new(scenario.connect_concurrency.max(1)));
    let origin = Instant::now();
    let mut tasks = JoinSet::new();
    for &conn in &conns {
        let Some((held, (chat, participant))) = held0[conn].zip(plan.participant(conn)) else {
            continue;
        };
        let chat_posted = posted[conn / 2];
        let mut ledger = ConnLedger::new(scenario.run_id, conn as u32, peer_of(conn as u32));
        ledger.sent = chat_posted.sent[conn % 2];
        let job = Job {
            url: target.ws_v2_url(&participant.token),
            addr: target.addr,
            source: conn::source_for(conn, scenario.source_ips),
            timeout: scenario.connect_timeout,
            chat_id: chat.id,
            held,
            expected_head: held + chat_posted.sent[0] + chat_posted.sent[1],
            limit: scenario.page_limit(),
            origin,
        };
        let permits = permits.clone();
        tasks.spawn(async move {
            let permit = permits.acquire_owned().await;
            let started = Instant::now();
            let connected = v2::connect(job.addr, &job.url, job.source, job.timeout).await;
            drop(permit);
            match connected {
                Ok((ws, took, hello)) => {
                    (catch_up(ws, &hello, &job, ledger, started).await, Ok(took))
                }
                Err(error) => (SocketResult::new(ledger), Err(error)),
            }
        });
    }
    let mut results = Vec::with_capacity(conns.len());
    let mut connects = Vec::with_capacity(conns.len());
    while let Some(joined) = tasks.join_next().await {
        let (result, connect) = joined?;
        results.push(result);
        connects.push(connect);
    }
    let cpu_percent = match (cpu_start, scenario.server_pid.and_then(CpuMark::now)) {
        (Some(a), Some(b)) => a.percent_until(&b),
        _ => None,
    };

    let last_connected = results
        .iter()
        .filter_map(|r| r.connected_at)
        .max()
        .unwrap_or(origin);
    let times_us: Vec<u32> = connects
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .map(|took| u32::try_from(took.as_micros()).unwrap_or(u32::MAX))
        .collect();
    let connect = ConnectStats::new(&connects, &times_us, last_connected - origin);
    let stats = summarize(&results, scenario, chats, fill_s, post_s, origin);
    let stats = CatchupStats {
        post_errors,
        repost_errors,
        // Chats left out because a socket never knew its head count as
        // incomplete too.
        incomplete: stats.incomplete + held0.iter().filter(|h| h.is_none()).count(),
        ..stats
    };
    let server = match sampler {
        Some(sampler) => Some(sampler.finish(cpu_percent).await),
        None => None,
    };
    Ok(CatchupOutcome {
        connect,
        ledgers: results.into_iter().map(|r| r.ledger).collect(),
        stats,
        server,
    })
}

fn summarize(
    results: &[SocketResult],
    scenario: &Scenario,
    chats: usize,
    fill_s: f64,
    post_s: f64,
    origin: Instant,
) -> CatchupStats {
    let done: Vec<&SocketResult> = results.iter().filter(|r| r.caught_up.is_some()).collect();
    let last = done
        .iter()
        .filter_map(|r| r.caught_up.map(|(_, at)| at))
        .max();
    let per_socket_us = done.iter().filter_map(|r| {
        r.caught_up
            .map(|(took, _)| u32::try_from(took.as_micros()).unwrap_or(u32::MAX))
    });
    CatchupStats {
        chats,
        sockets: results.len(),
        held_per_chat: scenario.history() as u64,
        missed_per_chat: scenario.missed as u64,
        fill_s,
        post_s,
        post_errors: 0,
        repost_errors: 0,
        catchup_s: last.map_or(0.0, |at| (at - origin).as_secs_f64()),
        catchup_ms: Percentiles::of_us(per_socket_us),
        complete: done.len(),
        incomplete: results.len() - done.len(),
        messages: results.iter().map(|r| r.messages).sum(),
        messages_max: results.iter().map(|r| r.messages).max().unwrap_or(0),
        messages_min: results.iter().map(|r| r.messages).min().unwrap_or(0),
        frames: results.iter().map(|r| r.frames).sum(),
        frames_max: results.iter().map(|r| r.frames).max().unwrap_or(0),
        history_requests: results.iter().map(|r| r.requests).sum(),
        stale: results.iter().map(|r| r.stale).sum(),
        seq_gaps: results.iter().map(|r| r.seq_gaps).sum(),
        head_mismatches: results.iter().filter(|r| r.head_mismatch).count(),
        error_answers: results.iter().map(|r| r.errors).sum(),
    }
}

/// What one chat's REST phase stored.
#[derive(Debug, Clone, Copy, Default)]
struct Posted {
    /// Messages stored per participant (index 0: the chat's first).
    sent: [u64; 2],
    errors: usize,
    repost_errors: usize,
}

/// Stores chat `k`'s missed messages, alternately from each participant,
/// in order; then repeats the last POST, which must store nothing.
fn post_missed(
    api: &Api,
    plan: &Plan,
    k: usize,
    run: u64,
    missed: usize,
    body_bytes: usize,
) -> Result<Posted, SetupError> {
    let chat = &plan.chats[k];
    let path = format!("/api/chats/{}/messages/", chat.id);
    let mut posted = Posted::default();
    let mut last = None;
    for i in 0..missed {
        let side = i % 2;
        let tag = Tag {
            run,
            sender: (2 * k + side) as u32,
            seq: posted.sent[side],
            sent_at_ns: 0,
        };
        let body = json!({"body": tag.encode(body_bytes), "client_id": tag.client_id()});
        let token = &chat.participants[side].token;
        let reply = api.post(&path, Some(token), &body)?;
        if reply.status == 201 {
            posted.sent[side] += 1;
            last = Some((token, body, reply.body.get("id").cloned()));
        } else {
            posted.errors += 1;
            if posted.errors == 1 {
                eprintln!(
                    "v2-reconnect: POST {path}: status {}: {}",
                    reply.status, reply.body
                );
            }
        }
    }
    if let Some((token, body, id)) = last {
        let reply = api.post(&path, Some(token), &body)?;
        if reply.status != 200 || reply.body.get("id").cloned() != id {
            posted.repost_errors += 1;
        }
    }
    Ok(posted)
}

/// What a reconnecting socket needs to know.
struct Job {
    url: String,
    addr: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
    timeout: Duration,
    chat_id: i64,
    /// `head_seq` at the first connect: everything up to it is held.
    held: u64,
    /// What `head_seq` should be now: `held` plus what was stored since.
    expected_head: u64,
    limit: usize,
    origin: Instant,
}

struct SocketResult {
    ledger: ConnLedger,
    connected_at: Option<Instant>,
    /// From the start of this socket's connect until it held everything,
    /// and when that was.
    caught_up: Option<(Duration, Instant)>,
    /// Message objects received after the `hello` (history and live).
    messages: u64,
    /// Frames received, the `hello` included.
    frames: u64,
    requests: u64,
    /// Messages at or below the head held before the disconnect.
    stale: u64,
    /// Seqs in (held, head] never received (sockets that did not finish).
    seq_gaps: u64,
    /// `hello` said another `head_seq` than held + stored.
    head_mismatch: bool,
    /// `error` answers.
    errors: u64,
}

impl SocketResult {
    fn new(ledger: ConnLedger) -> Self {
        Self {
            ledger,
            connected_at: None,
            caught_up: None,
            messages: 0,
            frames: 0,
            requests: 0,
            stale: 0,
            seq_gaps: 0,
            head_mismatch: false,
            errors: 0,
        }
    }

    /// Takes one received message object: every copy goes to the ledger
    /// (which counts extra copies), and the client keeps it unless it
    /// already holds its `(chat_id, seq)`.
    fn take(&mut self, m: &Msg, job: &Job, holding: &mut Holding, received_ns: u64) {
        self.messages += 1;
        self.ledger.on_message(m.tag, received_ns, &Window::EMPTY);
        if m.chat_id != job.chat_id {
            self.ledger.misrouted += 1;
        } else if m.seq <= job.held {
            self.stale += 1;
        } else {
            holding.take(m.seq);
        }
    }
}

/// A chat's messages as a client holds them: the contiguous prefix up to
/// `held` and whatever arrived above it.
struct Holding {
    floor: u64,
    held: u64,
    above: BTreeSet<u64>,
}

impl Holding {
    /// Takes message `seq`; `false` when it was already held (or below the
    /// floor), i.e. a client drops it.
    fn take(&mut self, seq: u64) -> bool {
        if seq <= self.held || !self.above.insert(seq) {
            return false;
        }
        while self.above.first() == Some(&(self.held + 1)) {
            self.above.pop_first();
            self.held += 1;
        }
        true
    }

    /// Seqs in (floor, head] not held.
    fn gaps(&self, head: u64) -> u64 {
        let have = self.held.saturating_sub(self.floor) + self.above.range(..=head).count() as u64;
        head.saturating_sub(self.floor).saturating_sub(have)
    }
}

/// The protocol's catch-up on one reconnected socket.
async fn catch_up(
    mut ws: Ws,
    hello: &Hello,
    job: &Job,
    ledger: ConnLedger,
    started: Instant,
) -> SocketResult {
    let mut result = SocketResult::new(ledger);
    result.connected_at = Some(Instant::now());
    result.frames = 1;
    let Some(head) = hello.head_of(job.chat_id) else {
        eprintln!("v2-reconnect: chat {} is missing from hello", job.chat_id);
        close(ws).await;
        return result;
    };
    result.head_mismatch = head != job.expected_head;
    let mut holding = Holding {
        floor: job.held,
        held: job.held,
        above: BTreeSet::new(),
    };
    let mut asking = false;
    let mut deadline = Instant::now() + v2::IDLE_LIMIT;
    loop {
        if result.caught_up.is_none() && holding.held >= head {
            let now = Instant::now();
            result.caught_up = Some((now - started, now));
            deadline = now + DUPLICATE_GRACE;
        }
        if result.caught_up.is_none() && !asking {
            let reference = format!("h{}", result.requests);
            let frame = v2::history_after_frame(job.chat_id, holding.held, job.limit, &reference);
            if !conn::send_text(&mut ws, frame).await {
                break;
            }
            asking = true;
            result.requests += 1;
        }
        let text = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        result.frames += 1;
        let received_ns = job.origin.elapsed().as_nanos() as u64;
        match Frame::parse(&text) {
            Frame::History {
                chat_id, messages, ..
            } if chat_id == job.chat_id => {
                let before = holding.held;
                for m in &messages {
                    result.take(m, job, &mut holding, received_ns);
                }
                let answered = std::mem::take(&mut asking);
                if answered && result.caught_up.is_none() && holding.held == before {
                    // The page after `held` must start at `held + 1`:
                    // asking again would get the same page forever.
                    eprintln!(
                        "v2-reconnect: history after {before} in chat {} did not continue the chat",
                        job.chat_id
                    );
                    break;
                }
            }
            Frame::Message(m) => result.take(&m, job, &mut holding, received_ns),
            Frame::Error { code } => {
                result.ledger.on_error_frame();
                result.errors += 1;
                if result.errors > MAX_ERRORS {
                    eprintln!(
                        "v2-reconnect: chat {}: error {code}, giving up",
                        job.chat_id
                    );
                    break;
                }
                asking = false;
            }
            Frame::Typing | Frame::Event => result.ledger.events += 1,
            Frame::History { .. } | Frame::Ack { .. } | Frame::Hello(_) | Frame::Other => {
                result.ledger.foreign += 1;
            }
        }
        if result.caught_up.is_none() {
            deadline = Instant::now() + v2::IDLE_LIMIT;
        }
    }
    if result.caught_up.is_none() {
        result.seq_gaps = holding.gaps(head);
    }
    close(ws).await;
    result
}

async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_advances_over_contiguous_seqs_and_drops_what_it_has() {
        let mut h = Holding {
            floor: 10,
            held: 10,
            above: BTreeSet::new(),
        };
        assert!(!h.take(10));
        assert!(h.take(12));
        assert_eq!(h.held, 10);
        assert!(h.take(11));
        assert_eq!(h.held, 12);
        assert!(!h.take(12) && !h.take(11));
        assert!(h.take(15));
        assert_eq!(h.gaps(16), 3); // 13, 14, 16
        assert!(h.take(13) && h.take(14));
        assert_eq!((h.held, h.gaps(15)), (15, 0));
    }
}
