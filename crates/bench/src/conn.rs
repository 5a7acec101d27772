//! Opening one chat socket: TCP (optionally from a chosen 127.0.0.x source
//! address) and the WebSocket handshake, timed together until the `101`;
//! and the seed protocol's server frames (v2's are in [`crate::v2`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::tag::Tag;

pub type Ws = WebSocketStream<TcpStream>;

/// Beyond about 28,000 connections from one source address the ephemeral
/// ports toward one server port run out.
pub const CONNECTIONS_PER_SOURCE: usize = 25_000;

/// A send that cannot complete in this long (the server stopped reading
/// and the socket buffers are full) ends the connection rather than the
/// run's time bound.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one text frame; `false` when the socket failed or stalled for
/// [`SEND_TIMEOUT`].
pub async fn send_text(ws: &mut Ws, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tcp: {0}")]
    Tcp(std::io::Error),
    #[error("handshake refused with status {0}")]
    Refused(u16),
    #[error("handshake: {0}")]
    Handshake(Box<WsError>),
    #[error("no 101 (or, on a v2 socket, no hello) within {0:?}")]
    Timeout(Duration),
    #[error("the first v2 frame was not a hello: {0}")]
    NoHello(String),
}

/// Socket settings for many small-message connections: a small eager read
/// buffer (the default 128 KiB each would be 1.3 GB at 10,000 sockets).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// The source address for connection `index` when spreading over `spread`
/// loopback addresses (`0`: let the kernel choose).
pub fn source_for(index: usize, spread: usize) -> Option<IpAddr> {
    if spread == 0 {
        return None;
    }
    let host = 1 + (index % spread.min(254)) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
}

/// Connects to `addr`, upgrades with `url`, and returns the socket and the
/// time from the TCP connect to the `101`.
pub async fn connect(
    addr: SocketAddr,
    url: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(Ws, Duration), ConnectError> {
    let started = Instant::now();
    let attempt = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ConnectError::Tcp)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ConnectError::Tcp)?;
        }
        let stream = socket.connect(addr).await.map_err(ConnectError::Tcp)?;
        // Small frames, latency measured: never wait for Nagle.
        stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .map_err(|e| match e {
                    WsError::Http(response) => ConnectError::Refused(response.status().as_u16()),
                    other => ConnectError::Handshake(Box::new(other)),
                })?;
        Ok(ws)
    };
    let ws = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    Ok((ws, started.elapsed()))
}

/// A server frame, as far as the benchmark reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// `{"message": {...}}`, with the tag of its body if it has one.
    Message(Option<Tag>),
    /// `{"error": ...}`.
    Error,
    /// Anything else (not JSON, another shape).
    Other,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    message: Option<MessageFrame<'a>>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct MessageFrame<'a> {
    #[serde(borrow)]
    body: std::borrow::Cow<'a, str>,
}

impl Incoming {
    pub fn parse(text: &str) -> Self {
        match serde_json::from_str::<Frame<'_>>(text) {
            Ok(Frame {
                message: Some(m), ..
            }) => Incoming::Message(Tag::parse(&m.body)),
            Ok(Frame { error: Some(_), .. }) => Incoming::Error,
            _ => Incoming::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_read_by_shape() {
        let tag = Tag {
            run: 1,
            sender: 2,
            seq: 3,
            sent_at_ns: 4,
        };
        let message = serde_json::json!({"message": {
            "id": 9, "sender": "u", "body": tag.encode(10),
            "created": "2025-05-02 10:45:30", "is_read": false}});
        assert_eq!(
            Incoming::parse(&message.to_string()),
            Incoming::Message(Some(tag))
        );
        let plain = r#"{"message": {"id": 1, "sender": "u", "body": "Hi \"you\"", "created": "", "is_read": true}}"#;
        assert_eq!(Incoming::parse(plain), Incoming::Message(None));
        let error =
            r#"{"error": "An error occurred while processing your message", "detail": "x"}"#;
        assert_eq!(Incoming::parse(error), Incoming::Error);
        assert_eq!(Incoming::parse("[1]"), Incoming::Other);
        assert_eq!(Incoming::parse("nope"), Incoming::Other);
    }

    #[test]
    fn sources_cycle_over_loopback_addresses() {
        assert_eq!(source_for(5, 0), None);
        assert_eq!(
            source_for(0, 3),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(
            source_for(4, 3),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
    }
}
