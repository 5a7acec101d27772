//! One chat connection, from history replay to close.
//!
//! The session first joins the hub (so nothing broadcast from then on is
//! missed), replays the history page by page, marks what it replayed as
//! read, and then loops over four sources: frames from the client, frames
//! queued by the hub, a heartbeat tick and the shutdown signal. Live copies
//! of messages already replayed as history are skipped, so each message
//! arrives exactly once.
//!
//! Every write to the client is bounded by the write timeout: a client that
//! stops reading fills the socket's small buffer, and without the bound its
//! session would wait forever, heartbeat and all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::error::PayloadError;
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use bytestring::ByteString;
use chat_domain::chat::{MessageId, OpenChat};
use futures_util::StreamExt as _;

use super::frames::{error_frame, message_frame, parse_send_frame};
use super::hub::Membership;
use super::limits::{ConnectionPermit, MessageRate};
use crate::error::{error_chain, run_blocking, ApiError};
use crate::state::AppState;

/// Why a session ends, to close the socket with the right code.
enum End {
    /// The client closed, the stream ended, or the socket is gone.
    ClientGone,
    Close(CloseReason),
}

fn close(code: CloseCode, description: &str) -> End {
    End::Close(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// The writing half of the socket, with every write bounded in time.
struct Connection {
    socket: Session,
    write_timeout: Duration,
}

impl Connection {
    async fn text(&mut self, frame: ByteString) -> Result<(), End> {
        bounded(self.write_timeout, self.socket.text(frame)).await
    }

    async fn ping(&mut self) -> Result<(), End> {
        bounded(self.write_timeout, self.socket.ping(b"")).await
    }

    async fn pong(&mut self, bytes: &[u8]) -> Result<(), End> {
        bounded(self.write_timeout, self.socket.pong(bytes)).await
    }

    async fn finish(self, end: End) {
        if let End::Close(reason) = end {
            // A client that does not read may not take the close frame
            // either; dropping the session then ends the connection.
            let _ = tokio::time::timeout(self.write_timeout, self.socket.close(Some(reason))).await;
        }
    }
}

/// A write that must finish within `timeout`, or the client is too slow.
async fn bounded(
    timeout: Duration,
    write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), End> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_closed)) => Err(End::ClientGone),
        Err(_elapsed) => Err(too_slow()),
    }
}

fn too_slow() -> End {
    close(
        CloseCode::Again,
        "too slow: reconnect to catch up from history",
    )
}

pub async fn run(
    socket: Session,
    mut stream: AggregatedMessageStream,
    chat: OpenChat,
    // Held to the end: dropping it frees this socket's place.
    _permit: ConnectionPermit,
    state: Arc<AppState>,
) {
    let mut connection = Connection {
        socket,
        write_timeout: state.config.write_timeout,
    };
    let chat = Arc::new(chat);
    let mut membership = state.hub.join(chat.id(), state.config.outbound_queue);
    let end = match replay_history(&mut connection, &chat, &state).await {
        Ok(replayed_up_to) => {
            let mut session = Conversation {
                connection: &mut connection,
                membership: &mut membership,
                chat: &chat,
                state: &state,
                replayed_up_to,
                rate: MessageRate::new(state.config.message_rate, Instant::now()),
            };
            session.run(&mut stream).await
        }
        Err(end) => end,
    };
    drop(membership);
    connection.finish(end).await;
}

/// Streams every stored message, oldest first, one page at a time; then
/// marks them read. Returns the last id replayed.
async fn replay_history(
    connection: &mut Connection,
    chat: &OpenChat,
    state: &AppState,
) -> Result<Option<MessageId>, End> {
    let page_size = state.config.history_page_size.max(1);
    let mut last: Option<MessageId> = None;
    loop {
        let (messages, open) = (state.messages.clone(), chat.clone());
        let page = run_blocking(move || messages.history_page(&open, last, page_size))
            .await
            .map_err(|e| server_failure(&e))?;
        for message in &page {
            connection.text(message_frame(message)).await?;
            last = Some(message.id);
        }
        if page.len() < page_size {
            break;
        }
    }
    if let Some(up_to) = last {
        let (messages, open) = (state.messages.clone(), chat.clone());
        run_blocking(move || messages.mark_read(&open, up_to))
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
    replayed_up_to: Option<MessageId>,
    rate: MessageRate,
}

impl Conversation<'_> {
    async fn run(&mut self, stream: &mut AggregatedMessageStream) -> End {
        let interval = self.state.config.heartbeat_interval;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut shutdown = self.state.hub.shutdown_signal();
        let mut last_heard = Instant::now();
        loop {
            let step = tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    self.on_client_frame(frame).await
                }
                queued = self.membership.outbound.recv() => match queued {
                    Some(outbound) => {
                        let already_replayed =
                            self.replayed_up_to.is_some_and(|last| outbound.id <= last);
                        if already_replayed {
                            Ok(())
                        } else {
                            self.connection.text(outbound.frame).await
                        }
                    }
                    // The hub dropped this connection: its queue overflowed.
                    None => Err(too_slow()),
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        Err(close(CloseCode::Policy, "no response to pings"))
                    } else {
                        self.connection.ping().await
                    }
                }
                _ = shutdown.wait_for(|stopping| *stopping) => {
                    Err(close(CloseCode::Away, "server shutting down"))
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_client_frame(
        &mut self,
        frame: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Result<(), End> {
        match frame {
            Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
            Some(Ok(AggregatedMessage::Binary(_))) => {
                let frame = error_frame("binary frames are not supported; send JSON text");
                self.connection.text(frame).await
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => self.connection.pong(&bytes).await,
            Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
            // RFC 6455 5.5.1: answer a close with a close, echoing its code.
            Some(Ok(AggregatedMessage::Close(reason))) => Err(End::Close(CloseReason {
                code: reason.map_or(CloseCode::Normal, |r| r.code),
                description: None,
            })),
            None => Err(End::ClientGone),
            Some(Err(error)) => Err(protocol_close(&error)),
        }
    }

    /// A `{"body": ...}` frame: validated here, then stored and broadcast
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
        if let Err(wait) = self.rate.take(Instant::now()) {
            let detail = format!(
                "too many messages: this one was not sent; wait {} ms",
                wait.as_millis().max(1)
            );
            return self.connection.text(error_frame(&detail)).await;
        }
        // The sender's own copy arrives through the hub like everyone
        // else's: that copy is the acknowledgement, sent only after the
        // commit.
        match self.state.writer.store(self.chat.clone(), body).await {
            Ok(()) => Ok(()),
            Err(failure) => {
                self.connection
                    .text(error_frame(&failure.to_string()))
                    .await
            }
        }
    }
}

/// The close code for a frame the client should not have sent.
///
/// actix-http 3.x and actix-ws 0.4 report several violations only as an
/// `io::Error` (their own `ProtocolError` variants for them are still to
/// come, in their next major versions), so these are told apart by the
/// error's kind and, where the kind is shared, by its exact text. The texts
/// are pinned by the tests below and by `tests/hostile_input.rs`: if an
/// upgrade rewords them, those tests fail rather than the codes drifting.
fn protocol_close(error: &ProtocolError) -> End {
    match error {
        ProtocolError::Overflow => close(CloseCode::Size, "frame too large"),
        // `FrameGuard` failed the payload at a header over the limit;
        // actix-ws passes payload errors on wrapped in an `Other` io::Error.
        ProtocolError::Io(io) if is_payload_overflow(io) => {
            close(CloseCode::Size, "frame or fragmented message too large")
        }
        // actix-ws aggregates fragments itself and reports a message over
        // `max_continuation_size` as an `Other` error with only this text.
        ProtocolError::Io(io)
            if io.kind() == std::io::ErrorKind::Other
                && io.to_string() == CONTINUATION_OVERFLOW =>
        {
            close(CloseCode::Size, "fragmented message too large")
        }
        // actix-http reports RSV1-3 set as `InvalidData`, the kind also used
        // for text that is not UTF-8; only the latter is a 1007.
        ProtocolError::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.to_string() == RESERVED_BITS =>
        {
            close(
                CloseCode::Protocol,
                "reserved bits set without an extension",
            )
        }
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            close(CloseCode::Invalid, "text frame is not valid UTF-8")
        }
        other => {
            tracing::debug!(error = %other, "websocket protocol error");
            close(CloseCode::Protocol, "protocol error")
        }
    }
}

fn is_payload_overflow(io: &std::io::Error) -> bool {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|payload| matches!(payload, PayloadError::Overflow))
}

/// actix-ws's error for fragments adding up to more than the limit.
const CONTINUATION_OVERFLOW: &str = "Exceeded maximum continuation size";
/// actix-http's error for a frame with RSV1, RSV2 or RSV3 set.
const RESERVED_BITS: &str = "Received a frame with non-zero reserved bits";

fn server_failure(error: &ApiError) -> End {
    tracing::error!(error = %error_chain(error), "websocket session failure");
    close(CloseCode::Error, "server error, reconnect shortly")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn code_for(error: ProtocolError) -> Option<CloseCode> {
        match protocol_close(&error) {
            End::Close(reason) => Some(reason.code),
            End::ClientGone => None,
        }
    }

    #[test]
    fn a_fragmented_message_over_the_limit_closes_with_1009() {
        let error = ProtocolError::Io(io::Error::other(CONTINUATION_OVERFLOW));
        assert_eq!(code_for(error), Some(CloseCode::Size));
    }

    #[test]
    fn the_frame_guards_overflow_closes_with_1009() {
        // As actix-ws hands on an error from the payload stream.
        let error = ProtocolError::Io(io::Error::other(PayloadError::Overflow));
        assert_eq!(code_for(error), Some(CloseCode::Size));
        let other = ProtocolError::Io(io::Error::other(PayloadError::Incomplete(None)));
        assert_eq!(code_for(other), Some(CloseCode::Protocol));
    }

    #[test]
    fn reserved_bits_close_with_1002_and_bad_utf8_with_1007() {
        let reserved = io::Error::new(io::ErrorKind::InvalidData, RESERVED_BITS);
        assert_eq!(
            code_for(ProtocolError::Io(reserved)),
            Some(CloseCode::Protocol)
        );
        let bad_utf8 = String::from_utf8(vec![b'{', 0xff]).unwrap_err();
        let bad_utf8 = io::Error::new(io::ErrorKind::InvalidData, bad_utf8.utf8_error());
        assert_eq!(
            code_for(ProtocolError::Io(bad_utf8)),
            Some(CloseCode::Invalid)
        );
    }

    #[test]
    fn other_errors_of_the_same_kinds_keep_their_codes() {
        // Only the exact texts move a close: an `Other` error is still a
        // protocol error, and an `InvalidData` one still bad UTF-8.
        let other = io::Error::other("Exceeded maximum continuation size!");
        assert_eq!(
            code_for(ProtocolError::Io(other)),
            Some(CloseCode::Protocol)
        );
        let invalid = io::Error::new(io::ErrorKind::InvalidData, "reserved bits");
        assert_eq!(
            code_for(ProtocolError::Io(invalid)),
            Some(CloseCode::Invalid)
        );
        assert_eq!(code_for(ProtocolError::Overflow), Some(CloseCode::Size));
        assert_eq!(
            code_for(ProtocolError::UnmaskedFrame),
            Some(CloseCode::Protocol)
        );
    }
}
