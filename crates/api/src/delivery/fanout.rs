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
use std::sync::Arc;
use std::time::Instant;

use chat_domain::chat::{
    Broadcaster, ChatEvent, ChatId, ChatRepository, MessageId, MessageRepository, Seq,
};

use super::hub::Hub;
use super::relay::{Relay, Remote};
use super::sequencer::{Delivery, Sequencer};

/// What the fan-out thread is handed, in order.
pub enum Input {
    /// An event this instance committed, and when it was handed over
    /// (right after the commit).
    Local(ChatEvent, Instant),
    /// One from another instance (cluster only).
    Remote(Remote),
    /// Follow these chats from the position given (cluster only).
    Track(Vec<(ChatId, Seq)>),
    Untrack(Vec<ChatId>),
    /// Answered once everything before it is done.
    Confirm(tokio::sync::oneshot::Sender<()>),
    /// Compare every followed chat with the database (cluster only).
    Resync,
    /// Deliver what is queued before this, then end.
    Stop,
}

/// The [`Broadcaster`] the services are given: queues each event for the
/// thread that delivers it through the hub.
#[derive(Clone)]
pub struct FanOut {
    queue: mpsc::SyncSender<Input>,
}

/// What a fan-out thread of a cluster needs besides the hub: the database
/// (the truth the [`Sequencer`] checks Redis against) and the relay.
pub struct ClusterParts {
    pub messages: Arc<dyn MessageRepository>,
    pub chats: Arc<dyn ChatRepository>,
    pub redis_url: String,
    pub resync_every: std::time::Duration,
    pub presence: super::relay::PresenceParts,
    pub sessions: super::relay::SessionParts,
}

impl FanOut {
    /// Starts the thread. It stops once every `FanOut` handle is dropped and
    /// what was queued is delivered; join it then.
    pub fn start(
        hub: Hub,
        capacity: usize,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, queued) = mpsc::sync_channel::<Input>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("fan-out".into())
            .spawn(move || {
                for input in queued {
                    match input {
                        Input::Local(event, committed) => {
                            let _ = hub.deliver_reporting_typing_end(&event, Some(committed));
                        }
                        Input::Confirm(done) => {
                            let _ = done.send(());
                        }
                        Input::Stop => break,
                        Input::Remote(_) | Input::Track(_) | Input::Untrack(_) | Input::Resync => {}
                    }
                }
            })?;
        Ok((Self { queue }, thread))
    }

    /// Starts the thread of one instance of a cluster, with its Redis relay.
    /// The relay holds a handle too, so stop it with [`FanOut::stop`].
    pub fn start_clustered(
        hub: Hub,
        capacity: usize,
        parts: ClusterParts,
    ) -> std::io::Result<(Self, Relay, std::thread::JoinHandle<()>)> {
        let (queue, queued) = mpsc::sync_channel::<Input>(capacity.max(1));
        let relay = Relay::start(
            &parts.redis_url,
            queue.clone(),
            parts.resync_every,
            parts.presence,
            parts.sessions,
        )
        .map_err(std::io::Error::other)?;
        let thread_relay = relay.clone();
        let thread = std::thread::Builder::new()
            .name("fan-out".into())
            .spawn(move || {
                let mut cluster = ClusteredDelivery {
                    hub,
                    relay: thread_relay,
                    sequencer: Sequencer::new(),
                    messages: parts.messages,
                    chats: parts.chats,
                };
                for input in queued {
                    if !cluster.handle(input) {
                        break;
                    }
                }
            })?;
        Ok((Self { queue }, relay, thread))
    }

    /// Ends the thread after what is queued (needed in a cluster, where the
    /// relay keeps the queue open).
    pub fn stop(&self) {
        let _ = self.queue.send(Input::Stop);
    }
}

impl Broadcaster for FanOut {
    fn publish(&self, event: ChatEvent) {
        // Either fails only once the thread is gone, at shutdown: what was
        // stored is found in history by whoever reconnects.
        if event.is_ephemeral() {
            let _ = self.queue.try_send(Input::Local(event, Instant::now()));
        } else {
            let _ = self.queue.send(Input::Local(event, Instant::now()));
        }
    }
}

/// The fan-out thread's state in a cluster.
struct ClusteredDelivery {
    hub: Hub,
    relay: Relay,
    sequencer: Sequencer,
    messages: Arc<dyn MessageRepository>,
    chats: Arc<dyn ChatRepository>,
}

impl ClusteredDelivery {
    /// False at `Stop`.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Local(event, committed) => {
                self.relay.publish(&event);
                self.apply(event, Some(committed));
            }
            Input::Remote(Remote::Event(event)) => self.apply(event, None),
            Input::Remote(Remote::ChatCreated { chat, viewer }) => {
                match self.chats.chat_summary(viewer, chat) {
                    Ok(Some(view)) => self.hub.deliver_chat_view(&view),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%chat, %error, "cannot read a new chat; its user sees it at the next hello");
                    }
                }
            }
            Input::Track(chats) => {
                let out = self.sequencer.track(&chats, self.messages.as_ref());
                self.deliver(out, None);
            }
            Input::Untrack(chats) => {
                for chat in chats {
                    self.sequencer.untrack(chat);
                }
            }
            Input::Confirm(done) => {
                let _ = done.send(());
            }
            Input::Resync => {
                let out = self.sequencer.resync(self.messages.as_ref());
                self.deliver(out, None);
            }
            Input::Stop => return false,
        }
        true
    }

    /// `committed`: when this instance committed it (`None`: another
    /// instance did).
    fn apply(&mut self, event: ChatEvent, committed: Option<Instant>) {
        if let ChatEvent::MessageStored { message, .. } = &event {
            let local = committed.map(|at| (message.id, at));
            let out = self.sequencer.message(event, self.messages.as_ref());
            self.deliver(out, local);
        } else {
            self.hub.deliver(&event);
        }
    }

    /// `local`: the message this instance just committed, and when; the
    /// others in `out` (held past a gap, read from the database) carry no
    /// commit time.
    fn deliver(&mut self, out: Vec<Delivery>, local: Option<(MessageId, Instant)>) {
        let repaired = self.sequencer.take_repaired();
        if repaired > 0 {
            self.hub.metrics().gaps_repaired(repaired);
        }
        for delivery in out {
            match delivery {
                Delivery::Event(event) => {
                    let committed = match (&event, local) {
                        (ChatEvent::MessageStored { message, .. }, Some((id, at)))
                            if message.id == id =>
                        {
                            Some(at)
                        }
                        _ => None,
                    };
                    // The typer is on this instance: their typing ended
                    // with the message, for the other instances too.
                    if let Some(stopped) = self.hub.deliver_reporting_typing_end(&event, committed)
                    {
                        self.relay.publish(&stopped);
                    }
                }
                Delivery::AckOnly { message, origin } => self.hub.acknowledge(&message, origin),
            }
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
