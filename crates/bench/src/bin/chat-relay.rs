//! `chat-relay`: the benchmark's reference, the wire's speed (see
//! `chat_bench::relay`). Prints the address it bound as its first line of
//! stdout, serves until SIGTERM or Ctrl-C, then exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chat_bench::relay::{self, Relay};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "chat-relay",
    version,
    about = "An in-memory server of the seed API's part the benchmark uses: no database, no real \
             auth (the token is the user id), a mutex per chat, one writer task per socket. A \
             reference for chat-bench, never for real use."
)]
struct Args {
    /// Where to listen (loopback only); port 0 picks a free one. The bound
    /// address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,

    /// Runtime worker threads (make bench gives the server CHAT_WORKERS=2).
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// Frames queued per socket before it is closed with 1013.
    #[arg(long, default_value_t = relay::QUEUE)]
    queue: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Every socket is a file descriptor.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-relay: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match relay::bind(args.addr) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("chat-relay: cannot listen on {}: {error}", args.addr);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{addr}");
                let _ = out.flush();
            }
            Err(error) => {
                eprintln!("chat-relay: no local address: {error}");
                return ExitCode::FAILURE;
            }
        }
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    eprintln!("chat-relay: cannot watch SIGTERM: {error}");
                    return ExitCode::FAILURE;
                }
            };
        tokio::select! {
            () = relay::run(listener, Arc::new(Relay::new(args.queue))) => {}
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}
