//! The fan-out thread: delivering off the writer's thread.
//!
//! The writer thread stores batch after batch; everything it does besides
//! inserting delays the next commit. Delivering an event (encode it, find
//! its sockets, enqueue, wake each session) costs about a third of an
//! insert, so the writer hands committed events to this thread and goes back
//! to storing: batch N is delivered while batch N+1 is written.
//!
//! Order is kept: events are handed over in commit order (the message
//! service publishes under one lock) and one thread delivers them in the
//! order received. The hand-over queue is bounded; if delivery ever falls
//! that far behind, the writer waits, except for typing and presence, which
//! are dropped rather than making anyone wait.

use std::sync::mpsc;

use chat_domain::chat::{Broadcaster, ChatEvent};

use super::hub::Hub;

/// The [`Broadcaster`] the services are given: queues each event for the
/// thread that delivers it through the hub.
#[derive(Clone)]
pub struct FanOut {
    queue: mpsc::SyncSender<ChatEvent>,
}

impl FanOut {
    /// Starts the thread. It stops once every `FanOut` handle is dropped and
    /// what was queued is delivered; join it then.
    pub fn start(
        hub: Hub,
        capacity: usize,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, queued) = mpsc::sync_channel::<ChatEvent>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("fan-out".into())
            .spawn(move || {
                for event in queued {
                    hub.deliver(&event);
                }
            })?;
        Ok((Self { queue }, thread))
    }
}

impl Broadcaster for FanOut {
    fn publish(&self, event: ChatEvent) {
        // Either fails only once the thread is gone, at shutdown: what was
        // stored is found in history by whoever reconnects.
        if event.is_ephemeral() {
            let _ = self.queue.try_send(event);
        } else {
            let _ = self.queue.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::hub::tests::{hub, stored};
    use chat_domain::user::UserId;
    use std::time::Duration;

    #[test]
    fn events_reach_the_hub_in_the_order_handed_over() {
        let hub = hub();
        let mut member = hub.join_user(UserId::new(2), 1000);
        let (fan_out, thread) = FanOut::start(hub.clone(), 4).unwrap();

        for seq in 1..=500 {
            fan_out.publish(stored(1, seq, None));
        }
        drop(fan_out);
        thread.join().unwrap();

        let mut received = Vec::new();
        while let Ok(outbound) = member.outbound.try_recv() {
            let frame: serde_json::Value = serde_json::from_str(&outbound.frame).unwrap();
            received.push(frame["message"]["seq"].as_i64().unwrap());
        }
        assert_eq!(received, (1..=500).collect::<Vec<_>>());
    }

    #[test]
    fn the_thread_stops_when_the_last_handle_is_dropped() {
        let (fan_out, thread) = FanOut::start(hub(), 4).unwrap();
        drop(fan_out);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(thread.is_finished());
    }
}
