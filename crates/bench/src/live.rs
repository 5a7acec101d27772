//! Live traffic: every chat's two participants connected, sending in a
//! closed loop or at a fixed rate, then a drain until every owed delivery
//! has arrived (or the drain time is up). Either protocol: on a seed socket
//! the sender's copy is its echo, on a v2 socket its `ack`; v2 sockets may
//! also send `typing` on a schedule of their own.
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
use crate::scenario::{Protocol, Scenario};
use crate::tag::Tag;
use crate::target::Target;
use crate::v2::{self, Frame, Hello};

/// After everything owed has arrived, keep reading this long so that late
/// duplicates are still counted.
const DUPLICATE_GRACE: Duration = Duration::from_millis(150);

/// Lets the tasks spawn and wait before the first send, so all start
/// together.
const START_DELAY: Duration = Duration::from_millis(50);

/// An open socket; a v2 socket with its `hello`.
pub(crate) struct Connected {
    pub ws: Ws,
    pub hello: Option<Hello>,
}

/// Opens the sockets of connections `conns` (indexes into the plan's
/// connections) over the scenario's protocol, `connect_concurrency`
/// handshakes at a time. Returns each socket (or why it failed), in the
/// order of `conns`, and the timings: until the `101` for seed sockets,
/// until the `hello` for v2 sockets (only then has a v2 socket joined the
/// fan-out).
pub(crate) async fn connect_all(
    target: &Target,
    plan: &Plan,
    conns: &[usize],
    scenario: &Scenario,
) -> (Vec<Result<Connected, ConnectError>>, ConnectStats) {
    let permits = Arc::new(Semaphore::new(scenario.connect_concurrency.max(1)));
    let protocol = scenario.mode.protocol();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (slot, &conn) in conns.iter().enumerate() {
        let Some((chat, participant)) = plan.participant(conn) else {
            continue;
        };
        let instance = target.for_conn(conn);
        let url = match protocol {
            Protocol::Seed => instance.ws_url(chat.id, &participant.token),
            Protocol::V2 => instance.ws_v2_url(&participant.token),
        };
        let addr = instance.addr;
        let source = conn::source_for(conn, scenario.source_ips);
        let timeout = scenario.connect_timeout;
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = match protocol {
                Protocol::Seed => conn::connect(addr, &url, source, timeout)
                    .await
                    .map(|(ws, took)| (Connected { ws, hello: None }, took)),
                Protocol::V2 => {
                    v2::connect(addr, &url, source, timeout)
                        .await
                        .map(|(ws, took, hello)| {
                            let hello = Some(hello);
                            (Connected { ws, hello }, took)
                        })
                }
            };
            (slot, result)
        });
    }
    let mut sockets: Vec<Option<Result<Connected, ConnectError>>> =
        conns.iter().map(|_| None).collect();
    let mut times_us = Vec::with_capacity(conns.len());
    while let Some(joined) = tasks.join_next().await {
        if let Ok((slot, result)) = joined {
            sockets[slot] = Some(result.map(|(connected, took)| {
                times_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                connected
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
    /// v2 with typing: `typing` frames sent, and typing events received.
    pub typing_sent: u64,
    pub typing_received: u64,
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
    protocol: Protocol,
    /// v2: how often each socket sends `typing active:true`.
    typing: Option<Duration>,
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
    typing_sent: u64,
    typing_received: u64,
}

/// Runs closed-loop or rate traffic over `plan`.
pub(crate) async fn run(target: &Target, plan: &Plan, scenario: &Scenario) -> LiveOutcome {
    let sampler = scenario.server_pid.map(RssSampler::start);
    let conns: Vec<usize> = (0..plan.connections()).collect();
    let (sockets, connect) = connect_all(target, plan, &conns, scenario).await;

    // A chat takes part only if both its sockets opened: otherwise nothing
    // sent in it could reach everyone it is owed to.
    let mut sockets: Vec<Option<Ws>> = sockets.into_iter().map(|s| s.ok().map(|c| c.ws)).collect();
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
    let pacing = if scenario.mode.is_rate() {
        Pacing::Rate {
            period: Duration::from_secs_f64(1.0 / scenario.rate.max(0.001)),
        }
    } else {
        Pacing::Closed {
            ack_timeout: scenario.ack_timeout,
        }
    };
    let shared = Arc::new(Shared {
        protocol: scenario.mode.protocol(),
        typing: scenario.typing_interval.filter(|d| !d.is_zero()),
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
            let chat_id = plan.chats[conn / 2].id;
            tasks.spawn(drive(
                ws,
                conn as u32,
                chat_id,
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
        typing_sent: 0,
        typing_received: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        if let Ok(conn) = joined {
            outcome.ledgers.push(conn.ledger);
            outcome.send_lag_us.extend(conn.send_lag_us);
            outcome.ack_timeouts += conn.ack_timeouts;
            outcome.disconnects += u64::from(conn.disconnected);
            outcome.typing_sent += conn.typing_sent;
            outcome.typing_received += conn.typing_received;
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
    chat_id: i64,
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
        typing_sent: 0,
        typing_received: 0,
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
    // Typing, on its own schedule, spread over one interval like the sends.
    let mut typing_due = shared.typing.map(|every| {
        shared.origin + every.mul_f64(f64::from(conn) / shared.connections.max(1) as f64)
    });
    let typing_timer = tokio::time::sleep_until(
        typing_due
            .unwrap_or(shared.send_end)
            .min(shared.send_end)
            .into(),
    );
    tokio::pin!(typing_timer);

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
            _ = &mut typing_timer, if sending && typing_due.is_some() => {
                if let (Some(at), Some(every)) = (typing_due, shared.typing) {
                    if Instant::now() < shared.send_end {
                        if !conn::send_text(&mut ws, v2::typing_frame(chat_id, true)).await {
                            out.disconnected = true;
                            break;
                        }
                        out.typing_sent += 1;
                    }
                    let next = at + every;
                    typing_due = (next < shared.send_end).then_some(next);
                    typing_timer.as_mut().reset(next.min(shared.send_end).into());
                }
            }
            _ = &mut timer, if sending => {
                let now = Instant::now();
                let sent_ok = match shared.pacing {
                    Pacing::Closed { .. } if now >= shared.send_end => true,
                    Pacing::Closed { ack_timeout } => {
                        if awaiting.is_some() {
                            out.ack_timeouts += 1;
                        }
                        let ok = send(&mut ws, chat_id, &mut ledger, &shared, now, &mut out).await;
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
                            ok = send(&mut ws, chat_id, &mut ledger, &shared, due, &mut out).await;
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
                    Some(Ok(Message::Text(text))) => match Inbound::parse(shared.protocol, &text) {
                        Inbound::Message { message, ack } => {
                            let reception = match message {
                                Carried::Seed(tag) => ledger.on_message(tag, received_ns, &window),
                                Carried::V2(m) if m.chat_id == chat_id => {
                                    ledger.on_v2_message(&m, ack, received_ns, &window)
                                }
                                // A socket of a user with one chat: a message
                                // of another chat has no business here.
                                Carried::V2(_) => {
                                    ledger.misrouted += 1;
                                    Reception::Misrouted
                                }
                            };
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
                        Inbound::Error => {
                            ledger.on_error_frame();
                            // With one message in flight the error is its
                            // answer: move on rather than wait for the
                            // ack timeout.
                            if awaiting.take().is_some() && sending {
                                due = Instant::now();
                                timer.as_mut().reset(due.min(shared.send_end).into());
                            }
                        }
                        Inbound::Event { typing } => {
                            ledger.events += 1;
                            out.typing_received += u64::from(typing);
                        }
                        Inbound::Other => ledger.foreign += 1,
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
    chat_id: i64,
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
    let frame = match shared.protocol {
        Protocol::Seed => tag.frame(shared.body_bytes),
        Protocol::V2 => v2::send_frame(chat_id, &tag, shared.body_bytes),
    };
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

/// A received message, in either protocol's terms.
enum Carried {
    Seed(Option<Tag>),
    V2(v2::Msg),
}

/// A server frame as the live loop reads it.
enum Inbound {
    /// A message (seed), or a v2 `message` or `ack` (`ack: Some(duplicate)`).
    Message {
        message: Carried,
        ack: Option<bool>,
    },
    Error,
    /// A valid v2 frame that carries no message (typing, presence, ...).
    Event {
        typing: bool,
    },
    Other,
}

impl Inbound {
    fn parse(protocol: Protocol, text: &str) -> Self {
        match protocol {
            Protocol::Seed => match Incoming::parse(text) {
                Incoming::Message(tag) => Inbound::Message {
                    message: Carried::Seed(tag),
                    ack: None,
                },
                Incoming::Error => Inbound::Error,
                Incoming::Other => Inbound::Other,
            },
            Protocol::V2 => match Frame::parse(text) {
                Frame::Message(m) => Inbound::Message {
                    message: Carried::V2(m),
                    ack: None,
                },
                Frame::Ack { message, duplicate } => Inbound::Message {
                    message: Carried::V2(message),
                    ack: Some(duplicate),
                },
                Frame::Error { .. } => Inbound::Error,
                Frame::Typing => Inbound::Event { typing: true },
                // A second hello, or a history this loop never asked for, is
                // as unexpected as a frame outside the protocol.
                Frame::Event => Inbound::Event { typing: false },
                Frame::Hello(_) | Frame::History { .. } | Frame::Other => Inbound::Other,
            },
        }
    }
}
