//! What both socket protocols share once a socket is open: the writing
//! half with every write bounded in time, why a session ends and with which
//! close code, and the close codes for frames a client should not send.
//!
//! Every write to the client is bounded by the write timeout: a client that
//! stops reading fills the socket's small buffer (actix-ws buffers 32
//! frames), and without the bound its session would wait forever,
//! heartbeat and all.

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytestring::ByteString;

use crate::delivery::Outbound;
use crate::error::{error_chain, ApiError};
use crate::metrics::{Metrics, OpenSocket, Protocol, SlowReason};

/// Why a session ends, to close the socket with the right code.
pub enum End {
    /// The client closed, the stream ended, or the socket is gone.
    ClientGone,
    Close(CloseReason),
    /// A write took longer than the write timeout (closed with 1013).
    TooSlow,
}

pub fn close(code: CloseCode, description: &str) -> End {
    End::Close(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// The writing half of the socket, with every write bounded in time; it
/// counts the socket open for as long as it lives, and how it closed.
pub struct Connection {
    socket: Session,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    protocol: Protocol,
    _open: OpenSocket,
}

impl Connection {
    pub fn new(
        socket: Session,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
        protocol: Protocol,
    ) -> Self {
        tracing::debug!("socket open");
        Self {
            socket,
            write_timeout,
            _open: metrics.socket_opened(protocol),
            metrics,
            protocol,
        }
    }

    pub async fn text(&mut self, frame: ByteString) -> Result<(), End> {
        let written = bounded(self.write_timeout, self.socket.text(frame)).await;
        self.count_slow(&written);
        written
    }

    /// A frame the hub queued; a message's frame counts its latency from
    /// the commit once handed to the socket.
    pub async fn outbound(&mut self, outbound: &Outbound) -> Result<(), End> {
        self.text(outbound.frame.clone()).await?;
        if let Some(committed) = outbound.committed {
            self.metrics.delivered(committed.elapsed());
        }
        Ok(())
    }

    pub async fn ping(&mut self) -> Result<(), End> {
        let written = bounded(self.write_timeout, self.socket.ping(b"")).await;
        self.count_slow(&written);
        written
    }

    pub async fn pong(&mut self, bytes: &[u8]) -> Result<(), End> {
        let written = bounded(self.write_timeout, self.socket.pong(bytes)).await;
        self.count_slow(&written);
        written
    }

    fn count_slow(&self, written: &Result<(), End>) {
        if let Err(End::TooSlow) = written {
            self.metrics.slow_consumer_closed(SlowReason::WriteTimeout);
        }
    }

    pub async fn finish(self, end: End) {
        let end = match end {
            End::TooSlow => too_slow_close(),
            other => other,
        };
        let code = match &end {
            End::ClientGone | End::TooSlow => None,
            End::Close(reason) => Some(u16::from(reason.code)),
        };
        self.metrics.socket_closed(self.protocol, code);
        match &end {
            // The handshake's access line says it opened; this, how it ended.
            End::Close(reason) => tracing::info!(
                code,
                reason = reason.description.as_deref().unwrap_or_default(),
                "socket closed"
            ),
            _ => tracing::info!("socket closed without a close frame"),
        }
        if let End::Close(reason) = end {
            // A client that does not read may not take the close frame
            // either; dropping the session then ends the connection.
            let _ = tokio::time::timeout(self.write_timeout, self.socket.close(Some(reason))).await;
        }
    }
}

/// A data frame from the client, once control frames are dealt with.
pub enum Incoming {
    Text(ByteString),
    Binary,
}

/// Answers control frames (ping with pong; close with close, echoing its
/// code, RFC 6455 5.5.1) and maps the end of the stream and protocol
/// errors to how the session ends; `Ok(None)` when there is nothing more
/// to do.
pub async fn incoming(
    connection: &mut Connection,
    frame: Option<Result<AggregatedMessage, ProtocolError>>,
) -> Result<Option<Incoming>, End> {
    match frame {
        Some(Ok(AggregatedMessage::Text(text))) => Ok(Some(Incoming::Text(text))),
        Some(Ok(AggregatedMessage::Binary(_))) => Ok(Some(Incoming::Binary)),
        Some(Ok(AggregatedMessage::Ping(bytes))) => connection.pong(&bytes).await.map(|()| None),
        Some(Ok(AggregatedMessage::Pong(_))) => Ok(None),
        Some(Ok(AggregatedMessage::Close(reason))) => Err(End::Close(CloseReason {
            code: reason.map_or(CloseCode::Normal, |r| r.code),
            description: None,
        })),
        None => Err(End::ClientGone),
        Some(Err(error)) => Err(protocol_close(&error)),
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
        Err(_elapsed) => Err(End::TooSlow),
    }
}

/// The close code for a socket whose token no longer works (expired, or
/// revoked by a password change or logout): log in again.
pub const TOKEN_NO_LONGER_VALID: u16 = 4001;

/// The end of a socket whose token a password change or logout revoked.
pub fn signed_out() -> End {
    close(
        CloseCode::Other(TOKEN_NO_LONGER_VALID),
        "signed out (password changed or logged out): log in again",
    )
}

/// The hub dropped the socket: its queue was full (counted there).
pub fn too_slow() -> End {
    too_slow_close()
}

fn too_slow_close() -> End {
    close(
        CloseCode::Again,
        "too slow: reconnect to catch up from history",
    )
}

/// The close code for a frame the client should not have sent.
///
/// actix-http 3.x and actix-ws 0.4 report several violations only as an
/// `io::Error` (their own `ProtocolError` variants for them are still to
/// come, in their next major versions), so these are told apart by the
/// error's kind and, where the kind is shared, by its exact text. The texts
/// are pinned by the tests below and by `tests/hostile_input.rs`: if an
/// upgrade rewords them, those tests fail rather than the codes drifting.
pub fn protocol_close(error: &ProtocolError) -> End {
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

pub fn server_failure(error: &ApiError) -> End {
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
            End::ClientGone | End::TooSlow => None,
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
