//! `GET /api/chats/` latency for one user with many chats: set the user up
//! with `chats` chats (each with a few messages, so every entry has a last
//! message), then time sequential requests on one keep-alive connection,
//! each from the request to its response's last byte (the client's JSON
//! parse and check of the entries come after).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::Percentiles;
use crate::conn::{self, Incoming};
use crate::report::ChatListStats;
use crate::resources::{CpuMark, RssSampler, ServerResources};
use crate::scenario::Scenario;
use crate::setup::{self, Api};
use crate::tag::Tag;
use crate::target::Target;
use crate::BenchError;

/// Untimed requests first (connection set-up, caches).
const WARMUP_REQUESTS: usize = 10;

pub(crate) struct ChatListOutcome {
    pub setup_seconds: f64,
    pub users: usize,
    pub stats: ChatListStats,
    /// Over the timed requests.
    pub server: Option<ServerResources>,
}

pub(crate) async fn run(
    target: &Target,
    scenario: &Scenario,
) -> Result<ChatListOutcome, BenchError> {
    let started = Instant::now();
    let api = Api::new(target);
    let (hub, chat_ids) = {
        let (api, run, chats, workers) = (
            api.clone(),
            scenario.run_id,
            scenario.chats,
            scenario.setup_concurrency,
        );
        tokio::task::spawn_blocking(move || setup::hub(&api, run, chats, workers)).await??
    };

    // Give every chat a last message, from the hub user's own socket.
    let per_chat = scenario.history();
    if per_chat > 0 {
        let permits = Arc::new(Semaphore::new(scenario.connect_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for (i, &chat) in chat_ids.iter().enumerate() {
            let url = target.ws_url(chat, &hub.token);
            let (addr, source) = (target.addr, conn::source_for(i, scenario.source_ips));
            let (timeout, permits) = (scenario.connect_timeout, permits.clone());
            let (run, body_bytes) = (scenario.run_id, scenario.body_bytes);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let (mut ws, _) = conn::connect(addr, &url, source, timeout).await?;
                for seq in 0..per_chat as u64 {
                    let tag = Tag {
                        run,
                        sender: i as u32,
                        seq,
                        sent_at_ns: 0,
                    };
                    if !conn::send_text(&mut ws, tag.frame(body_bytes)).await {
                        return Err(BenchError::Socket("send failed".into()));
                    }
                    // Wait for the echo: the message is committed.
                    loop {
                        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                            .await
                            .map_err(|_| BenchError::Socket("no echo within 30 s".into()))?;
                        match frame {
                            Some(Ok(Message::Text(text))) => match Incoming::parse(&text) {
                                Incoming::Message(Some(t)) if t.run == run && t.seq == seq => break,
                                Incoming::Error => {
                                    return Err(BenchError::Socket("error frame".into()))
                                }
                                _ => {}
                            },
                            Some(Ok(_)) => {}
                            _ => return Err(BenchError::Socket("socket closed".into())),
                        }
                    }
                }
                let _ = ws.close(None).await;
                Ok::<(), BenchError>(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
    }
    let setup_seconds = started.elapsed().as_secs_f64();
    eprintln!("chat-list: setup done in {setup_seconds:.1} s");

    let (requests, chats) = (scenario.requests, chat_ids.len());
    let sampler = scenario.server_pid.map(RssSampler::start);
    let cpu_start = scenario.server_pid.and_then(CpuMark::now);
    let stats = tokio::task::spawn_blocking(move || {
        let mut errors = 0;
        let mut response_bytes = 0;
        let mut samples = Vec::with_capacity(requests);
        for i in 0..WARMUP_REQUESTS + requests {
            // Timed to the response's last byte. Parsing 1,000 entries
            // (360 KB) took this client longer than the relay took to
            // answer, so the check comes after the clock stops.
            let started = Instant::now();
            let (status, text) = api.get_text("/api/chats/", Some(&hub.token))?;
            let took = started.elapsed();
            let entries = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|body| body.as_array().map(Vec::len));
            if status != 200 || entries != Some(chats) {
                errors += 1;
            }
            response_bytes = text.len();
            if i >= WARMUP_REQUESTS {
                samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
        }
        Ok::<_, BenchError>(ChatListStats {
            chats,
            messages_per_chat: per_chat,
            requests,
            errors,
            response_bytes,
            latency_ms: Percentiles::of_us(samples),
        })
    })
    .await??;
    let cpu_percent = match (cpu_start, scenario.server_pid.and_then(CpuMark::now)) {
        (Some(a), Some(b)) => a.percent_until(&b),
        _ => None,
    };
    let server = match sampler {
        Some(sampler) => Some(sampler.finish(cpu_percent).await),
        None => None,
    };
    Ok(ChatListOutcome {
        setup_seconds,
        users: chats + 1,
        stats,
        server,
    })
}
