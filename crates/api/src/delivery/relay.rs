//! Redis between instances: every committed event this instance makes is
//! published, and the events of the other instances that this instance's
//! sockets need are received and handed to the fan-out thread.
//!
//! Redis is a hint here, never the truth: a message whose event is lost
//! (Redis restarted or paused, a subscription dropped, a publish that
//! failed) is still found in the database by the [`Sequencer`], at the next
//! message of its chat, after a reconnect, or at the periodic resync.
//!
//! Channels: `chat-server:chat:<id>` carries a chat's messages, cursor
//! moves and typing; `chat-server:user:<id>` carries the chats created for
//! a user. An instance subscribes to a chat while any of its sockets
//! follows it (a seed socket's chat, every chat of a v2 socket's user) and
//! to a user while that user has a v2 socket here, and unsubscribes when
//! the last one goes. `chat-server:presence`, which every instance
//! follows, carries who came online or went offline where and each
//! instance's heartbeat (see `cluster_presence.rs`); and
//! `chat-server:revocations`, also followed by every instance, carries
//! password changes and logouts, so that every instance closes the
//! sockets of revoked tokens (see `auth/revocations.rs`). The relay runs on a
//! thread of its own with its own small runtime, so a slow Redis never
//! holds a request or a socket.
//!
//! [`Sequencer`]: super::sequencer::Sequencer

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::chat::{ChatEvent, ChatId, ClientId, CursorKind, DirectMessage, MessageId, Seq};
use chat_domain::user::{User, UserId, Username};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::cluster_presence::RemotePresence;
use super::fanout::Input;
use super::presence::LocalPresence;
use crate::auth::{Revocations, Revoked};
use crate::ws::UserMessageRates;

const PREFIX: &str = "chat-server:";
/// Every instance listens here: who came online or went offline where, and
/// each instance's heartbeat (everyone online there).
const PRESENCE_CHANNEL: &str = "chat-server:presence";
/// Every instance listens here too: whose tokens were revoked.
const REVOCATIONS_CHANNEL: &str = "chat-server:revocations";
/// And here: how many messages each user sent where, so that the per-user
/// rate is the cluster's, not each instance's.
const RATES_CHANNEL: &str = "chat-server:rates";
/// How often this instance tells the others what it admitted: the most a
/// user can get past the cluster's rate is what one instance admits in
/// this time.
const SHARE_RATES_EVERY: Duration = Duration::from_millis(50);
/// How long a connect, a subscribe or a publish may take before Redis is
/// considered unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// The subscriber connection is pinged this often: a paused Redis keeps
/// its sockets open and says nothing, which only a timeout notices.
const PING_EVERY: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a socket waits for its chats to be tracked before it goes on
/// anyway (the resync then catches it up).
const WATCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The handle sessions and the fan-out thread use. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    commands: mpsc::UnboundedSender<Command>,
    instance: String,
    status: Arc<std::sync::Mutex<RedisStatus>>,
}

/// The relay's view of its Redis connection, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisStatus {
    /// Subscribed and publishing since `since`.
    Connected { since: Instant },
    /// Not connected since `since` (the start, or when the connection was
    /// lost); `error` is the latest reason.
    Down { since: Instant, error: String },
}

enum Command {
    Watch {
        chats: Vec<(ChatId, Seq)>,
        user: Option<UserId>,
        done: oneshot::Sender<()>,
    },
    Unwatch {
        chats: Vec<ChatId>,
        user: Option<UserId>,
    },
    Publish(Vec<(String, String)>),
    /// Users who came online / went offline on this instance.
    Presence {
        online: Vec<UserId>,
        offline: Vec<(UserId, DateTime<Utc>)>,
    },
}

/// Presence in a cluster: this instance's own, told to the others, and what
/// the others say.
pub struct PresenceParts {
    pub local: Arc<LocalPresence>,
    pub remote: Arc<RemotePresence>,
}

/// What the relay shares with this instance's sessions: the revocations it
/// hears of, and the message rates it tells the other instances about.
pub struct SessionParts {
    pub revocations: Revocations,
    pub message_rates: Arc<UserMessageRates>,
}

/// What a socket follows through the relay; dropping it stops following.
pub struct Watch {
    relay: Relay,
    chats: Vec<ChatId>,
    user: Option<UserId>,
}

impl Watch {
    /// Also follows `chat` (a chat created while the socket is open), from
    /// `held`.
    pub async fn add(&mut self, chat: ChatId, held: Seq) {
        if self.chats.contains(&chat) {
            return;
        }
        self.chats.push(chat);
        self.relay.request(vec![(chat, held)], None).await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.relay.commands.send(Command::Unwatch {
            chats: std::mem::take(&mut self.chats),
            user: self.user.take(),
        });
    }
}

impl Relay {
    /// Starts the relay's thread. `fan_out` is where received events and
    /// tracking requests go; `resync_every` is how often the fan-out thread
    /// is asked to compare what it delivered with the database.
    pub fn start(
        url: &str,
        fan_out: SyncSender<Input>,
        resync_every: Duration,
        presence: PresenceParts,
        sessions: SessionParts,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (commands, queued) = mpsc::unbounded_channel();
        let instance = instance_id();
        let status = Arc::new(std::sync::Mutex::new(RedisStatus::Down {
            since: Instant::now(),
            error: "not connected yet".into(),
        }));
        let relay = Self {
            commands,
            instance: instance.clone(),
            status: status.clone(),
        };
        std::thread::Builder::new()
            .name("redis-relay".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "the Redis relay could not start its runtime");
                        return;
                    }
                };
                runtime.block_on(
                    RelayTask::new(
                        client,
                        instance,
                        fan_out,
                        resync_every,
                        presence,
                        sessions,
                        status,
                    )
                    .run(queued),
                );
            })
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        Ok(relay)
    }

    /// Whether Redis is connected now, and since when.
    pub fn status(&self) -> RedisStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Follows `chats` (each from the `seq` the socket already holds) and,
    /// for a v2 socket, `user`; returns once the fan-out thread tracks them
    /// (or after a few seconds if it is busy: the resync catches up).
    pub async fn watch(&self, chats: Vec<(ChatId, Seq)>, user: Option<UserId>) -> Watch {
        let ids = chats.iter().map(|(chat, _)| *chat).collect();
        self.request(chats, user).await;
        Watch {
            relay: self.clone(),
            chats: ids,
            user,
        }
    }

    async fn request(&self, chats: Vec<(ChatId, Seq)>, user: Option<UserId>) {
        let (done, tracked) = oneshot::channel();
        if self
            .commands
            .send(Command::Watch { chats, user, done })
            .is_ok()
        {
            let _ = tokio::time::timeout(WATCH_TIMEOUT, tracked).await;
        }
    }

    /// Tells the other instances who came online / went offline here
    /// (called by the timers thread; never blocks).
    pub fn publish_presence(&self, online: Vec<UserId>, offline: Vec<(UserId, DateTime<Utc>)>) {
        let _ = self.commands.send(Command::Presence { online, offline });
    }

    /// Publishes an event this instance committed (called by the fan-out
    /// thread; never blocks). Presence events are not: each instance
    /// announces its own view (`cluster_presence.rs`).
    pub fn publish(&self, event: &ChatEvent) {
        let messages = wire_messages(&self.instance, event);
        if !messages.is_empty() {
            let _ = self.commands.send(Command::Publish(messages));
        }
    }
}

impl Relay {
    /// Tells the other instances that `revoked.user`'s older tokens are
    /// revoked (never blocks). Lost while Redis is down; each instance
    /// then has its sockets ask the database once it reconnects.
    pub fn publish_revocation(&self, revoked: Revoked) {
        let wire = RevokedWire {
            from: self.instance.clone(),
            user: revoked.user.get(),
            generation: revoked.generation.0,
        };
        if let Ok(payload) = serde_json::to_string(&wire) {
            let _ = self.commands.send(Command::Publish(vec![(
                REVOCATIONS_CHANNEL.to_owned(),
                payload,
            )]));
        }
    }
}

/// A random id for this process, so that it ignores its own events.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn chat_channel(chat: ChatId) -> String {
    format!("{PREFIX}chat:{chat}")
}

fn user_channel(user: UserId) -> String {
    format!("{PREFIX}user:{user}")
}

// ---- the wire format between instances ------------------------------------

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: WireEvent,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    Message {
        message: WireMessage,
        participants: [i64; 2],
    },
    Cursor {
        chat_id: i64,
        participants: [i64; 2],
        user_id: i64,
        read: bool,
        up_to: i64,
    },
    Typing {
        chat_id: i64,
        user_id: i64,
        recipient: i64,
        active: bool,
    },
    ChatCreated {
        chat_id: i64,
        viewer: i64,
    },
}

#[derive(Serialize, Deserialize)]
struct WireMessage {
    id: i64,
    chat_id: i64,
    seq: i64,
    sender_id: i64,
    sender: String,
    body: String,
    created: DateTime<Utc>,
    client_id: Option<String>,
}

/// Presence news from one instance (a heartbeat lists everyone online there).
#[derive(Serialize, Deserialize)]
struct PresenceWire {
    from: String,
    #[serde(default)]
    online: Vec<i64>,
    #[serde(default)]
    offline: Vec<(i64, DateTime<Utc>)>,
}

/// The messages each user sent through one instance lately.
#[derive(Serialize, Deserialize)]
struct RatesWire {
    from: String,
    sent: Vec<(i64, u32)>,
}

/// A password change or logout on one instance.
#[derive(Serialize, Deserialize)]
struct RevokedWire {
    from: String,
    user: i64,
    generation: i64,
}

/// What another instance sent, ready for the fan-out thread.
pub enum Remote {
    Event(ChatEvent),
    /// The fan-out thread reads the viewer's view of the chat.
    ChatCreated {
        chat: ChatId,
        viewer: UserId,
    },
}

fn wire_messages(instance: &str, event: &ChatEvent) -> Vec<(String, String)> {
    let users = |p: &[UserId; 2]| [p[0].get(), p[1].get()];
    let mut out: Vec<(String, WireEvent)> = Vec::new();
    match event {
        ChatEvent::MessageStored {
            message,
            participants,
            ..
        } => out.push((
            chat_channel(message.chat_id),
            WireEvent::Message {
                message: WireMessage {
                    id: message.id.get(),
                    chat_id: message.chat_id.get(),
                    seq: message.seq.get(),
                    sender_id: message.sender.id.get(),
                    sender: message.sender.username.as_ref().to_owned(),
                    body: message.body.clone(),
                    created: message.created,
                    client_id: message.client_id.as_ref().map(|c| c.as_ref().to_owned()),
                },
                participants: users(participants),
            },
        )),
        ChatEvent::CursorMoved {
            chat_id,
            participants,
            user_id,
            kind,
            up_to,
        } => out.push((
            chat_channel(*chat_id),
            WireEvent::Cursor {
                chat_id: chat_id.get(),
                participants: users(participants),
                user_id: user_id.get(),
                read: *kind == CursorKind::Read,
                up_to: up_to.get(),
            },
        )),
        ChatEvent::Typing {
            chat_id,
            user_id,
            recipient,
            active,
        } => out.push((
            chat_channel(*chat_id),
            WireEvent::Typing {
                chat_id: chat_id.get(),
                user_id: user_id.get(),
                recipient: recipient.get(),
                active: *active,
            },
        )),
        ChatEvent::ChatCreated { views } => {
            for view in views.iter() {
                out.push((
                    user_channel(view.viewer),
                    WireEvent::ChatCreated {
                        chat_id: view.chat.id.get(),
                        viewer: view.viewer.get(),
                    },
                ));
            }
        }
        ChatEvent::Presence { .. } => {}
    }
    out.into_iter()
        .filter_map(|(channel, event)| {
            let envelope = Envelope {
                from: instance.to_owned(),
                event,
            };
            serde_json::to_string(&envelope)
                .ok()
                .map(|json| (channel, json))
        })
        .collect()
}

/// `None` for this instance's own events and for anything malformed.
fn decode(instance: &str, payload: &str) -> Option<Remote> {
    let envelope: Envelope = match serde_json::from_str(payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%error, "an unreadable event on Redis, ignored");
            return None;
        }
    };
    if envelope.from == instance {
        return None;
    }
    let seq = |n: i64| Seq::new(n);
    let pair = |p: [i64; 2]| [UserId::new(p[0]), UserId::new(p[1])];
    Some(match envelope.event {
        WireEvent::Message {
            message,
            participants,
        } => Remote::Event(ChatEvent::MessageStored {
            message: DirectMessage {
                id: MessageId::new(message.id),
                chat_id: ChatId::new(message.chat_id),
                seq: seq(message.seq)?,
                sender: User {
                    id: UserId::new(message.sender_id),
                    username: Username::parse(&message.sender).ok()?,
                },
                body: message.body,
                created: message.created,
                client_id: match message.client_id {
                    Some(raw) => Some(ClientId::parse(&raw).ok()?),
                    None => None,
                },
            },
            participants: pair(participants),
            origin: None,
        }),
        WireEvent::Cursor {
            chat_id,
            participants,
            user_id,
            read,
            up_to,
        } => Remote::Event(ChatEvent::CursorMoved {
            chat_id: ChatId::new(chat_id),
            participants: pair(participants),
            user_id: UserId::new(user_id),
            kind: if read {
                CursorKind::Read
            } else {
                CursorKind::Delivered
            },
            up_to: seq(up_to)?,
        }),
        WireEvent::Typing {
            chat_id,
            user_id,
            recipient,
            active,
        } => Remote::Event(ChatEvent::Typing {
            chat_id: ChatId::new(chat_id),
            user_id: UserId::new(user_id),
            recipient: UserId::new(recipient),
            active,
        }),
        WireEvent::ChatCreated { chat_id, viewer } => Remote::ChatCreated {
            chat: ChatId::new(chat_id),
            viewer: UserId::new(viewer),
        },
    })
}

// ---- the relay's thread ---------------------------------------------------

struct RelayTask {
    client: redis::Client,
    instance: String,
    fan_out: SyncSender<Input>,
    resync_every: Duration,
    /// How many sockets here follow each chat / each user.
    chats: HashMap<ChatId, usize>,
    users: HashMap<UserId, usize>,
    publisher: Option<redis::aio::MultiplexedConnection>,
    /// Where event publishes go: a task of their own on the publisher
    /// connection, so that waiting for Redis to answer one never holds up
    /// the events arriving from the other instances (this loop's work).
    outbox: Option<mpsc::UnboundedSender<Vec<(String, String)>>>,
    /// Why the publishing task stopped, if it did.
    publish_failed: (
        mpsc::UnboundedSender<String>,
        mpsc::UnboundedReceiver<String>,
    ),
    presence: PresenceParts,
    sessions: SessionParts,
    status: Arc<std::sync::Mutex<RedisStatus>>,
}

type Subscriber = (redis::aio::PubSubSink, redis::aio::PubSubStream);

impl RelayTask {
    fn new(
        client: redis::Client,
        instance: String,
        fan_out: SyncSender<Input>,
        resync_every: Duration,
        presence: PresenceParts,
        sessions: SessionParts,
        status: Arc<std::sync::Mutex<RedisStatus>>,
    ) -> Self {
        Self {
            client,
            instance,
            fan_out,
            resync_every,
            chats: HashMap::new(),
            users: HashMap::new(),
            publisher: None,
            outbox: None,
            publish_failed: mpsc::unbounded_channel(),
            presence,
            sessions,
            status,
        }
    }

    fn status_now(&self) -> RedisStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_status(&self, connected: Result<(), String>) {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *status = match (connected, &*status) {
            (Ok(()), _) => RedisStatus::Connected {
                since: Instant::now(),
            },
            // Still down: keep when it went down, take the newer reason.
            (Err(error), RedisStatus::Down { since, .. }) => RedisStatus::Down {
                since: *since,
                error,
            },
            (Err(error), RedisStatus::Connected { .. }) => RedisStatus::Down {
                since: Instant::now(),
                error,
            },
        };
    }

    /// Forgets both connections; the loop reconnects.
    fn disconnect(&mut self, subscriber: &mut Option<Subscriber>, why: String) {
        *subscriber = None;
        self.publisher = None;
        self.outbox = None;
        self.set_status(Err(why));
    }

    /// Tells the other instances what this one admitted since the last
    /// time (without Redis: nothing, each instance limits alone).
    fn share_rates(&self) {
        let sent = self.sessions.message_rates.take_unshared();
        let Some(outbox) = &self.outbox else { return };
        if sent.is_empty() {
            return;
        }
        let wire = RatesWire {
            from: self.instance.clone(),
            sent: sent.into_iter().map(|(u, n)| (u.get(), n)).collect(),
        };
        if let Ok(payload) = serde_json::to_string(&wire) {
            let _ = outbox.send(vec![(RATES_CHANNEL.to_owned(), payload)]);
        }
    }

    /// How long another instance's word on presence counts: three
    /// heartbeats.
    fn presence_ttl(&self) -> Duration {
        (self.resync_every * 3).max(Duration::from_secs(1))
    }

    /// Everyone online here, to every other instance.
    async fn heartbeat(&mut self) -> redis::RedisResult<()> {
        let online = self.presence.local.online_users();
        self.publish_presence_now(online, Vec::new()).await
    }

    async fn publish_presence_now(
        &mut self,
        online: Vec<UserId>,
        offline: Vec<(UserId, DateTime<Utc>)>,
    ) -> redis::RedisResult<()> {
        let Some(connection) = self.publisher.as_mut() else {
            return Ok(()); // the heartbeat after the reconnect says it
        };
        let wire = PresenceWire {
            from: self.instance.clone(),
            online: online.iter().map(|u| u.get()).collect(),
            offline: offline.iter().map(|(u, at)| (u.get(), *at)).collect(),
        };
        let Ok(payload) = serde_json::to_string(&wire) else {
            return Ok(());
        };
        within(
            redis::cmd("PUBLISH")
                .arg(PRESENCE_CHANNEL)
                .arg(payload)
                .query_async::<()>(connection),
        )
        .await
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut subscriber: Option<Subscriber> = None;
        let mut ever_connected = false;
        let mut retry = RETRY_MIN;
        let mut next_attempt = tokio::time::Instant::now();
        let mut resync = tokio::time::interval(self.resync_every);
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut share_rates = tokio::time::interval(SHARE_RATES_EVERY);
        share_rates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if subscriber.is_none() && tokio::time::Instant::now() >= next_attempt {
                match self.connect().await {
                    Ok(connected) => {
                        tracing::info!(
                            chats = self.chats.len(),
                            users = self.users.len(),
                            "Redis connected, subscriptions restored"
                        );
                        subscriber = Some(connected);
                        // Revocations announced while we were cut off are
                        // lost: the sockets ask the database instead.
                        if matches!(self.status_now(), RedisStatus::Down { .. }) && ever_connected {
                            self.sessions.revocations.recheck();
                        }
                        ever_connected = true;
                        self.set_status(Ok(()));
                        retry = RETRY_MIN;
                        // Whatever was published while we were away is in
                        // the database: look now, not at the next tick.
                        let _ = self.fan_out.send(Input::Resync);
                        if let Err(error) = self.heartbeat().await {
                            tracing::warn!(%error, "presence heartbeat failed");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "Redis unreachable; delivering from the database meanwhile");
                        self.set_status(Err(error.to_string()));
                        next_attempt = tokio::time::Instant::now() + retry;
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
            let wait_for_retry = tokio::time::sleep_until(next_attempt);
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    for command in with_queued_publishes(command, &mut commands) {
                        if let Err(error) = self.handle(command, &mut subscriber).await {
                            tracing::warn!(%error, "Redis failed; reconnecting");
                            self.disconnect(&mut subscriber, error.to_string());
                        }
                    }
                }
                Some(why) = self.publish_failed.1.recv() => {
                    tracing::warn!(%why, "publishing to Redis failed; reconnecting");
                    self.disconnect(&mut subscriber, why);
                }
                message = next_message(&mut subscriber) => {
                    match message {
                        Some(message) => self.received(&message),
                        None => {
                            tracing::warn!("the Redis subscription closed; reconnecting");
                            self.disconnect(&mut subscriber, "the subscription closed".into());
                        }
                    }
                }
                _ = ping.tick(), if subscriber.is_some() => {
                    if let Some((sink, _)) = subscriber.as_mut() {
                        let alive = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                        // Subscribed, Redis answers a PING with a `pong`
                        // array, so any answer counts; only an error or
                        // silence means the connection is gone.
                        if let Err(why) = alive.map_err(|_| "timed out".to_owned()).and_then(|r| r.map_err(|e| e.to_string())) {
                            tracing::warn!(%why, "Redis does not answer pings; reconnecting");
                            self.disconnect(&mut subscriber, format!("no answer to a ping: {why}"));
                        }
                    }
                }
                _ = share_rates.tick() => self.share_rates(),
                _ = resync.tick() => {
                    let _ = self.fan_out.send(Input::Resync);
                    if subscriber.is_some() {
                        if let Err(error) = self.heartbeat().await {
                            tracing::warn!(%error, "presence heartbeat failed; reconnecting");
                            self.disconnect(&mut subscriber, error.to_string());
                        }
                    }
                }
                () = wait_for_retry, if subscriber.is_none() => {}
            }
        }
    }

    async fn connect(&mut self) -> redis::RedisResult<Subscriber> {
        let pubsub = within(self.client.get_async_pubsub()).await?;
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<String> = self
            .chats
            .keys()
            .map(|c| chat_channel(*c))
            .chain(self.users.keys().map(|u| user_channel(*u)))
            .chain([
                PRESENCE_CHANNEL.to_owned(),
                REVOCATIONS_CHANNEL.to_owned(),
                RATES_CHANNEL.to_owned(),
            ])
            .collect();
        for batch in channels.chunks(1000) {
            within(sink.subscribe(batch)).await?;
        }
        let publisher = within(self.client.get_multiplexed_async_connection()).await?;
        // A new channel each time: a task of an earlier connection (failing
        // or not yet ended) writes to nothing that counts.
        self.publish_failed = mpsc::unbounded_channel();
        let (outbox, queued) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(
            publisher.clone(),
            queued,
            self.publish_failed.0.clone(),
        ));
        self.outbox = Some(outbox);
        self.publisher = Some(publisher);
        Ok((sink, stream))
    }

    async fn handle(
        &mut self,
        command: Command,
        subscriber: &mut Option<Subscriber>,
    ) -> redis::RedisResult<()> {
        match command {
            Command::Watch { chats, user, done } => {
                let mut subscribe = Vec::new();
                let mut track = Vec::new();
                for (chat, held) in chats {
                    let count = self.chats.entry(chat).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        subscribe.push(chat_channel(chat));
                    }
                    // Tracked again even if followed: the fan-out keeps the
                    // older position and catches this socket up from there.
                    track.push((chat, held));
                }
                if let Some(user) = user {
                    let count = self.users.entry(user).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        subscribe.push(user_channel(user));
                    }
                }
                // Subscribe first, then track: the tracking reads the
                // database head, and anything committed after it then comes
                // over Redis (or at the next resync if Redis is down).
                let result = match subscriber.as_mut() {
                    Some((sink, _)) if !subscribe.is_empty() => {
                        within(sink.subscribe(&subscribe)).await
                    }
                    _ => Ok(()),
                };
                let _ = self.fan_out.send(Input::Track(track));
                let _ = self.fan_out.send(Input::Confirm(done));
                result
            }
            Command::Unwatch { chats, user } => {
                let mut unsubscribe = Vec::new();
                let mut untrack = Vec::new();
                for chat in chats {
                    if release(&mut self.chats, chat) {
                        unsubscribe.push(chat_channel(chat));
                        untrack.push(chat);
                    }
                }
                if let Some(user) = user {
                    if release(&mut self.users, user) {
                        unsubscribe.push(user_channel(user));
                    }
                }
                if !untrack.is_empty() {
                    let _ = self.fan_out.send(Input::Untrack(untrack));
                }
                match subscriber.as_mut() {
                    Some((sink, _)) if !unsubscribe.is_empty() => {
                        within(sink.unsubscribe(&unsubscribe)).await
                    }
                    _ => Ok(()),
                }
            }
            Command::Presence { online, offline } => {
                self.publish_presence_now(online, offline).await
            }
            Command::Publish(messages) => {
                // Without Redis the other instances read these from the
                // database at their next resync.
                if let Some(outbox) = &self.outbox {
                    let _ = outbox.send(messages);
                }
                Ok(())
            }
        }
    }

    fn received(&self, message: &redis::Msg) {
        let Ok(payload) = message.get_payload::<String>() else {
            return;
        };
        if message.get_channel_name() == PRESENCE_CHANNEL {
            self.presence_heard(&payload);
            return;
        }
        if message.get_channel_name() == RATES_CHANNEL {
            match serde_json::from_str::<RatesWire>(&payload) {
                Ok(wire) if wire.from != self.instance => {
                    let now = Instant::now();
                    for (user, count) in wire.sent {
                        self.sessions
                            .message_rates
                            .spent_elsewhere(UserId::new(user), count, now);
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "unreadable rates on Redis, ignored"),
            }
            return;
        }
        if message.get_channel_name() == REVOCATIONS_CHANNEL {
            match serde_json::from_str::<RevokedWire>(&payload) {
                Ok(wire) if wire.from != self.instance => {
                    self.sessions.revocations.announce(Revoked {
                        user: UserId::new(wire.user),
                        generation: chat_domain::user::TokenGeneration(wire.generation),
                    })
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "an unreadable revocation on Redis, ignored"),
            }
            return;
        }
        if let Some(remote) = decode(&self.instance, &payload) {
            // Blocks while the fan-out thread is behind: backpressure on
            // Redis (its output buffer) rather than memory here.
            let _ = self.fan_out.send(Input::Remote(remote));
        }
    }
}

impl RelayTask {
    fn presence_heard(&self, payload: &str) {
        let Ok(wire) = serde_json::from_str::<PresenceWire>(payload) else {
            tracing::warn!("unreadable presence on Redis, ignored");
            return;
        };
        if wire.from == self.instance {
            return;
        }
        let online: Vec<UserId> = wire.online.iter().map(|u| UserId::new(*u)).collect();
        self.presence
            .remote
            .online(&wire.from, &online, self.presence_ttl());
        for (user, last_seen) in wire.offline {
            self.presence
                .remote
                .offline(&wire.from, UserId::new(user), last_seen);
        }
    }
}

/// `first`, with every publish queued behind it merged into one pipeline
/// (one round trip for a whole burst), then the first other command.
fn with_queued_publishes(
    first: Command,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Vec<Command> {
    let Command::Publish(mut batch) = first else {
        return vec![first];
    };
    let mut other = None;
    while batch.len() < 10_000 {
        match commands.try_recv() {
            Ok(Command::Publish(more)) => batch.extend(more),
            Ok(command) => {
                other = Some(command);
                break;
            }
            Err(_) => break,
        }
    }
    std::iter::once(Command::Publish(batch))
        .chain(other)
        .collect()
}

/// Publishes what `queued` brings, in order: each wait for Redis's answer
/// covers everything queued meanwhile (one pipeline, one round trip). Ends
/// at the first failure, said on `failed`, or when the relay drops the
/// queue.
async fn publish_in_order(
    mut connection: redis::aio::MultiplexedConnection,
    mut queued: mpsc::UnboundedReceiver<Vec<(String, String)>>,
    failed: mpsc::UnboundedSender<String>,
) {
    while let Some(mut batch) = queued.recv().await {
        while batch.len() < 10_000 {
            match queued.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        if let Err(error) = within(pipe.query_async::<()>(&mut connection)).await {
            let _ = failed.send(error.to_string());
            return;
        }
    }
}

/// Whether `key`'s count dropped to zero (and was removed).
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) -> bool {
    match counts.get_mut(&key) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            counts.remove(&key);
            true
        }
        None => false,
    }
}

async fn within<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis did not answer in time",
        ))),
    }
}

async fn next_message(subscriber: &mut Option<Subscriber>) -> Option<redis::Msg> {
    match subscriber.as_mut() {
        Some((_, stream)) => stream.next().await,
        None => std::future::pending().await,
    }
}
