//! One chat connection, from history replay to close.
//!
//! The session first joins the hub (so nothing broadcast from then on is
//! missed), replays the history page by page, marks what it replayed as
//! read, and then loops over three sources: frames from the client, frames
//! queued by the hub, and a heartbeat tick. Live copies of messages already
//! replayed as history are skipped, so each message arrives exactly once.

use std::sync::Arc;
use std::time::Instant;

use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use chat_domain::chat::{MessageId, OpenChat, SendMessageError};
use chat_domain::RepositoryError;
use futures_util::StreamExt as _;

use super::frames::{error_frame, message_frame, parse_send_frame};
use super::hub::Membership;
use crate::error::{error_chain, run_blocking, ApiError};
use crate::state::AppState;

/// How a session ended, to close the socket with the right code.
enum End {
    /// The client closed, or the stream ended.
    ClientGone,
    Close(CloseReason),
}

fn close(code: CloseCode, description: &str) -> End {
    End::Close(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

pub async fn run(
    mut socket: Session,
    mut stream: AggregatedMessageStream,
    chat: OpenChat,
    state: Arc<AppState>,
) {
    let mut membership = state.hub.join(chat.id(), state.config.outbound_queue);
    let end = match replay_history(&mut socket, &chat, &state).await {
        Ok(replayed_up_to) => {
            converse(
                &mut socket,
                &mut stream,
                &mut membership,
                &chat,
                &state,
                replayed_up_to,
            )
            .await
        }
        Err(end) => end,
    };
    drop(membership);
    if let End::Close(reason) = end {
        let _ = socket.close(Some(reason)).await;
    }
}

/// Streams every stored message, oldest first, one page at a time; then
/// marks them read. Returns the last id replayed.
async fn replay_history(
    socket: &mut Session,
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
            socket
                .text(message_frame(message))
                .await
                .map_err(|_| End::ClientGone)?;
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

async fn converse(
    socket: &mut Session,
    stream: &mut AggregatedMessageStream,
    membership: &mut Membership,
    chat: &OpenChat,
    state: &AppState,
    replayed_up_to: Option<MessageId>,
) -> End {
    let interval = state.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut shutdown = state.hub.shutdown_signal();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                let result = match frame {
                    Some(Ok(AggregatedMessage::Text(text))) => handle_text(socket, chat, state, &text).await,
                    Some(Ok(AggregatedMessage::Binary(_))) => send(socket, error_frame("binary frames are not supported; send JSON text")).await,
                    Some(Ok(AggregatedMessage::Ping(bytes))) => socket.pong(&bytes).await.map_err(|_| End::ClientGone),
                    Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
                    Some(Ok(AggregatedMessage::Close(_))) | None => Err(End::ClientGone),
                    Some(Err(error)) => Err(protocol_close(&error)),
                };
                if let Err(end) = result {
                    return end;
                }
            }
            queued = membership.outbound.recv() => match queued {
                Some(outbound) => {
                    let already_replayed = replayed_up_to.is_some_and(|last| outbound.id <= last);
                    if !already_replayed && socket.text(outbound.frame).await.is_err() {
                        return End::ClientGone;
                    }
                }
                // The hub dropped this connection: it fell too far behind.
                None => return close(CloseCode::Again, "too slow: reconnect to catch up from history"),
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > interval * 2 {
                    return close(CloseCode::Policy, "no response to pings");
                }
                if socket.ping(b"").await.is_err() {
                    return End::ClientGone;
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return close(CloseCode::Away, "server shutting down");
            }
        }
    }
}

/// A `{"body": ...}` frame: stored, then broadcast by the message service;
/// anything else gets the error frame and the connection stays open.
async fn handle_text(
    socket: &mut Session,
    chat: &OpenChat,
    state: &AppState,
    text: &str,
) -> Result<(), End> {
    let body = match parse_send_frame(text) {
        Ok(body) => body,
        Err(error) => return send(socket, error_frame(&error.to_string())).await,
    };
    let (messages, open) = (state.messages.clone(), chat.clone());
    // The sender's own copy arrives through the hub like everyone else's:
    // that copy is the acknowledgement, sent only after the commit.
    let detail = match actix_web::web::block(move || messages.send(&open, &body)).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(SendMessageError::InvalidBody(invalid))) => invalid.to_string(),
        Ok(Err(SendMessageError::Repository(error))) => {
            tracing::error!(error = %error_chain(&error), "storing a message failed");
            match error {
                RepositoryError::Unavailable(_) => {
                    "the message could not be stored right now; try again".into()
                }
                RepositoryError::Unexpected(_) => "the message could not be stored".into(),
            }
        }
        Err(blocking) => {
            tracing::error!(error = %blocking, "storing a message failed");
            "the message could not be stored".into()
        }
    };
    send(socket, error_frame(&detail)).await
}

async fn send(socket: &mut Session, frame: bytestring::ByteString) -> Result<(), End> {
    socket.text(frame).await.map_err(|_| End::ClientGone)
}

fn protocol_close(error: &ProtocolError) -> End {
    match error {
        ProtocolError::Overflow => close(CloseCode::Size, "frame too large"),
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            close(CloseCode::Invalid, "text frame is not valid UTF-8")
        }
        other => {
            tracing::debug!(error = %other, "websocket protocol error");
            close(CloseCode::Protocol, "protocol error")
        }
    }
}

fn server_failure(error: &ApiError) -> End {
    tracing::error!(error = %error_chain(error), "websocket session failure");
    close(CloseCode::Error, "server error, reconnect shortly")
}
