//! Deep paging over REST (`v2-paging`): fill one chat with `history`
//! messages from its first participant's v2 socket (pipelined), then time
//! `GET /api/chats/<id>/messages/?before=<seq>&limit=<n>` on one keep-alive
//! connection, `before` drawn at random from the chat's older 90 %: far from
//! the newest pages a client usually reads, where a page read by offset
//! rather than by key would cost the most.
//!
//! Every reply is checked: `200`, exactly the `limit` messages just before
//! `before`, oldest first, and the right `has_more_before` and `head_seq`.

use std::time::Instant;

use serde_json::Value;

use crate::accounting::Percentiles;
use crate::live::connect_all;
use crate::plan::Plan;
use crate::report::PagingStats;
use crate::resources::{CpuMark, RssSampler, ServerResources};
use crate::scenario::Scenario;
use crate::setup::Api;
use crate::target::Target;
use crate::v2;
use crate::BenchError;

/// Untimed requests first (connection set-up, caches).
const WARMUP_REQUESTS: usize = 10;

pub(crate) struct PagingOutcome {
    pub stats: PagingStats,
    /// Over the timed requests.
    pub server: Option<ServerResources>,
}

pub(crate) async fn run(
    target: &Target,
    plan: &Plan,
    scenario: &Scenario,
) -> Result<PagingOutcome, BenchError> {
    let chat = plan
        .chats
        .first()
        .ok_or_else(|| BenchError::Invalid("v2-paging needs a chat".into()))?;
    let count = scenario.history() as u64;
    let (sockets, _) = connect_all(target, plan, &[0], scenario).await;
    let mut ws = sockets
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Invalid("no filler socket".into()))??
        .ws;
    let started = Instant::now();
    let filled = v2::fill(
        &mut ws,
        chat.id,
        0,
        scenario.run_id,
        count,
        scenario.body_bytes,
        Some("v2-paging: fill"),
    )
    .await;
    let fill_s = started.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    eprintln!(
        "v2-paging: {} messages stored in {fill_s:.1} s ({} refused)",
        filled.acked, filled.errors
    );

    let limit = scenario.page_limit();
    let head = filled.head_seq;
    if head <= limit as u64 {
        return Err(BenchError::Invalid(format!(
            "v2-paging: the chat holds {head} messages, not more than one page of {limit}"
        )));
    }
    let (api, token, chat_id) = (
        Api::new(target),
        chat.participants[1].token.clone(),
        chat.id,
    );
    let (requests, mut random) = (scenario.requests, SplitMix(scenario.run_id));
    let sampler = scenario.server_pid.map(RssSampler::start);
    let cpu_start = scenario.server_pid.and_then(CpuMark::now);
    let stats = tokio::task::spawn_blocking(move || {
        let (lowest, deepest) = depth_range(head, limit);
        let mut stats = PagingStats {
            messages: head,
            fill_s,
            fill_per_s: filled.acked as f64 / fill_s.max(1e-9),
            limit,
            requests,
            lowest_before: lowest,
            highest_before: deepest,
            errors: 0,
            first_error: None,
            response_bytes: 0,
            latency_ms: None,
        };
        let mut samples = Vec::with_capacity(requests);
        for i in 0..WARMUP_REQUESTS + requests {
            let before = lowest + random.next() % (deepest - lowest + 1);
            let path = format!("/api/chats/{chat_id}/messages/?before={before}&limit={limit}");
            let started = Instant::now();
            let (status, text) = api.get_text(&path, Some(&token))?;
            let took = started.elapsed();
            if let Err(error) = check_page(status, &text, before, limit, head) {
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| format!("{path}: {error}"));
            }
            stats.response_bytes = text.len();
            if i >= WARMUP_REQUESTS {
                samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
        }
        stats.latency_ms = Percentiles::of_us(samples);
        Ok::<_, BenchError>(stats)
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
    Ok(PagingOutcome { stats, server })
}

/// The `before` values drawn from: every full page below 90 % of the head.
fn depth_range(head: u64, limit: usize) -> (u64, u64) {
    let lowest = limit as u64 + 1;
    (lowest, (head - head / 10).max(lowest))
}

/// Whether a reply is the page of `limit` messages before `before` in a chat
/// of `head` messages.
fn check_page(status: u16, text: &str, before: u64, limit: usize, head: u64) -> Result<(), String> {
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let body: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let seqs: Vec<Option<u64>> = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("no messages")?
        .iter()
        .map(|m| m.get("seq").and_then(Value::as_u64))
        .collect();
    let first = before.saturating_sub(limit as u64).max(1);
    let want: Vec<Option<u64>> = (first..before).map(Some).collect();
    if seqs != want {
        let got = |i: usize| seqs.get(i).copied().flatten();
        return Err(format!(
            "{} messages, seq {:?}..{:?}; wanted {first}..{}",
            seqs.len(),
            got(0),
            seqs.len().checked_sub(1).and_then(got),
            before - 1
        ));
    }
    let flag = |name: &str| body.get(name).and_then(Value::as_bool);
    if flag("has_more_before") != Some(first > 1) {
        return Err(format!("has_more_before {:?}", body.get("has_more_before")));
    }
    if flag("has_more_after") != Some(true) {
        return Err(format!("has_more_after {:?}", body.get("has_more_after")));
    }
    if body.get("head_seq").and_then(Value::as_u64) != Some(head) {
        return Err(format!(
            "head_seq {:?}, wanted {head}",
            body.get("head_seq")
        ));
    }
    Ok(())
}

/// splitmix64: reproducible depths from the run id, no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: std::ops::Range<u64>, before: bool, after: bool, head: u64) -> String {
        let messages: Vec<Value> = seqs.map(|s| serde_json::json!({"seq": s})).collect();
        serde_json::json!({"messages": messages, "has_more_before": before,
            "has_more_after": after, "head_seq": head})
        .to_string()
    }

    #[test]
    fn the_page_before_a_seq_is_checked_exactly() {
        assert_eq!(
            check_page(200, &page(50..100, true, true, 1000), 100, 50, 1000),
            Ok(())
        );
        // The first page of the chat has nothing before it.
        assert_eq!(
            check_page(200, &page(1..51, false, true, 1000), 51, 50, 1000),
            Ok(())
        );
        for (reply, why) in [
            (page(51..101, true, true, 1000), "shifted"),
            (page(51..100, true, true, 1000), "short"),
            (page(50..100, false, true, 1000), "has_more_before"),
            (page(50..100, true, false, 1000), "has_more_after"),
            (page(50..100, true, true, 999), "head"),
        ] {
            assert!(check_page(200, &reply, 100, 50, 1000).is_err(), "{why}");
        }
        assert!(check_page(500, "{}", 100, 50, 1000).is_err());
    }

    #[test]
    fn depths_stay_in_the_older_ninety_percent() {
        assert_eq!(depth_range(1_000_000, 50), (51, 900_000));
        assert_eq!(depth_range(60, 50), (51, 54));
        let mut r = SplitMix(1);
        assert_ne!(r.next(), r.next());
    }
}
