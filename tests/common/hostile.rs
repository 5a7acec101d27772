//! What the two hostile-input suites share (`hostile_input.rs` for the
//! seed socket and REST, `v2_hostile_input.rs` for `/ws/v2/` and the v2
//! routes): the watch for panics on server threads, a socket on which any
//! bytes can be written, and the building blocks of their catalogues.

use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use actix_web::web::Bytes;
use awc::ws::Codec;
use futures_util::SinkExt as _;

use super::{spawn_app_with, Api, TestApp};

// ---- panics ---------------------------------------------------------------------
//
// The server runs in this process. A panic in a handler or a session kills
// only that task (the client sees a dropped connection or a 500, which the
// tests would also catch), but it is a bug either way: this hook records
// every panic on a server thread, and each test asserts that none happened
// while it ran. (Server threads are not told apart by test, so a panic can
// also fail a test that overlapped the one that caused it; the message
// names the panic's place in the code.)

static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PANIC_HOOK: Once = Once::new();
/// Marks the self-check's deliberate panic (`hostile_input.rs`), which
/// [`HostileApp::assert_no_server_panics`] skips.
pub const SELF_CHECK: &str = "hostile_input panic-watch self-check";

/// Threads the server runs code on: actix's workers and acceptor, the
/// blocking pool (Diesel, Argon2), the message writer and the delivery
/// threads. Test threads are named after their test, and the raw HTTP
/// client's after itself.
fn is_server_thread(name: &str) -> bool {
    name.starts_with("actix-")
        || name.starts_with("tokio-")
        || matches!(name, "message-writer" | "fan-out")
}

/// Installs the hook (once per test binary) that records server panics.
pub fn watch_for_server_panics() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            if is_server_thread(name) {
                server_panics().push(format!("thread '{name}': {info}"));
            }
            previous(info);
        }));
    });
}

/// Every server panic recorded so far in this test binary.
pub fn server_panics() -> MutexGuard<'static, Vec<String>> {
    SERVER_PANICS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A test server, and the server panics recorded before it started.
pub struct HostileApp {
    app: TestApp,
    panics_before: usize,
}

impl std::ops::Deref for HostileApp {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl HostileApp {
    pub fn assert_no_server_panics(&self) {
        let panics = server_panics();
        let new: Vec<_> = panics[self.panics_before.min(panics.len())..]
            .iter()
            .filter(|p| !p.contains(SELF_CHECK))
            .collect();
        assert!(new.is_empty(), "the server panicked: {new:#?}");
    }
}

/// [`spawn_app_with`], with the panic watch on.
pub async fn hostile_app(extra_args: &[&str]) -> HostileApp {
    watch_for_server_panics();
    let panics_before = server_panics().len();
    HostileApp {
        app: spawn_app_with(extra_args).await,
        panics_before,
    }
}

// ---- raw frames -----------------------------------------------------------------

pub type RawSocket = actix_codec::Framed<awc::BoxedSocket, Codec>;

/// A socket at `path` (with its `?token=`) on which any bytes can be
/// written, not only what the client's encoder would produce.
pub async fn open_raw(api: &Api, path: &str) -> RawSocket {
    let (_, framed) = api
        .client
        .ws(api.ws_url(path))
        .max_frame_size(1 << 20)
        .connect()
        .await
        .expect("handshake");
    framed
}

/// Writes `bytes` as they are, then goes back to the WebSocket codec (the
/// read buffer is kept across the swap).
pub async fn write_raw(socket: RawSocket, bytes: &[u8]) -> RawSocket {
    let codec = socket.codec_ref().clone();
    let mut raw = socket.replace_codec(actix_codec::BytesCodec);
    // The server may close before it has read everything; that is allowed.
    let _ = raw.send(Bytes::copy_from_slice(bytes)).await;
    raw.replace_codec(codec)
}

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// A client frame, masked as RFC 6455 requires.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with_length(fin, opcode, payload, payload.len() as u64, true)
}

/// A frame whose header may claim another length than the payload has,
/// and may be unmasked.
pub fn frame_with_length(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    claimed: u64,
    masked: bool,
) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    if claimed < 126 {
        out.push(mask_bit | u8::try_from(claimed).unwrap());
    } else if let Ok(short) = u16::try_from(claimed) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&claimed.to_be_bytes());
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

// ---- catalogue building blocks --------------------------------------------------

/// A frame to send as it is.
#[derive(Debug)]
pub enum Junk {
    Text(String),
    Binary(Vec<u8>),
}

pub fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

pub fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}
