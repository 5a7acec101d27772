//! One seed chat socket, from history replay to close.
//!
//! The session first joins the hub (so nothing delivered from then on is
//! missed), replays the history (the recent messages from the frames the
//! hub kept, the rest from the database page by page), marks what it replayed as
//! read (and delivered), and then loops over its sources: frames from the
//! client (one message in the writer at a time), the writer's answer for
//! that message, frames queued by the hub, a heartbeat tick, the token's
//! revocation and the shutdown signal. Live copies of messages already replayed as history are
//! skipped, so each message arrives exactly once.

use std::sync::Arc;
use std::time::Instant;

use actix_ws::{AggregatedMessageStream, CloseCode, Session};
use chat_domain::chat::{CursorKind, OpenChat, Outgoing, PageAnchor, PageLimit, Seq};
use chat_domain::user::TokenGeneration;
use futures_util::future::OptionFuture;
use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use crate::delivery::writer::Stored;
use crate::delivery::{About, Membership, PresenceGuard, StoreFailure};
use crate::error::run_blocking;
use crate::metrics::{Protocol, RateLimited};
use crate::state::AppState;
use crate::wire::seed::{error_frame, message_frame, parse_send_frame, with_is_read};
use crate::ws::connection::{
    close, incoming, server_failure, signed_out, too_slow, Connection, End, Incoming,
};
use crate::ws::limits::ConnectionPermit;

pub async fn run(
    socket: Session,
    mut stream: AggregatedMessageStream,
    chat: OpenChat,
    // The token's: a password change or logout moves it on and closes us.
    generation: TokenGeneration,
    // Held to the end: dropping it frees this socket's place.
    _permit: ConnectionPermit,
    state: Arc<AppState>,
) {
    let mut connection = Connection::new(
        socket,
        state.config.write_timeout,
        state.metrics.clone(),
        Protocol::Seed,
    );
    let chat = Arc::new(chat);
    let _presence = PresenceGuard::new(state.presence.clone(), chat.member().id);
    let mut membership = state.hub.join_chat(chat.id(), state.config.outbound_queue);
    let end = match replay_history(&mut connection, &chat, &state).await {
        Ok(replayed_up_to) => {
            // In a cluster: follow the chat from what was replayed.
            let _watch = match &state.relay {
                Some(relay) => Some(relay.watch(vec![(chat.id(), replayed_up_to)], None).await),
                None => None,
            };
            let mut session = Conversation {
                connection: &mut connection,
                membership: &mut membership,
                chat: &chat,
                state: &state,
                replayed_up_to,
                generation,
                storing: None,
            };
            session.run(&mut stream).await
        }
        Err(end) => end,
    };
    drop(membership);
    connection.finish(end).await;
}

/// Streams every stored message, oldest first; then marks them read (and
/// so delivered) up to the last one, which is announced to the v2 sockets
/// like any cursor move. Returns the last `seq` replayed.
///
/// The recent messages are the frames the hub kept when it delivered them
/// (read after joining the hub, so whatever was delivered before the join
/// is among them or comes live); the rest is read from the database page
/// by page: what is older than the kept run, and what is newer (committed
/// and not delivered yet, or delivered while the chat had no seed socket).
async fn replay_history(
    connection: &mut Connection,
    chat: &Arc<OpenChat>,
    state: &AppState,
) -> Result<Seq, End> {
    let mut kept = state.hub.recent_seed_frames(chat.id());
    let mut last = Seq::ZERO;
    let (mut from_memory, mut from_database) = (0u64, 0u64);
    loop {
        // Once the kept run holds what comes next, the page read is the one
        // after it: the read cursors for its frames, and anything newer.
        let kept_next = match (kept.first(), kept.last()) {
            (Some(first), Some(newest)) if first.seq <= last.next() && newest.seq > last => {
                Some(newest.seq)
            }
            _ => None,
        };
        let after = kept_next.unwrap_or(last);
        let (messages, open) = (state.messages.clone(), chat.clone());
        let page =
            run_blocking(move || messages.page(&open, PageAnchor::After(after), PageLimit::MAX))
                .await
                .map_err(|e| server_failure(&e))?;
        if kept_next.is_some() {
            for frame in std::mem::take(&mut kept) {
                if frame.seq <= last {
                    continue;
                }
                let is_read = page.read_cursors.is_read(frame.sender, frame.seq);
                connection.text(with_is_read(&frame.frame, is_read)).await?;
                last = frame.seq;
                from_memory += 1;
            }
        }
        for message in &page.messages {
            let is_read = page.read_cursors.is_read(message.sender.id, message.seq);
            connection.text(message_frame(message, is_read)).await?;
            last = message.seq;
        }
        from_database += page.messages.len() as u64;
        if !page.has_more_after || page.messages.is_empty() {
            break;
        }
    }
    state.metrics.replayed(from_memory, from_database);
    if last > Seq::ZERO {
        let (messages, open) = (state.messages.clone(), chat.clone());
        run_blocking(move || messages.move_cursor(&open, CursorKind::Read, last))
            .await
            .map_err(|e| server_failure(&e))?;
    }
    Ok(last)
}

/// The live part of a session, after the history.
struct Conversation<'a> {
    connection: &'a mut Connection,
    membership: &'a mut Membership,
    chat: &'a Arc<OpenChat>,
    state: &'a AppState,
    replayed_up_to: Seq,
    generation: TokenGeneration,
    /// The outcome of the last message sent, while the writer has it. The
    /// next frame is read only once it is known (one message in flight, as
    /// the seed protocol has always had), but the hub's frames keep
    /// flowing meanwhile: under load a store waits for the writer's queue,
    /// and the chat's other messages should not wait behind it.
    storing: Option<oneshot::Receiver<Stored>>,
}

impl Conversation<'_> {
    async fn run(&mut self, stream: &mut AggregatedMessageStream) -> End {
        let interval = self.state.config.heartbeat_interval;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut shutdown = self.state.hub.shutdown_signal();
        let revoked = self.state.revocations.session_revoked(
            self.state.auth.clone(),
            self.chat.member().id,
            self.generation,
        );
        tokio::pin!(revoked);
        let mut last_heard = Instant::now();
        loop {
            let step = tokio::select! {
                frame = stream.next(), if self.storing.is_none() => {
                    last_heard = Instant::now();
                    match incoming(self.connection, frame).await {
                        Ok(Some(Incoming::Text(text))) => self.on_text(&text).await,
                        Ok(Some(Incoming::Binary)) => {
                            let frame = error_frame("binary frames are not supported; send JSON text");
                            self.connection.text(frame).await
                        }
                        Ok(None) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                stored = OptionFuture::from(self.storing.as_mut()), if self.storing.is_some() => {
                    self.storing = None;
                    self.on_stored(stored).await
                }
                queued = self.membership.outbound.recv() => match queued {
                    Some(outbound) => {
                        let already_replayed = matches!(
                            outbound.about,
                            About::Message { seq, .. } if seq <= self.replayed_up_to
                        );
                        if already_replayed {
                            Ok(())
                        } else {
                            self.connection.outbound(&outbound).await
                        }
                    }
                    // The hub dropped this connection: its queue overflowed.
                    None => Err(too_slow()),
                },
                _ = heartbeat.tick() => {
                    // While a store is pending the client's frames (its
                    // pongs too) are not read: that silence is ours.
                    if self.storing.is_none() && last_heard.elapsed() > interval * 2 {
                        Err(close(CloseCode::Policy, "no response to pings"))
                    } else {
                        self.connection.ping().await
                    }
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

    /// A `{"body": ...}` frame: validated here, then stored and published
    /// by the writer; anything else gets the error frame and the connection
    /// stays open.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let body = match parse_send_frame(text) {
            Ok(body) => body,
            Err(error) => return self.connection.text(error_frame(&error.to_string())).await,
        };
        let body = match self.state.messages.validate(&body) {
            Ok(body) => body,
            Err(invalid) => {
                return self
                    .connection
                    .text(error_frame(&invalid.to_string()))
                    .await
            }
        };
        // Only messages that would be stored count: they are what costs
        // the server (malformed frames are answered and forgotten).
        let sender = self.chat.member().id;
        if let Err(wait) = self.state.message_rates.take(sender, Instant::now()) {
            self.state.metrics.rate_limited(RateLimited::Seed);
            let detail = format!(
                "too many messages: this one was not sent; wait {} ms",
                wait.as_millis().max(1)
            );
            return self.connection.text(error_frame(&detail)).await;
        }
        // The sender's own copy arrives through the hub like everyone
        // else's: that copy is the acknowledgement, sent only after the
        // commit.
        let message = Outgoing {
            chat: self.chat.clone(),
            body,
            client_id: None,
            origin: None,
        };
        match self.state.writer.submit(message).await {
            Ok(outcome) => {
                self.storing = Some(outcome);
                Ok(())
            }
            Err(failure) => self.store_failed(failure).await,
        }
    }

    /// The writer's answer for the message in flight. A dropped answer
    /// (the writer stopped) counts as a failure; `None` cannot happen, the
    /// branch runs only while a store is pending.
    async fn on_stored(
        &mut self,
        stored: Option<Result<Stored, oneshot::error::RecvError>>,
    ) -> Result<(), End> {
        match stored {
            Some(Ok(Ok(_))) => Ok(()),
            Some(Ok(Err(failure))) => self.store_failed(failure).await,
            Some(Err(_)) | None => self.store_failed(StoreFailure::Failed).await,
        }
    }

    async fn store_failed(&mut self, failure: StoreFailure) -> Result<(), End> {
        self.connection
            .text(error_frame(&failure.to_string()))
            .await
    }
}
