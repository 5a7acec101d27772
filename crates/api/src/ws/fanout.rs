//! The fan-out thread: broadcasting off the writer's thread.
//!
//! The writer thread stores batch after batch; everything it does besides
//! inserting delays the next commit. Broadcasting a message (serialise the
//! frame, find the chat's connections, enqueue, wake each session) costs
//! about a third of an insert, so the writer hands committed messages to
//! this thread and goes back to storing: batch N is broadcast while batch
//! N+1 is written.
//!
//! Order is kept: one writer hands messages over in commit (id) order, and
//! one thread delivers them in the order received. The hand-over queue is
//! bounded; if broadcasting ever falls that far behind, the writer waits.

use std::sync::mpsc;

use chat_domain::chat::{Broadcaster, DirectMessage};

/// A [`Broadcaster`] that queues each message for a thread that delivers it
/// through the wrapped broadcaster (the hub).
pub struct FanOut {
    queue: mpsc::SyncSender<DirectMessage>,
}

impl FanOut {
    /// Starts the thread. It stops once every `FanOut` handle is dropped and
    /// what was queued is delivered; join it then.
    pub fn start(
        deliver_with: impl Broadcaster,
        capacity: usize,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, queued) = mpsc::sync_channel::<DirectMessage>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("fan-out".into())
            .spawn(move || {
                for message in queued {
                    deliver_with.broadcast(&message);
                }
            })?;
        Ok((Self { queue }, thread))
    }
}

impl Broadcaster for FanOut {
    fn broadcast(&self, message: &DirectMessage) {
        // Fails only once the thread is gone, at shutdown: the message is
        // stored, and sessions closing now find it in their history.
        let _ = self.queue.send(message.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::hub::tests::message;
    use crate::ws::Hub;
    use chat_domain::chat::ChatId;
    use std::time::Duration;

    #[test]
    fn messages_reach_the_hub_in_the_order_handed_over() {
        let hub = Hub::new();
        let mut member = hub.join(ChatId::new(1), 1000);
        let (fan_out, thread) = FanOut::start(hub.clone(), 4).unwrap();

        for id in 1..=500 {
            fan_out.broadcast(&message(1, id));
        }
        drop(fan_out);
        thread.join().unwrap();

        let mut received = Vec::new();
        while let Ok(outbound) = member.outbound.try_recv() {
            received.push(outbound.id.get());
        }
        assert_eq!(received, (1..=500).collect::<Vec<_>>());
    }

    #[test]
    fn the_thread_stops_when_the_last_handle_is_dropped() {
        let (fan_out, thread) = FanOut::start(Hub::new(), 4).unwrap();
        drop(fan_out);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(thread.is_finished());
    }
}
