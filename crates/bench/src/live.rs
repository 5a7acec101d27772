//! Live traffic: every chat's two participants connected, sending in a
//! closed loop or at a fixed rate, then a drain until every owed delivery
//! has arrived (or the drain time is up).
//!
//! One task per connection owns its socket and its [`ConnLedger`], so the
//! accounting needs no locks. The two tasks of a chat share a [`ChatLink`]
//! only to tell each other how many messages they sent in the end, which a
//! receiver needs to know when it has everything.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{ConnLedger, Reception, Window};
use crate::conn::{self, ConnectError, Incoming, Ws};
use crate::plan::{peer_of, Plan};
use crate::report::ConnectStats;
use crate::resources::{CpuMark, RssSampler, ServerResources};
use crate::scenario::{Mode, Scenario};
use crate::tag::Tag;
use crate::target::Target;

/// After everything owed has arrived, keep reading this long so that late
/// duplicates are still counted.
const DUPLICATE_GRACE: Duration = Duration::from_millis(150);

/// Lets the tasks spawn and wait before the first send, so all start
/// together.
const START_DELAY: Duration = Duration::from_millis(50);

/// Opens the sockets of connections `conns` (indexes into the plan's
/// connections), `connect_concurrency` handshakes at a time. Returns each
/// socket (or why it failed), in the order of `conns`, and the timings.
pub(crate) async fn connect_all(
    target: &Target,
    plan: &Plan,
    conns: &[usize],
    scenario: &Scenario,
) -> (Vec<Result<Ws, ConnectError>>, ConnectStats) {
    let permits = Arc::new(Semaphore::new(scenario.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (slot, &conn) in conns.iter().enumerate() {
        let Some((chat, participant)) = plan.participant(conn) else {
            continue;
        };
        let url = target.ws_url(chat.id, &participant.token);
        let addr = target.addr;
        let source = conn::source_for(conn, scenario.source_ips);
        let timeout = scenario.connect_timeout;
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (slot, conn::connect(addr, &url, source, timeout).await)
        });
    }
    let mut sockets: Vec<Option<Result<Ws, ConnectError>>> = conns.iter().map(|_| None).collect();
    let mut times_us = Vec::with_capacity(conns.len());
    while let Some(joined) = tasks.join_next().await {
        if let Ok((slot, result)) = joined {
            sockets[slot] = Some(result.map(|(ws, took)| {
                times_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                ws
            }));
        }
    }
    let total = started.elapsed();
    let sockets: Vec<_> = sockets
        .into_iter()
        .map(|s| s.unwrap_or(Err(ConnectError::Timeout(scenario.connect_timeout))))
        .collect();
    let stats = ConnectStats::new(&sockets, &times_us, total);
    (sockets, stats)
}

/// What a live run measured.
pub(crate) struct LiveOutcome {
    pub connect: ConnectStats,
    pub ledgers: Vec<ConnLedger>,
    pub window: Window,
    pub send_lag_us: Vec<u32>,
    pub ack_timeouts: u64,
    pub disconnects: u64,
    pub active_connections: usize,
    pub server: Option<ServerResources>,
    pub client_cpu_percent: Option<f64>,
    /// From the end of sending until every delivery arrived (or the drain
    /// ran out).
    pub drain_seconds: f64,
}

/// State the two connections of a chat share.
#[derive(Default)]
struct ChatLink {
    sent: [AtomicU64; 2],
    done: [AtomicBool; 2],
    wake: [Notify; 2],
}

/// How a connection paces its sends.
#[derive(Clone, Copy)]
enum Pacing {
    Closed { ack_timeout: Duration },
    Rate { period: Duration },
}

/// What every connection task needs to know.
struct Shared {
    run: u64,
    origin: Instant,
    window: Window,
    send_end: Instant,
    pacing: Pacing,
    body_bytes: usize,
    connections: usize,
    /// Tasks with nothing more to wait for (all owed deliveries arrived, or
    /// the socket is gone).
    settled: AtomicUsize,
}

impl Shared {
    fn ns_since_origin(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }
}

/// One connection's result.
struct ConnOutcome {
    ledger: ConnLedger,
    send_lag_us: Vec<u32>,
    ack_timeouts: u64,
    disconnected: bool,
}

/// Runs closed-loop or rate traffic over `plan`.
pub(crate) async fn run(target: &Target, plan: &Plan, scenario: &Scenario) -> LiveOutcome {
    let sampler = scenario.server_pid.map(RssSampler::start);
    let conns: Vec<usize> = (0..plan.connections()).collect();
    let (sockets, connect) = connect_all(target, plan, &conns, scenario).await;

    // A chat takes part only if both its sockets opened: otherwise nothing
    // sent in it could reach everyone it is owed to.
    let mut sockets: Vec<Option<Ws>> = sockets.into_iter().map(Result::ok).collect();
    for chat in 0..plan.chats.len() {
        if sockets[2 * chat].is_none() || sockets[2 * chat + 1].is_none() {
            sockets[2 * chat] = None;
            sockets[2 * chat + 1] = None;
        }
    }
    let active = sockets.iter().filter(|s| s.is_some()).count();

    let origin = Instant::now() + START_DELAY;
    let measure_start = origin + scenario.warmup;
    let send_end = measure_start + scenario.duration;
    let window = Window {
        start_ns: scenario.warmup.as_nanos() as u64,
        end_ns: (scenario.warmup + scenario.duration).as_nanos() as u64,
    };
    let pacing = match scenario.mode {
        Mode::Rate => Pacing::Rate {
            period: Duration::from_secs_f64(1.0 / scenario.rate.max(0.001)),
        },
        _ => Pacing::Closed {
            ack_timeout: scenario.ack_timeout,
        },
    };
    let shared = Arc::new(Shared {
        run: scenario.run_id,
        origin,
        window,
        send_end,
        pacing,
        body_bytes: scenario.body_bytes,
        connections: plan.connections(),
        settled: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut link = Arc::new(ChatLink::default());
    for (conn, socket) in sockets.into_iter().enumerate() {
        if conn % 2 == 0 {
            link = Arc::new(ChatLink::default());
        }
        if let Some(ws) = socket {
            tasks.spawn(drive(
                ws,
                conn as u32,
                link.clone(),
                shared.clone(),
                stop_rx.clone(),
            ));
        }
    }

    let server_pid = scenario.server_pid;
    let self_pid = std::process::id();
    tokio::time::sleep_until(measure_start.into()).await;
    let marks_start = (server_pid.and_then(CpuMark::now), CpuMark::now(self_pid));
    tokio::time::sleep_until(send_end.into()).await;
    let marks_end = (server_pid.and_then(CpuMark::now), CpuMark::now(self_pid));

    // Drain: wait until every task has all it is owed, or time is up.
    let drain_deadline = send_end + scenario.drain;
    while shared.settled.load(Ordering::Relaxed) < active && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_seconds = send_end.elapsed().as_secs_f64();
    tokio::time::sleep(DUPLICATE_GRACE).await;
    let _ = stop_tx.send(true);

    let mut outcome = LiveOutcome {
        connect,
        ledgers: Vec::with_capacity(active),
        window,
        send_lag_us: Vec::new(),
        ack_timeouts: 0,
        disconnects: 0,
        active_connections: active,
        server: None,
        client_cpu_percent: None,
        drain_seconds,
    };
    while let Some(joined) = tasks.join_next().await {
        if let Ok(conn) = joined {
            outcome.ledgers.push(conn.ledger);
            outcome.send_lag_us.extend(conn.send_lag_us);
            outcome.ack_timeouts += conn.ack_timeouts;
            outcome.disconnects += u64::from(conn.disconnected);
        }
    }
    outcome.client_cpu_percent = match marks_start.1.zip(marks_end.1) {
        Some((a, b)) => a.percent_until(&b),
        None => None,
    };
    if let Some(sampler) = sampler {
        let cpu_percent = match marks_start.0.zip(marks_end.0) {
            Some((a, b)) => a.percent_until(&b),
            None => None,
        };
        outcome.server = Some(sampler.finish(cpu_percent).await);
    }
    outcome
}

/// One connection's life: send per the pacing until `send_end`, account
/// for every frame, settle when everything owed has arrived, stop when
/// told.
async fn drive(
    mut ws: Ws,
    conn: u32,
    link: Arc<ChatLink>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ConnOutcome {
    let me = (conn % 2) as usize;
    let other = 1 - me;
    let mut ledger = ConnLedger::new(shared.run, conn, peer_of(conn));
    let mut out = ConnOutcome {
        ledger: ConnLedger::new(shared.run, conn, peer_of(conn)),
        send_lag_us: Vec::new(),
        ack_timeouts: 0,
        disconnected: false,
    };
    let window = shared.window;
    let mut sending = true;
    let mut settled = false;
    // Closed loop: the sequence number whose echo is awaited.
    let mut awaiting: Option<u64> = None;
    // Rate: when the next message is due; closed loop: when to give up
    // waiting for the echo.
    let mut due = match shared.pacing {
        Pacing::Rate { period } => {
            // Spread the connections' schedules evenly over one period so
            // they do not all send in the same instant.
            let phase = period.mul_f64(f64::from(conn) / shared.connections.max(1) as f64);
            shared.origin + phase
        }
        Pacing::Closed { .. } => shared.origin,
    };
    let timer = tokio::time::sleep_until(due.min(shared.send_end).into());
    tokio::pin!(timer);

    loop {
        if !sending && !settled && link.done[other].load(Ordering::Acquire) {
            let peer_sent = link.sent[other].load(Ordering::Acquire);
            if ledger.has_all(peer_sent) {
                settled = true;
                shared.settled.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            // The peer finished sending: re-check whether all has arrived.
            _ = link.wake[me].notified(), if !settled => {}
            _ = &mut timer, if sending => {
                let now = Instant::now();
                let sent_ok = match shared.pacing {
                    Pacing::Closed { .. } if now >= shared.send_end => true,
                    Pacing::Closed { ack_timeout } => {
                        if awaiting.is_some() {
                            out.ack_timeouts += 1;
                        }
                        let ok = send(&mut ws, &mut ledger, &shared, now, &mut out).await;
                        awaiting = Some(ledger.sent - 1);
                        due = now + ack_timeout;
                        ok
                    }
                    Pacing::Rate { period } => {
                        // Everything due by now goes out, each stamped with
                        // its scheduled time: a late send shows up as
                        // latency instead of silently thinning the load
                        // (even when the timer fires after the end).
                        let mut ok = true;
                        while ok && due <= now && due < shared.send_end {
                            ok = send(&mut ws, &mut ledger, &shared, due, &mut out).await;
                            due += period;
                        }
                        ok
                    }
                };
                if !sent_ok {
                    out.disconnected = true;
                    break;
                }
                if now >= shared.send_end {
                    finish_sending(&mut sending, &ledger, &link, me, other);
                    continue;
                }
                timer.as_mut().reset(due.min(shared.send_end).into());
            }
            frame = ws.next() => {
                let received_ns = shared.ns_since_origin(Instant::now());
                match frame {
                    Some(Ok(Message::Text(text))) => match Incoming::parse(&text) {
                        Incoming::Message(tag) => {
                            let reception = ledger.on_message(tag, received_ns, &window);
                            let acked = matches!(reception, Reception::OwnFirst { seq } if Some(seq) == awaiting);
                            if acked {
                                awaiting = None;
                                if sending {
                                    // Send the next one right away (the
                                    // timer branch does it at once).
                                    due = Instant::now();
                                    timer.as_mut().reset(due.min(shared.send_end).into());
                                }
                            }
                        }
                        Incoming::Error => {
                            ledger.on_error_frame();
                            // With one message in flight the error is its
                            // answer: move on rather than wait for the
                            // ack timeout.
                            if awaiting.take().is_some() && sending {
                                due = Instant::now();
                                timer.as_mut().reset(due.min(shared.send_end).into());
                            }
                        }
                        Incoming::Other => ledger.foreign += 1,
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        out.disconnected = true;
                        break;
                    }
                    // Pings are answered by tungstenite itself.
                    Some(Ok(_)) => {}
                }
            }
        }
    }

    if sending {
        finish_sending(&mut sending, &ledger, &link, me, other);
    }
    if !settled {
        // Gone or stopped: nothing more to wait for either way.
        shared.settled.fetch_add(1, Ordering::Relaxed);
    }
    if !out.disconnected {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    out.ledger = ledger;
    out
}

/// Sends the next message of this connection, stamped `stamp`; `false`
/// when the socket is gone.
async fn send(
    ws: &mut Ws,
    ledger: &mut ConnLedger,
    shared: &Shared,
    stamp: Instant,
    out: &mut ConnOutcome,
) -> bool {
    let tag = Tag {
        run: shared.run,
        sender: ledger.conn,
        seq: ledger.sent,
        sent_at_ns: shared.ns_since_origin(stamp),
    };
    let frame = tag.frame(shared.body_bytes);
    let now = Instant::now();
    if let Pacing::Rate { .. } = shared.pacing {
        if shared.window.contains(tag.sent_at_ns) {
            let lag = now.saturating_duration_since(stamp).as_micros();
            out.send_lag_us.push(u32::try_from(lag).unwrap_or(u32::MAX));
        }
    }
    if !conn::send_text(ws, frame).await {
        return false;
    }
    ledger.sent += 1;
    true
}

/// Publishes this connection's final count and wakes the peer.
fn finish_sending(
    sending: &mut bool,
    ledger: &ConnLedger,
    link: &ChatLink,
    me: usize,
    other: usize,
) {
    *sending = false;
    link.sent[me].store(ledger.sent, Ordering::Release);
    link.done[me].store(true, Ordering::Release);
    link.wake[other].notify_one();
}
