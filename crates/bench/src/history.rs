//! History replay: fill each chat with N messages from its first
//! participant, then connect every second participant at once (with
//! `--replay-both`, both participants: two sockets per chat) and time, per
//! socket, from the start of the connect until the N-th history frame.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{ConnLedger, Percentiles, Reception, Window};
use crate::conn::{self, Incoming, Ws};
use crate::live::connect_all;
use crate::plan::{peer_of, Plan};
use crate::report::{ConnectStats, HistoryStats};
use crate::resources::{CpuMark, RssSampler, ServerResources};
use crate::scenario::Scenario;
use crate::tag::Tag;
use crate::target::Target;

/// Messages a filling connection keeps in flight (unacknowledged): enough
/// to keep the server busy, well under its per-connection queue (1024).
const FILL_WINDOW: u64 = 64;

/// A connection that receives nothing for this long is given up on.
const IDLE_LIMIT: Duration = Duration::from_secs(15);

/// How long a replaying connection keeps reading after the last history
/// frame, so duplicates are still seen.
const DUPLICATE_GRACE: Duration = Duration::from_millis(150);

pub(crate) struct HistoryOutcome {
    pub connect: ConnectStats,
    pub ledgers: Vec<ConnLedger>,
    pub stats: HistoryStats,
    pub server: Option<ServerResources>,
}

pub(crate) async fn run(target: &Target, plan: &Plan, scenario: &Scenario) -> HistoryOutcome {
    let sampler = scenario.server_pid.map(RssSampler::start);
    let origin = Instant::now();
    let per_chat = scenario.history() as u64;

    // Fill: the first participant of every chat sends its messages.
    let fillers: Vec<usize> = (0..plan.chats.len()).map(|k| 2 * k).collect();
    let (sockets, _) = connect_all(target, plan, &fillers, scenario).await;
    let fill_started = Instant::now();
    let mut tasks = JoinSet::new();
    for (k, socket) in sockets.into_iter().enumerate() {
        let conn = fillers[k] as u32;
        let (run, body_bytes) = (scenario.run_id, scenario.body_bytes);
        match socket {
            Ok(connected) => {
                tasks.spawn(fill(connected.ws, conn, run, per_chat, body_bytes, origin));
            }
            Err(error) => eprintln!("history: filler {conn} could not connect: {error}"),
        }
    }
    let mut ledgers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(ledger) = joined {
            ledgers.push(ledger);
        }
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    // What each chat's reader is owed: what its filler managed to send.
    let mut owed: Vec<Option<u64>> = vec![None; plan.chats.len()];
    for ledger in &ledgers {
        owed[ledger.conn as usize / 2] = Some(ledger.sent);
    }
    eprintln!(
        "history: {} chats filled with {per_chat} messages each in {fill_seconds:.1} s",
        ledgers.len()
    );

    // Replay: the second participant of every chat connects, and with
    // --replay-both the first too, on a new socket owed its own messages
    // again (its fill ledger, what it received forgotten). Each socket's
    // ledger and what it is owed from its peer.
    let mut replaying: Vec<(ConnLedger, u64)> = Vec::new();
    let mut fill_ledgers = Vec::new();
    for mut ledger in ledgers.drain(..) {
        let chat = ledger.conn as usize / 2;
        let Some(count) = owed[chat] else { continue };
        let reader = ConnLedger::new(scenario.run_id, ledger.peer, ledger.conn);
        replaying.push((reader, count));
        if scenario.replay_both {
            // Its peer only reads.
            ledger.forget_received(0);
            replaying.push((ledger, 0));
        } else {
            fill_ledgers.push(ledger);
        }
    }
    ledgers = fill_ledgers;
    // Every chat owes one replay (two with --replay-both), whether or not
    // its filler connected: a chat never filled is a replay never done.
    let sockets_owed = plan.chats.len() * if scenario.replay_both { 2 } else { 1 };
    let replay_started = Instant::now();
    let cpu_start = scenario.server_pid.and_then(CpuMark::now);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(
        scenario.connect_concurrency.max(1),
    ));
    let mut tasks = JoinSet::new();
    for (mut ledger, peer_owed) in replaying {
        let Some((chat, participant)) = plan.participant(ledger.conn as usize) else {
            continue;
        };
        let url = target.ws_url(chat.id, &participant.token);
        let source = conn::source_for(ledger.conn as usize, scenario.source_ips);
        let (addr, timeout, permits) = (target.addr, scenario.connect_timeout, permits.clone());
        tasks.spawn(async move {
            let permit = permits.acquire_owned().await;
            let started = Instant::now();
            let connected = conn::connect(addr, &url, source, timeout).await;
            drop(permit);
            match connected {
                Ok((ws, took)) => {
                    let connected_at = Instant::now();
                    let replay = replay(ws, &mut ledger, peer_owed, started, origin).await;
                    (ledger, Ok((took, connected_at)), replay)
                }
                Err(error) => (ledger, Err(error), None),
            }
        });
    }
    let mut replay_us = Vec::new();
    let mut replayed_frames = 0u64;
    let mut connect_us = Vec::new();
    let mut connect_results = Vec::new();
    // The last socket open, and the last history complete.
    let (mut all_connected, mut all_replayed) = (replay_started, replay_started);
    while let Some(joined) = tasks.join_next().await {
        let Ok((ledger, connected, replay)) = joined else {
            continue;
        };
        replayed_frames += ledger.received_distinct();
        ledgers.push(ledger);
        if let Some((took, done_at)) = replay {
            replay_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            all_replayed = all_replayed.max(done_at);
        }
        if let Ok((took, connected_at)) = &connected {
            connect_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            all_connected = all_connected.max(*connected_at);
        }
        connect_results.push(connected.map(|_| ()));
    }
    // Over the replay phase (including the short duplicate grace at its end).
    let cpu_percent = match (cpu_start, scenario.server_pid.and_then(CpuMark::now)) {
        (Some(a), Some(b)) => a.percent_until(&b),
        _ => None,
    };
    let replay_seconds = (all_replayed - replay_started).as_secs_f64();
    let replay_us_len = replay_us.len();
    let connect = ConnectStats::new(
        &connect_results,
        &connect_us,
        all_connected - replay_started,
    );
    let frames: u64 = replayed_frames;
    let stats = HistoryStats {
        messages_per_chat: per_chat,
        chats: plan.chats.len(),
        fill_seconds,
        replay_seconds,
        replay_ms: Percentiles::of_us(replay_us),
        complete: replay_us_len,
        incomplete: sockets_owed.saturating_sub(replay_us_len),
        frames_per_s: frames as f64 / replay_seconds.max(1e-9),
    };
    let server = match sampler {
        Some(sampler) => Some(sampler.finish(cpu_percent).await),
        None => None,
    };
    HistoryOutcome {
        connect,
        ledgers,
        stats,
        server,
    }
}

/// Sends `count` messages, at most [`FILL_WINDOW`] unacknowledged, and
/// waits for the echo of each; the sender's ledger.
async fn fill(
    mut ws: Ws,
    conn: u32,
    run: u64,
    count: u64,
    body_bytes: usize,
    origin: Instant,
) -> ConnLedger {
    let mut ledger = ConnLedger::new(run, conn, peer_of(conn));
    let mut acked = 0u64;
    while acked < count {
        while ledger.sent < count && ledger.sent - acked < FILL_WINDOW {
            let tag = Tag {
                run,
                sender: conn,
                seq: ledger.sent,
                sent_at_ns: origin.elapsed().as_nanos() as u64,
            };
            if !conn::send_text(&mut ws, tag.frame(body_bytes)).await {
                return ledger;
            }
            ledger.sent += 1;
        }
        let frame = match tokio::time::timeout(IDLE_LIMIT, ws.next()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => {
                eprintln!("history: filler {conn} stalled at {acked}/{count} acknowledged");
                return ledger;
            }
        };
        let received_ns = origin.elapsed().as_nanos() as u64;
        if let Message::Text(text) = frame {
            match Incoming::parse(&text) {
                Incoming::Message(tag) => {
                    if let Reception::OwnFirst { .. } =
                        ledger.on_message(tag, received_ns, &Window::EMPTY)
                    {
                        acked += 1;
                    }
                }
                Incoming::Error => {
                    // The server refused one: it is lost, move on.
                    ledger.on_error_frame();
                    acked += 1;
                }
                Incoming::Other => ledger.foreign += 1,
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    ledger
}

/// Reads the history until all of the socket's own messages
/// (`ledger.sent`) and `peer_owed` of the peer's are in; the time since
/// `started` and the moment it completed, or `None` if it never did.
async fn replay(
    mut ws: Ws,
    ledger: &mut ConnLedger,
    peer_owed: u64,
    started: Instant,
    origin: Instant,
) -> Option<(Duration, Instant)> {
    let mut took = None;
    let mut deadline = Instant::now() + IDLE_LIMIT;
    loop {
        if took.is_none() && ledger.has_all(peer_owed) {
            let now = Instant::now();
            took = Some((now - started, now));
            deadline = now + DUPLICATE_GRACE;
        }
        let frame = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        if took.is_none() {
            deadline = Instant::now() + IDLE_LIMIT;
        }
        let received_ns = origin.elapsed().as_nanos() as u64;
        if let Message::Text(text) = frame {
            match Incoming::parse(&text) {
                Incoming::Message(tag) => {
                    ledger.on_message(tag, received_ns, &Window::EMPTY);
                }
                Incoming::Error => ledger.on_error_frame(),
                Incoming::Other => ledger.foreign += 1,
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    took
}
