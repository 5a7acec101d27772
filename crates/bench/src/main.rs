//! `chat-bench`: see the library's docs and `chat-bench --help`.
//!
//! Prints progress on stderr, then the report table and, as the very last
//! line of stdout, the report as one JSON object (`| tail -1`).

use std::process::ExitCode;

use chat_bench::cli::Cli;
use chat_bench::conn::CONNECTIONS_PER_SOURCE;
use chat_bench::target::Target;
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.summarize {
        return match std::fs::read_to_string(path) {
            Ok(text) => {
                print!("{}", chat_bench::summary::summarize(&text));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("chat-bench: cannot read {}: {error}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Some(path) = &cli.plot {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("chat-bench: cannot read {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = std::fs::create_dir_all(&cli.plot_dir) {
            eprintln!(
                "chat-bench: cannot create {}: {error}",
                cli.plot_dir.display()
            );
            return ExitCode::FAILURE;
        }
        return match chat_bench::curves::plot_all(&text, &cli.plot_dir) {
            Ok(files) => {
                for file in files {
                    println!("{}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("chat-bench: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let target = match Target::parse(&cli.url, cli.allow_remote) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("chat-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let target = match cli
        .second_url
        .as_deref()
        .map(|url| Target::parse(url, cli.allow_remote))
    {
        None => target,
        Some(Ok(second)) => target.with_second_instance(second),
        Some(Err(error)) => {
            eprintln!("chat-bench: --second-url: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut scenario = cli.scenario();
    let sockets = scenario.connections() + 64;

    // Every connection is a file descriptor: take the whole hard limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < sockets as u64 => eprintln!(
            "chat-bench: warning: the open-file limit is {limit}, below the {sockets} sockets this run needs"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("chat-bench: warning: cannot raise the open-file limit: {error}"),
    }
    if scenario.source_ips == 0
        && scenario.connections() > CONNECTIONS_PER_SOURCE
        && target.addr.ip().is_loopback()
        && target.addr.is_ipv4()
    {
        scenario.source_ips = scenario.connections().div_ceil(CONNECTIONS_PER_SOURCE);
        eprintln!(
            "chat-bench: spreading sockets over 127.0.0.1..=127.0.0.{}",
            scenario.source_ips
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(scenario.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Read before the run, so that a missing file is told at once.
    let references = match &cli.reference {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("chat-bench: cannot read {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => String::new(),
    };
    match runtime.block_on(chat_bench::execute(&target, &scenario)) {
        Ok(mut report) => {
            report.name = cli.name.clone();
            report.label = cli.label.clone();
            let label = cli.label.as_deref().unwrap_or("-");
            let expectations = chat_bench::report::for_label(cli.expectations(), label);
            report.check_against(&expectations, |scenario, metric| {
                chat_bench::summary::reference_metric(&references, scenario, label, metric)
            });
            print!("{}", report.table());
            println!("{}", report.json());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chat-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
