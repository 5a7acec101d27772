//! The tag each benchmark message carries in its body, so that a receiver
//! can tell, from the frame alone, which run and which sender it came from,
//! its place in that sender's sequence and when it was (meant to be) sent.
//!
//! Format: `r<run, hex>|s<sender connection>|q<sequence>|t<nanoseconds since
//! the run started>|<padding>`. Only ASCII letters, digits and `|`, so the
//! body needs no JSON escaping either way.

use std::fmt::Write as _;

/// What a message body says about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Identifies this run; messages of other runs are not counted.
    pub run: u64,
    /// Global index of the sending connection (see [`crate::plan`]).
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// When the message was sent, or for open-loop sending when it was
    /// scheduled to be sent, in nanoseconds since the run's time origin.
    pub sent_at_ns: u64,
}

impl Tag {
    /// The message body for this tag, padded with `x` to at least
    /// `min_len` bytes.
    pub fn encode(&self, min_len: usize) -> String {
        let mut body = String::with_capacity(min_len.max(48));
        // Writing to a String cannot fail.
        let _ = write!(
            body,
            "r{:x}|s{}|q{}|t{}|",
            self.run, self.sender, self.seq, self.sent_at_ns
        );
        while body.len() < min_len {
            body.push('x');
        }
        body
    }

    /// The `{"body": ...}` frame a client sends for this tag.
    pub fn frame(&self, min_len: usize) -> String {
        let body = self.encode(min_len);
        let mut frame = String::with_capacity(body.len() + 12);
        frame.push_str("{\"body\":\"");
        frame.push_str(&body);
        frame.push_str("\"}");
        frame
    }

    /// The protocol-v2 `client_id` of this message: `<sent_at_ns>.<run>.<sender>.<seq>`,
    /// all in hex, the time zero-padded so that ids sort in the order they
    /// were made, as a UUIDv7 or ULID does (what `docs/protocol.md` advises
    /// clients to use). Unique per (chat, sender) as the API requires, and
    /// readable back, so an `ack` can be checked against the message it
    /// carries.
    pub fn client_id(&self) -> String {
        format!(
            "{:016x}.{:x}.{:x}.{:x}",
            self.sent_at_ns, self.run, self.sender, self.seq
        )
    }

    /// Whether `client_id` is [`Tag::client_id`] of this tag (without
    /// building the string: this runs for every v2 message received).
    pub fn has_client_id(&self, client_id: &str) -> bool {
        let mut parts = client_id.splitn(4, '.');
        let mut next = || parts.next().and_then(|p| u64::from_str_radix(p, 16).ok());
        let (sent_at_ns, run, sender, seq) = (next(), next(), next(), next());
        sent_at_ns == Some(self.sent_at_ns)
            && run == Some(self.run)
            && sender == Some(u64::from(self.sender))
            && seq == Some(self.seq)
    }

    /// Reads a tag back from a body; `None` for bodies this tool did not
    /// write.
    pub fn parse(body: &str) -> Option<Tag> {
        let mut parts = body.splitn(5, '|');
        let run = u64::from_str_radix(parts.next()?.strip_prefix('r')?, 16).ok()?;
        let sender = parts.next()?.strip_prefix('s')?.parse().ok()?;
        let seq = parts.next()?.strip_prefix('q')?.parse().ok()?;
        let sent_at_ns = parts.next()?.strip_prefix('t')?.parse().ok()?;
        // The padding must be there (even if empty): a truncated body is
        // not ours.
        parts.next()?;
        Some(Tag {
            run,
            sender,
            seq,
            sent_at_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: Tag = Tag {
        run: 0xbeef,
        sender: 17,
        seq: 42,
        sent_at_ns: 123_456_789,
    };

    #[test]
    fn a_tag_survives_its_round_trip_through_a_body() {
        let body = TAG.encode(0);
        assert_eq!(body, "rbeef|s17|q42|t123456789|");
        assert_eq!(Tag::parse(&body), Some(TAG));
    }

    #[test]
    fn bodies_are_padded_to_the_requested_length() {
        let body = TAG.encode(64);
        assert_eq!(body.len(), 64);
        assert!(body.starts_with("rbeef|s17|q42|t123456789|x") && body.ends_with("xxxx"));
        assert_eq!(Tag::parse(&body), Some(TAG));
    }

    #[test]
    fn the_frame_is_the_documented_json_object() {
        let frame: serde_json::Value = serde_json::from_str(&TAG.frame(30)).unwrap();
        assert_eq!(frame["body"].as_str().map(Tag::parse), Some(Some(TAG)));
    }

    #[test]
    fn the_client_id_is_valid_for_the_api_and_reads_back() {
        let id = TAG.client_id();
        assert_eq!(id, "00000000075bcd15.beef.11.2a");
        assert!((1..=64).contains(&id.len()));
        assert!(id.bytes().all(|b| (b'!'..=b'~').contains(&b)));
        assert!(TAG.has_client_id(&id));
        for other in [
            "00000000075bcd15.beef.11.2b",
            "00000000075bcd15.beef.12.2a",
            "00000000075bcd15.beee.11.2a",
            "00000000075bcd16.beef.11.2a",
            "00000000075bcd15.beef.11",
            "",
            "00000000075bcd15.beef.11.2a.1",
        ] {
            assert!(!TAG.has_client_id(other), "{other:?}");
        }
        // The longest possible one still fits the API's 64 characters.
        let max = Tag {
            run: u64::MAX,
            sender: u32::MAX,
            seq: u64::MAX,
            sent_at_ns: u64::MAX,
        };
        assert!(max.client_id().len() <= 64);
    }

    #[test]
    fn foreign_bodies_have_no_tag() {
        for body in [
            "",
            "Hello there!",
            "rbeef|s17|q42|t1",
            "rzz|s1|q1|t1|",
            "rbeef|s-1|q42|t1|",
        ] {
            assert_eq!(Tag::parse(body), None, "{body:?}");
        }
    }
}
