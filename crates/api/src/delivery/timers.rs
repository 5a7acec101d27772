//! The timers thread: the delayed half of presence and typing.
//!
//! It announces users who came online (to the users who share a chat with
//! them), ends typing whose timer ran out, and, once a user's presence
//! grace period is over, stores their `last_seen` and announces them
//! offline. It ticks a few times per shortest period, so a 6 s typing
//! timer ends within a quarter of a second of its time; the database work
//! (whom to tell, `last_seen`) runs here, never on a socket's task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use chat_domain::chat::{Broadcaster, ChatEvent, ChatService};
use chat_domain::user::{UserId, UserRepository};
use chrono::{DateTime, Utc};

use super::cluster_presence::{RemoteChange, RemotePresence};
use super::presence::{LocalPresence, PresenceRegistry as _};
use super::relay::Relay;
use super::typing::TypingRegistry;
use crate::error::error_chain;

/// The running thread; [`Timers::stop`] ends it.
pub struct Timers {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// What the thread works with.
pub struct TimerWork {
    pub presence: Arc<LocalPresence>,
    pub typing: Arc<dyn TypingRegistry>,
    /// How long typing lasts: with the grace period, sets the tick.
    pub typing_ttl: Duration,
    pub chats: ChatService,
    pub users: Arc<dyn UserRepository>,
    pub broadcaster: Arc<dyn Broadcaster>,
    /// In a cluster: what the other instances hold, and the relay that
    /// tells them what this one does.
    pub cluster: Option<ClusterTimers>,
}

pub struct ClusterTimers {
    pub remote: Arc<RemotePresence>,
    pub relay: Relay,
}

impl Timers {
    pub fn start(work: TimerWork) -> std::io::Result<Self> {
        let (came_online, online) = mpsc::channel();
        work.presence.announce_to(came_online);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let tick = (work.presence.grace().min(work.typing_ttl) / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let thread = std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || run(&work, &online, tick, &stopping))?;
        Ok(Self { stop, thread })
    }

    /// Ends the thread (within a tick) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn run(work: &TimerWork, online: &mpsc::Receiver<UserId>, tick: Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match online.recv_timeout(tick) {
            Ok(user) => {
                came_online_here(work, user);
                for user in online.try_iter() {
                    came_online_here(work, user);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        for ended in work.typing.expire(now) {
            work.broadcaster.publish(ended);
        }
        for user in work.presence.expire(now) {
            went_offline_here(work, user);
        }
        if let Some(cluster) = &work.cluster {
            for change in cluster.remote.take_changes(now) {
                elsewhere(work, change);
            }
        }
    }
    tracing::debug!("timers stopped");
}

/// The first socket of `user` here (the others may hold them already).
fn came_online_here(work: &TimerWork, user: UserId) {
    if let Some(cluster) = &work.cluster {
        cluster.relay.publish_presence(vec![user], Vec::new());
        if cluster.remote.is_online(user) {
            return; // announced when the first instance got them
        }
    }
    announce(work, user, true, None);
}

/// The grace period of `user`'s last socket here ran out.
fn went_offline_here(work: &TimerWork, user: UserId) {
    let last_seen = Utc::now();
    if let Some(cluster) = &work.cluster {
        cluster
            .relay
            .publish_presence(Vec::new(), vec![(user, last_seen)]);
        if cluster.remote.is_online(user) {
            return; // still online on another instance
        }
    }
    store_last_seen(work, user, last_seen);
    announce(work, user, false, Some(last_seen));
}

/// Another instance changed what this one sees of `user`.
fn elsewhere(work: &TimerWork, change: RemoteChange) {
    match change {
        RemoteChange::CameOnline(user) if !work.presence.is_online(user) => {
            announce(work, user, true, None);
        }
        RemoteChange::WentOffline(user, last_seen) if !work.presence.is_online(user) => {
            // The instance that held them stored it too, unless it died.
            store_last_seen(work, user, last_seen);
            announce(work, user, false, Some(last_seen));
        }
        RemoteChange::CameOnline(_) | RemoteChange::WentOffline(..) => {}
    }
}

fn store_last_seen(work: &TimerWork, user: UserId, last_seen: DateTime<Utc>) {
    if let Err(error) = work.users.set_last_seen(user, last_seen) {
        tracing::warn!(%user, error = %error_chain(&error), "storing last_seen failed");
    }
}

/// Tells everyone who shares a chat with `user`.
fn announce(work: &TimerWork, user: UserId, online: bool, last_seen: Option<DateTime<Utc>>) {
    match work.chats.chat_partners(user) {
        Ok(recipients) if recipients.is_empty() => {}
        Ok(recipients) => work.broadcaster.publish(ChatEvent::Presence {
            user_id: user,
            online,
            last_seen,
            recipients,
        }),
        Err(error) => {
            tracing::warn!(%user, online, error = %error_chain(&error), "presence not announced: its recipients could not be read");
        }
    }
}
