//! A size check on a chat socket's incoming bytes, ahead of actix's frame
//! parser.
//!
//! actix-http 3.x checks a frame against the size limit only once the whole
//! frame is buffered, and actix-ws keeps reading into its buffer until then:
//! a header claiming 2^40 bytes would make the server hold whatever the
//! client sends after it. [`FrameGuard`] follows the frame headers as the
//! bytes pass, without buffering them, and fails the stream as soon as a
//! header declares a payload over the limit, or a fragmented message's
//! frames declare more than the limit between them. actix-ws then sees a
//! [`PayloadError::Overflow`] and the session closes the socket with `1009`.
//!
//! Everything else about a frame (masking, opcodes, reserved bits, UTF-8)
//! stays actix's to check: the guard only needs a header's length fields to
//! know where the next header starts.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// The longest client frame header: 2 bytes, a 64-bit extended length and
/// the 4-byte mask (RFC 6455 5.2).
const MAX_HEADER: usize = 2 + 8 + 4;

/// A frame, or a fragmented message, declared larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The bytes declared: one frame's payload, or a message's so far.
    pub declared: u64,
}

/// Follows client-to-server frame headers through a byte stream cut
/// anywhere, headers included.
#[derive(Debug)]
pub struct FrameScanner {
    limit: u64,
    /// The header being read, `header_len` bytes of it so far.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to pass before the next
    /// header.
    payload_left: u64,
    /// What the frames of the fragmented message in progress declared so
    /// far; zero between messages.
    message_bytes: u64,
}

impl FrameScanner {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            // A usize always fits a u64 on the targets Rust supports.
            limit: u64::try_from(max_frame_bytes).unwrap_or(u64::MAX),
            header: [0; MAX_HEADER],
            header_len: 0,
            payload_left: 0,
            message_bytes: 0,
        }
    }

    /// Takes the next bytes of the stream. `Err` as soon as a header in
    /// them declares too much; the scanner is not meant to be fed after.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .map_or(bytes.len(), |left| left.min(bytes.len()));
                bytes = &bytes[skip..];
                // `skip` is at most `payload_left`, itself a u64.
                self.payload_left -= u64::try_from(skip).unwrap_or(self.payload_left);
                continue;
            }
            let wanted = header_len(&self.header[..self.header_len]);
            let take = (wanted - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            // The first two bytes may say the header is longer than two.
            if self.header_len == header_len(&self.header[..self.header_len]) {
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> Result<(), TooLarge> {
        let header = &self.header[..self.header_len];
        let (first, second) = (header[0], header[1]);
        let declared = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => {
                let mut length = [0; 8];
                length.copy_from_slice(&header[2..10]);
                u64::from_be_bytes(length)
            }
            short => u64::from(short),
        };
        self.header_len = 0;
        self.payload_left = declared;
        if declared > self.limit {
            return Err(TooLarge { declared });
        }
        let opcode = first & 0x0f;
        let is_control = opcode & 0x08 != 0;
        // Control frames may come between a message's fragments and are
        // no part of it (RFC 6455 5.4).
        if !is_control {
            let continuation = opcode == 0;
            self.message_bytes = if continuation {
                self.message_bytes.saturating_add(declared)
            } else {
                declared
            };
            if self.message_bytes > self.limit {
                return Err(TooLarge {
                    declared: self.message_bytes,
                });
            }
            let fin = first & 0x80 != 0;
            if fin {
                self.message_bytes = 0;
            }
        }
        Ok(())
    }
}

/// How long a header is, judged from its first bytes (2 until the second
/// byte is known).
fn header_len(start: &[u8]) -> usize {
    let Some(&second) = start.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A request payload stream that passes bytes through unchanged and fails
/// with [`PayloadError::Overflow`] at the first header over the limit
/// (then ends).
pub struct FrameGuard<S> {
    inner: S,
    scanner: FrameScanner,
    failed: bool,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, max_frame_bytes: usize) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(max_frame_bytes),
            failed: false,
        }
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        let Poll::Ready(Some(Ok(bytes))) = polled else {
            return polled;
        };
        match self.scanner.feed(&bytes) {
            Ok(()) => Poll::Ready(Some(Ok(bytes))),
            Err(TooLarge { declared }) => {
                tracing::debug!(declared, "websocket frame over the limit, refused unread");
                self.failed = true;
                Poll::Ready(Some(Err(PayloadError::Overflow)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{stream, StreamExt as _};
    use proptest::prelude::*;

    use super::*;

    const LIMIT: usize = 1000;
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONTINUATION: u8 = 0x0;
    const PING: u8 = 0x9;

    /// A frame's header claiming `declared` bytes, followed by `payload`.
    fn frame(fin: bool, opcode: u8, declared: u64, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        if declared < 126 {
            out.push(mask_bit | u8::try_from(declared).unwrap());
        } else if let Ok(short) = u16::try_from(declared) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&short.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&declared.to_be_bytes());
        }
        if masked {
            out.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
        }
        out.extend_from_slice(payload);
        out
    }

    /// A whole masked frame of `len` bytes of payload.
    fn whole(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        frame(fin, opcode, len as u64, true, &vec![b'x'; len])
    }

    fn scan(bytes: &[u8]) -> Result<(), TooLarge> {
        FrameScanner::new(LIMIT).feed(bytes)
    }

    #[test]
    fn frames_up_to_the_limit_pass_in_every_length_encoding() {
        for len in [0, 1, 125, 126, 127, 999, 1000] {
            let mut bytes = whole(true, TEXT, len);
            bytes.extend(whole(true, BINARY, len));
            assert_eq!(scan(&bytes), Ok(()), "{len}");
        }
        // A 64-bit length for a small payload is wasteful but allowed.
        let long_form = [
            &[0x81, 0x80 | 127][..],
            &5u64.to_be_bytes(),
            &[0; 4],
            b"hello",
        ]
        .concat();
        assert_eq!(scan(&long_form), Ok(()));
    }

    #[test]
    fn a_header_over_the_limit_fails_before_any_payload() {
        for declared in [1001, 65_535, 65_536, 1 << 40, u64::MAX] {
            let header = frame(true, TEXT, declared, true, b"");
            assert_eq!(scan(&header), Err(TooLarge { declared }), "{declared}");
        }
        // Control frames and unmasked frames are measured too.
        assert!(scan(&frame(true, PING, 5000, true, b"")).is_err());
        assert!(scan(&frame(true, TEXT, 5000, false, b"")).is_err());
    }

    #[test]
    fn a_header_over_the_limit_is_found_after_other_frames_and_split_anywhere() {
        let mut bytes = whole(true, TEXT, 300);
        bytes.extend(whole(true, PING, 4));
        bytes.extend(frame(true, BINARY, 1 << 40, true, b""));
        for cut in 0..bytes.len() {
            let mut scanner = FrameScanner::new(LIMIT);
            let first = scanner.feed(&bytes[..cut]);
            let result = first.and_then(|()| scanner.feed(&bytes[cut..]));
            assert_eq!(result, Err(TooLarge { declared: 1 << 40 }), "cut at {cut}");
        }
        // One byte at a time: the error comes with the header's last byte.
        let mut scanner = FrameScanner::new(LIMIT);
        let failed_at = bytes.iter().position(|&b| scanner.feed(&[b]).is_err());
        assert_eq!(failed_at, Some(bytes.len() - 1));
    }

    #[test]
    fn a_fragmented_message_over_the_limit_fails_at_the_fragment_that_crosses_it() {
        let mut bytes = whole(false, TEXT, 400);
        bytes.extend(whole(false, CONTINUATION, 400));
        // Control frames between fragments do not count.
        bytes.extend(whole(true, PING, 125));
        bytes.extend(whole(false, CONTINUATION, 200));
        assert_eq!(scan(&bytes), Ok(()), "exactly the limit");
        bytes.extend(frame(true, CONTINUATION, 1, true, b""));
        assert_eq!(scan(&bytes), Err(TooLarge { declared: 1001 }));
    }

    #[test]
    fn each_message_starts_counting_afresh() {
        let mut bytes = Vec::new();
        for _ in 0..10 {
            bytes.extend(whole(false, TEXT, 500));
            bytes.extend(whole(true, CONTINUATION, 500));
            bytes.extend(whole(true, BINARY, 1000));
        }
        // Any number of empty fragments is fine.
        bytes.extend(whole(false, TEXT, 0));
        for _ in 0..10_000 {
            bytes.extend(whole(false, CONTINUATION, 0));
        }
        bytes.extend(whole(true, CONTINUATION, 1000));
        assert_eq!(scan(&bytes), Ok(()));
    }

    /// One data frame for the property test: (fin, binary?, length).
    fn arbitrary_frames() -> impl Strategy<Value = Vec<(bool, bool, usize)>> {
        prop::collection::vec((any::<bool>(), any::<bool>(), 0..1200usize), 0..12)
    }

    proptest! {
        /// Whatever the frames and wherever the stream is cut, the scanner
        /// fails exactly when a frame, or a message's frames together, are
        /// over the limit.
        #[test]
        fn the_verdict_does_not_depend_on_where_the_stream_is_cut(
            frames in arbitrary_frames(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut bytes = Vec::new();
            let (mut in_message, mut message) = (false, 0);
            let mut expected = Ok(());
            for &(fin, binary, len) in &frames {
                let opcode = if in_message { CONTINUATION } else if binary { BINARY } else { TEXT };
                bytes.extend(whole(fin, opcode, len));
                in_message = !fin;
                message += len;
                if expected.is_ok() && (len > LIMIT || message > LIMIT) {
                    let declared = if len > LIMIT { len } else { message };
                    expected = Err(TooLarge { declared: declared as u64 });
                }
                if fin {
                    message = 0;
                }
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut scanner = FrameScanner::new(LIMIT);
            let mut result = Ok(());
            let mut from = 0;
            for to in cuts.into_iter().chain([bytes.len()]) {
                result = result.and_then(|()| scanner.feed(&bytes[from..to]));
                from = to;
            }
            prop_assert_eq!(result, expected);
        }
    }

    #[actix_web::test]
    async fn the_guard_passes_bytes_unchanged_then_fails_once_and_ends() {
        let good = whole(true, TEXT, 10);
        let chunks = vec![
            Ok(Bytes::from(good[..3].to_vec())),
            Ok(Bytes::from(good[3..].to_vec())),
            Ok(Bytes::from(frame(true, TEXT, 1 << 40, true, b""))),
            Ok(Bytes::from(vec![b'x'; 100])),
        ];
        let mut guard = FrameGuard::new(stream::iter(chunks), LIMIT);
        assert_eq!(guard.next().await.unwrap().unwrap(), &good[..3]);
        assert_eq!(guard.next().await.unwrap().unwrap(), &good[3..]);
        assert!(matches!(
            guard.next().await,
            Some(Err(PayloadError::Overflow))
        ));
        assert!(guard.next().await.is_none());
    }

    #[actix_web::test]
    async fn the_guard_passes_errors_and_the_end_through() {
        let chunks = vec![Err(PayloadError::Incomplete(None))];
        let mut guard = FrameGuard::new(stream::iter(chunks), LIMIT);
        assert!(matches!(
            guard.next().await,
            Some(Err(PayloadError::Incomplete(None)))
        ));
        assert!(guard.next().await.is_none());
    }
}
