//! `chat-server`: parse the command line, set up logging, then serve (or
//! run one of the other commands).

use std::process::ExitCode;

use chat_api::error::error_chain;
use chat_server::commands;
use chat_server::configuration::{Cli, Settings, Task};
use chat_server::startup::{Application, ShutdownSignals};
use chat_server::telemetry;
use clap::{CommandFactory as _, FromArgMatches as _};

/// glibc's allocator never reuses the 19 MiB, 64-byte-aligned buffer each
/// Argon2 hash frees (every aligned request asks for a little more than the
/// last one freed), so resident memory grew by ~19 MiB per login or
/// registration, without bound. jemalloc reuses and returns it (mimalloc
/// did too, but made history replay 50% slower here).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let (task, settings) = cli.into_task();
    telemetry::init(settings.log_format);
    let outcome = match task {
        Task::Serve => return serve(&settings),
        Task::Migrate { check } => commands::migrate(&settings, check),
        Task::CreateUser { username } => commands::create_user(&settings, &username),
        Task::ImportDjango(options) => commands::import_django(&settings, &options),
        Task::CheckConfig => {
            let matches = matches.subcommand().map_or(&matches, |(_, sub)| sub);
            return commands::check_config(&settings, matches);
        }
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("chat-server: {}", error_chain(&error));
        ExitCode::FAILURE
    })
}

fn serve(settings: &Settings) -> ExitCode {
    raise_open_file_limit();
    let result = actix_web::rt::System::new().block_on(async {
        let signals = ShutdownSignals::listen();
        let app = Application::build(settings).map_err(|e| error_chain(&e))?;
        app.run_until_stopped(signals)
            .await
            .map_err(|e| error_chain(&e))
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "chat-server failed");
            eprintln!("chat-server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Every WebSocket is a file descriptor, and the usual soft limit (1024) is
/// far below what one server holds; the hard limit is the real ceiling.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
}
