//! One v2 socket (`/ws/v2/`): all of a user's chats over one connection.
//!
//! The session joins the hub under its user *before* it reads the snapshot
//! it sends as `hello`, so any event after the snapshot reaches it (at
//! least as new as the snapshot; the client drops what it already holds by
//! `(chat_id, seq)`). Then it loops over the client's frames, the frames
//! the hub queued for it, the outcomes of its sends, a heartbeat tick, the
//! token's expiry (`4001`) and the shutdown signal.
//!
//! Sends are pipelined: each `send` is queued for the writer in the order
//! received and the session goes on reading; its `ack` comes through the
//! hub, in commit order with everything else the socket receives, so
//! within a chat `message` and `ack` frames arrive in `seq` order. Only a
//! failure, a conflict or a duplicate comes back here to be answered.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessageStream, CloseCode, Session};
use chat_domain::chat::{
    ChatId, ClientId, CursorKind, MessageBodyError, OpenChat, OpenChatError, Outgoing, PageAnchor,
    PageLimit, SendOutcome, Seq,
};
use chat_domain::user::{SignedIn, TokenGeneration, User};
use chrono::{DateTime, Utc};
use futures_util::stream::FuturesUnordered;
use futures_util::{Future, StreamExt as _};
use serde_json::Value;

use crate::delivery::relay::Watch;
use crate::delivery::writer::Stored;
use crate::delivery::{About, Membership, PresenceGuard, StoreFailure};
use crate::error::error_chain;
use crate::metrics::{Protocol, RateLimited};
use crate::state::AppState;
use crate::wire::v2::{
    ack_frame, error_frame, hello_frame, history_frame, parse_client_frame, pong_frame, ChatState,
    ClientFrame, ErrorCode,
};
use crate::ws::connection::{
    close, incoming, server_failure, signed_out, too_slow, Connection, End, Incoming,
    TOKEN_NO_LONGER_VALID,
};
use crate::ws::limits::ConnectionPermit;

/// Sends queued for the writer and not yet answered, per socket; beyond
/// it the session stops reading until some are. At most a quarter of the
/// outbound queue, so that the acks of one socket's sends, which may all
/// come from one commit, never fill its queue by themselves.
fn max_sends_in_flight(outbound_queue: usize) -> usize {
    (outbound_queue / 4).clamp(1, 256)
}

/// The answer to one send, once its batch is stored, with what its answer
/// must echo: the `client_id` and the frame's `ref`.
type PendingSend = Pin<Box<dyn Future<Output = (ClientId, Option<Value>, Stored)>>>;

pub async fn run(
    socket: Session,
    mut stream: AggregatedMessageStream,
    signed_in: SignedIn,
    // Held to the end: dropping it frees this socket's place.
    _permit: ConnectionPermit,
    state: Arc<AppState>,
) {
    let SignedIn {
        user,
        expires_at: token_expires,
        generation,
    } = signed_in;
    let mut connection = Connection::new(
        socket,
        state.config.write_timeout,
        state.metrics.clone(),
        Protocol::V2,
    );
    let mut membership = state.hub.join_user(user.id, state.config.outbound_queue);
    let presence = PresenceGuard::new(state.presence.clone(), user.id);
    let end = match hello(&mut connection, &user, &state).await {
        Ok((chats, snapshot)) => {
            // In a cluster: follow every chat from the snapshot's heads, so
            // the other instances' messages arrive exactly once after it.
            let watch = match &state.relay {
                Some(relay) => Some(
                    relay
                        .watch(
                            snapshot.iter().map(|(c, h)| (*c, *h)).collect(),
                            Some(user.id),
                        )
                        .await,
                ),
                None => None,
            };
            let mut session = V2Session {
                watch,
                connection: &mut connection,
                membership: &mut membership,
                user: &user,
                state: &state,
                chats,
                snapshot,
                pending: FuturesUnordered::new(),
            };
            session.run(&mut stream, token_expires, generation).await
        }
        Err(end) => end,
    };
    // Typing that only this socket kept alive ends with it.
    for stopped in state.typing.connection_closed(membership.id()) {
        state.broadcaster.publish(stopped);
    }
    drop(membership);
    drop(presence);
    connection.finish(end).await;
}

/// Sends the `hello` snapshot; returns the user's chats, opened, and each
/// one's `head_seq` in it.
async fn hello(
    connection: &mut Connection,
    user: &User,
    state: &AppState,
) -> Result<(HashMap<ChatId, Arc<OpenChat>>, HashMap<ChatId, Seq>), End> {
    let (chats, me) = (state.chats.clone(), user.clone());
    let opened = crate::error::run_blocking(move || chats.open_all_chats(&me))
        .await
        .map_err(|e| server_failure(&e))?;
    let states: Vec<ChatState<'_>> = opened
        .iter()
        .filter_map(|(_, summary)| {
            let online = summary
                .other_user()
                .is_some_and(|other| state.presence.is_online(other.id));
            ChatState::new(summary, online)
        })
        .collect();
    let frame = hello_frame(
        user,
        &states,
        u64::try_from(state.config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
        state.messages.limit().max_chars(),
        state.config.max_frame_bytes,
    );
    connection.text(frame).await?;
    let heads = opened
        .iter()
        .map(|(open, summary)| (open.id(), summary.head_seq))
        .collect();
    let chats = opened
        .into_iter()
        .map(|(open, _)| (open.id(), Arc::new(open)))
        .collect();
    Ok((chats, heads))
}

/// Why a frame could not be served: its `error` frame's code and text.
type Refusal = (ErrorCode, String);

struct V2Session<'a> {
    connection: &'a mut Connection,
    membership: &'a mut Membership,
    user: &'a User,
    state: &'a AppState,
    /// Chats this socket has opened: the participant check is done once per
    /// chat (participants never change).
    chats: HashMap<ChatId, Arc<OpenChat>>,
    /// Each chat's `head_seq` in the `hello` snapshot.
    snapshot: HashMap<ChatId, Seq>,
    pending: FuturesUnordered<PendingSend>,
    /// The chats this socket follows through the cluster's relay.
    watch: Option<Watch>,
}

impl V2Session<'_> {
    async fn run(
        &mut self,
        stream: &mut AggregatedMessageStream,
        token_expires: DateTime<Utc>,
        generation: TokenGeneration,
    ) -> End {
        let interval = self.state.config.heartbeat_interval;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut shutdown = self.state.hub.shutdown_signal();
        let until_expiry = (token_expires - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(until_expiry);
        tokio::pin!(expiry);
        let revoked = self.state.revocations.session_revoked(
            self.state.auth.clone(),
            self.user.id,
            generation,
        );
        tokio::pin!(revoked);
        let mut last_heard = Instant::now();
        let max_in_flight = max_sends_in_flight(self.state.config.outbound_queue);
        loop {
            let step = tokio::select! {
                frame = stream.next(), if self.pending.len() < max_in_flight => {
                    last_heard = Instant::now();
                    match incoming(self.connection, frame).await {
                        Ok(Some(Incoming::Text(text))) => self.on_text(&text).await,
                        Ok(Some(Incoming::Binary)) => {
                            let frame = error_frame(
                                ErrorCode::BadFrame,
                                "binary frames are not supported; send JSON text",
                                None,
                                None,
                            );
                            self.connection.text(frame).await
                        }
                        Ok(None) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                queued = self.membership.outbound.recv() => match queued {
                    Some(outbound) if self.already_in_snapshot(outbound.about) => Ok(()),
                    Some(outbound) => {
                        if let (About::NewChat(chat), Some(watch)) = (outbound.about, self.watch.as_mut()) {
                            // A new chat starts empty (or nearly): follow it
                            // from the start.
                            watch.add(chat, Seq::ZERO).await;
                        }
                        self.connection.outbound(&outbound).await
                    }
                    // The hub dropped this socket: its queue overflowed.
                    None => Err(too_slow()),
                },
                Some((client_id, reference, outcome)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.on_stored(&client_id, reference.as_ref(), outcome).await
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        Err(close(CloseCode::Policy, "no response to pings"))
                    } else {
                        self.connection.ping().await
                    }
                }
                () = &mut expiry => {
                    Err(close(CloseCode::Other(TOKEN_NO_LONGER_VALID), "token expired: log in again"))
                }
                () = &mut revoked => Err(signed_out()),
                _ = shutdown.wait_for(|stopping| *stopping) => {
                    Err(close(CloseCode::Away, "server shutting down"))
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Whether an event only repeats what the `hello` snapshot held: a
    /// message at or below its chat's `head_seq` then (the client pages
    /// those from history), or the creation of a chat it listed. Events
    /// queued between joining the hub and reading the snapshot are such.
    fn already_in_snapshot(&self, about: About) -> bool {
        match about {
            About::Message { chat, seq } => {
                self.snapshot.get(&chat).is_some_and(|head| seq <= *head)
            }
            About::NewChat(chat) => self.snapshot.contains_key(&chat),
            About::Other => false,
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let parsed = parse_client_frame(text);
        let reference = parsed.reference;
        let frame = match parsed.frame {
            Ok(frame) => frame,
            Err(bad) => {
                let answer = error_frame(
                    ErrorCode::BadFrame,
                    &bad.0,
                    parsed.client_id.as_deref(),
                    reference.as_ref(),
                );
                return self.connection.text(answer).await;
            }
        };
        let served = match frame {
            ClientFrame::Send {
                chat_id,
                client_id,
                body,
            } => {
                self.send(chat_id, client_id, &body, reference.clone())
                    .await
            }
            ClientFrame::Read { chat_id, up_to } => {
                self.move_cursor(chat_id, CursorKind::Read, up_to).await
            }
            ClientFrame::Delivered { chat_id, up_to } => {
                self.move_cursor(chat_id, CursorKind::Delivered, up_to)
                    .await
            }
            ClientFrame::Typing { chat_id, active } => self.typing(chat_id, active).await,
            ClientFrame::History {
                chat_id,
                anchor,
                limit,
            } => {
                return self
                    .history(chat_id, anchor, limit, reference.as_ref())
                    .await
            }
            ClientFrame::Ping => return self.connection.text(pong_frame(reference.as_ref())).await,
        };
        match served {
            Ok(()) => Ok(()),
            Err((code, message)) => {
                let answer = error_frame(
                    code,
                    &message,
                    parsed.client_id.as_deref(),
                    reference.as_ref(),
                );
                self.connection.text(answer).await
            }
        }
    }

    /// The chat, if it exists and this user is in it: from the cache, or
    /// checked once against the database.
    async fn open(&mut self, chat_id: ChatId) -> Result<Arc<OpenChat>, Refusal> {
        if let Some(open) = self.chats.get(&chat_id) {
            return Ok(open.clone());
        }
        let (chats, me) = (self.state.chats.clone(), self.user.clone());
        let opened = actix_web::web::block(move || chats.open_chat(me, chat_id)).await;
        match opened {
            Ok(Ok(open)) => {
                let open = Arc::new(open);
                self.chats.insert(chat_id, open.clone());
                Ok(open)
            }
            Ok(Err(OpenChatError::NotFound)) => {
                Err((ErrorCode::UnknownChat, "no such chat".to_owned()))
            }
            Ok(Err(OpenChatError::NotParticipant)) => Err((
                ErrorCode::NotParticipant,
                "you are not a participant of this chat".to_owned(),
            )),
            Ok(Err(OpenChatError::Repository(error))) => {
                tracing::warn!(error = %error_chain(&error), "opening a chat failed");
                Err(unavailable())
            }
            Err(error) => {
                tracing::error!(%error, "opening a chat failed");
                Err(unavailable())
            }
        }
    }

    async fn send(
        &mut self,
        chat_id: ChatId,
        client_id: ClientId,
        body: &str,
        reference: Option<Value>,
    ) -> Result<(), Refusal> {
        let chat = self.open(chat_id).await?;
        let body = self.state.messages.validate(body).map_err(|invalid| {
            let code = match invalid {
                MessageBodyError::Empty => ErrorCode::Empty,
                MessageBodyError::TooLong { .. } => ErrorCode::TooLong,
                // Not a rule of the spec's list: the frame carries
                // something no message can hold.
                MessageBodyError::ContainsNul => ErrorCode::BadFrame,
            };
            (code, invalid.to_string())
        })?;
        self.state
            .message_rates
            .take(self.user.id, Instant::now())
            .map_err(|wait| self.rate_limited(wait))?;
        let message = Outgoing {
            chat,
            body,
            client_id: Some(client_id.clone()),
            origin: Some(self.membership.origin()),
        };
        let outcome = self
            .state
            .writer
            .submit(message)
            .await
            .map_err(|_| unavailable())?;
        self.pending.push(Box::pin(async move {
            let outcome = outcome.await.unwrap_or(Err(StoreFailure::Failed));
            (client_id, reference, outcome)
        }));
        Ok(())
    }

    /// A send's outcome. A new message's `ack` came through the hub.
    async fn on_stored(
        &mut self,
        client_id: &ClientId,
        reference: Option<&Value>,
        outcome: Stored,
    ) -> Result<(), End> {
        let frame = match outcome {
            Ok(SendOutcome::Stored(_)) => return Ok(()),
            Ok(SendOutcome::Duplicate(original)) => ack_frame(&original, true),
            Ok(SendOutcome::Conflict(_)) => error_frame(
                ErrorCode::Conflict,
                "this client_id was already used for a message with another body",
                Some(client_id.as_ref()),
                reference,
            ),
            Err(_) => {
                let (code, message) = unavailable();
                error_frame(code, &message, Some(client_id.as_ref()), reference)
            }
        };
        self.connection.text(frame).await
    }

    async fn move_cursor(
        &mut self,
        chat_id: ChatId,
        kind: CursorKind,
        up_to: Seq,
    ) -> Result<(), Refusal> {
        let chat = self.open(chat_id).await?;
        let messages = self.state.messages.clone();
        // The moves it makes are announced to every socket of both
        // participants, this one included: that is the answer.
        actix_web::web::block(move || messages.move_cursor(&chat, kind, up_to))
            .await
            .map_err(|error| {
                tracing::error!(%error, "moving a cursor failed");
                unavailable()
            })?
            .map(drop)
            .map_err(|error| {
                tracing::warn!(error = %error_chain(&error), "moving a cursor failed");
                unavailable()
            })
    }

    async fn typing(&mut self, chat_id: ChatId, active: bool) -> Result<(), Refusal> {
        let chat = self.open(chat_id).await?;
        // A typing frame over the rate is dropped silently.
        if self
            .state
            .message_rates
            .take(self.user.id, Instant::now())
            .is_err()
        {
            self.state.metrics.rate_limited(RateLimited::V2);
            return Ok(());
        }
        let Some(recipient) = chat.other().map(|other| other.id) else {
            return Ok(());
        };
        let changed = self.state.typing.set(
            chat_id,
            self.user.id,
            recipient,
            self.membership.id(),
            active,
        );
        if let Some(event) = changed {
            self.state.broadcaster.publish(event);
        }
        Ok(())
    }

    /// Counts a frame refused by the rate, and says why.
    fn rate_limited(&self, wait: Duration) -> Refusal {
        self.state.metrics.rate_limited(RateLimited::V2);
        rate_limited(wait)
    }

    async fn history(
        &mut self,
        chat_id: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
        reference: Option<&Value>,
    ) -> Result<(), End> {
        let page = match self.history_page(chat_id, anchor, limit).await {
            Ok(page) => page,
            Err((code, message)) => {
                return self
                    .connection
                    .text(error_frame(code, &message, None, reference))
                    .await
            }
        };
        let has_more = match anchor {
            PageAnchor::After(_) => page.has_more_after,
            PageAnchor::Before(_) | PageAnchor::Newest => page.has_more_before,
        };
        let frame = history_frame(reference, chat_id, &page.messages, has_more);
        self.connection.text(frame).await
    }

    async fn history_page(
        &mut self,
        chat_id: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
    ) -> Result<chat_domain::chat::MessagePage, Refusal> {
        let chat = self.open(chat_id).await?;
        self.state
            .message_rates
            .take(self.user.id, Instant::now())
            .map_err(|wait| self.rate_limited(wait))?;
        let messages = self.state.messages.clone();
        actix_web::web::block(move || messages.page(&chat, anchor, limit))
            .await
            .map_err(|error| {
                tracing::error!(%error, "reading history failed");
                unavailable()
            })?
            .map_err(|error| {
                tracing::warn!(error = %error_chain(&error), "reading history failed");
                unavailable()
            })
    }
}

fn unavailable() -> Refusal {
    (
        ErrorCode::Unavailable,
        "the server cannot reach its database right now: nothing was stored; try again".to_owned(),
    )
}

fn rate_limited(wait: Duration) -> Refusal {
    (
        ErrorCode::RateLimited,
        format!(
            "too many frames: this one was not served; wait {} ms",
            wait.as_millis().max(1)
        ),
    )
}
