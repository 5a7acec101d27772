#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The command line: `--version`, `--help` on every command, `migrate`,
//! `create-user`, `check-config`, `import-django`'s help, and start-up failures as one clear line.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use chat_persistence::testing::TestDatabase;
use common::process::{ServerProcess, TEST_JWT_SECRET};
use serde_json::{json, Value};

/// Runs `chat-server args...` with only `env` set (and PATH), feeding
/// `stdin` to it.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every environment variable the settings read, from clap's own table.
fn setting_variables() -> Vec<String> {
    use clap::CommandFactory as _;
    chat_server::configuration::Settings::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

#[test]
fn version_and_help_explain_every_setting_on_every_command() {
    let version = run(&["--version"], &[], "");
    assert!(version.status.success());
    assert_eq!(
        text(&version.stdout).trim(),
        format!("chat-server {}", env!("CARGO_PKG_VERSION"))
    );

    let variables = setting_variables();
    assert!(variables.len() > 20, "{variables:?}");
    for command in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["create-user", "--help"],
        &["check-config", "--help"],
        &["import-django", "--help"],
    ] {
        let help = run(command, &[], "");
        assert!(help.status.success(), "{command:?}");
        let help = text(&help.stdout);
        for variable in &variables {
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{command:?} does not explain {variable}"
            );
        }
        assert!(help.contains("[default: 127.0.0.1:8000]"), "{command:?}");
    }
    let top = text(&run(&["--help"], &[], "").stdout);
    for command in [
        "serve",
        "migrate",
        "create-user",
        "check-config",
        "import-django",
    ] {
        assert!(top.contains(command), "--help does not list {command}");
    }
    assert!(top.contains("Examples:"));
}

#[test]
fn migrate_check_reports_pending_migrations_and_migrate_applies_them() {
    let database = TestDatabase::create().unwrap();
    let env = [("DATABASE_URL", database.url())];

    let check = run(&["migrate", "--check"], &env, "");
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    let listed = text(&check.stdout);
    assert!(
        listed.contains("migration(s) pending") && listed.contains("_init"),
        "{listed}"
    );

    let migrate = run(&["migrate"], &env, "");
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(
        text(&migrate.stdout).contains("applied"),
        "{}",
        text(&migrate.stdout)
    );

    let check = run(&["migrate", "--check"], &env, "");
    assert!(check.status.success(), "{}", text(&check.stdout));
    assert!(text(&check.stdout).contains("up to date"));
    let again = run(&["migrate"], &env, "");
    assert!(text(&again.stdout).contains("nothing to apply"));

    // A database that cannot be reached: 2, not "pending".
    let unreachable = run(
        &["migrate", "--check"],
        &[("DATABASE_URL", "sqlite:///nonexistent-dir-7c1/chat.sqlite3")],
        "",
    );
    assert_ne!(unreachable.status.code(), Some(0));
}

#[test]
fn create_user_makes_an_account_that_can_log_in() {
    let database = TestDatabase::create().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let env = [
        ("DATABASE_URL", database.url()),
        ("CHAT_DATA_DIR", data),
        ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
    ];

    let created = run(&["create-user", "carol"], &env, "carol's long password\n");
    assert!(created.status.success(), "{}", text(&created.stderr));
    let created = text(&created.stdout);
    assert!(
        created
            .lines()
            .any(|l| l.starts_with("created user carol (id ")),
        "{created}"
    );
    // From the environment instead of stdin.
    let mut with_password = env.to_vec();
    with_password.push(("CHAT_NEW_PASSWORD", "dave's long password"));
    assert!(run(&["create-user", "dave"], &with_password, "")
        .status
        .success());

    let taken = run(&["create-user", "carol"], &env, "another password\n");
    assert_eq!(taken.status.code(), Some(1));
    assert_eq!(
        text(&taken.stderr).lines().count(),
        1,
        "{}",
        text(&taken.stderr)
    );
    assert!(text(&taken.stderr).contains("already exists"));
    let short = run(&["create-user", "erin"], &env, "short\n");
    assert_eq!(short.status.code(), Some(1));
    assert!(
        text(&short.stderr).contains("password"),
        "{}",
        text(&short.stderr)
    );
    let bad_name = run(&["create-user", "no spaces"], &env, "a long password\n");
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        text(&bad_name.stderr).contains("username"),
        "{}",
        text(&bad_name.stderr)
    );

    let server = ServerProcess::start(&env).unwrap();
    let response = ureq_login(&server, "carol", "carol's long password");
    assert_eq!(response["user"]["username"], "carol", "{response}");
    let response = ureq_login(&server, "dave", "dave's long password");
    assert_eq!(response["user"]["username"], "dave", "{response}");
}

fn ureq_login(server: &ServerProcess, username: &str, password: &str) -> Value {
    let body = json!({"username": username, "password": password}).to_string();
    let output = Command::new("curl")
        .args([
            "-s",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &server.url("/api/auth/login/"),
        ])
        .output()
        .expect("curl");
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

#[test]
fn check_config_prints_the_configuration_without_secrets_and_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("not-yet");
    let data = data_dir.to_str().unwrap();
    let secret = "a configured secret that is long enough, 1234567890";
    let output = run(
        &["check-config", "--ws-rate", "50"],
        &[
            ("CHAT_DATA_DIR", data),
            ("CHAT_JWT_SECRET", secret),
            ("CHAT_CORS_ORIGINS", "https://app.example"),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(!printed.contains(secret), "{printed}");
    assert!(
        printed.contains("CHAT_JWT_SECRET=<redacted>  (environment)"),
        "{printed}"
    );
    assert!(printed.contains("CHAT_WS_RATE=50  (flag)"), "{printed}");
    assert!(
        printed.contains("CHAT_ADDR=127.0.0.1:8000  (default)"),
        "{printed}"
    );
    assert!(
        printed.contains("CHAT_METRICS_ADDR=127.0.0.1:9180  (default)"),
        "{printed}"
    );
    assert!(
        printed.contains("CHAT_CORS_ORIGINS=https://app.example  (environment)"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("database in force: sqlite://{data}/chat.sqlite3")),
        "{printed}"
    );
    for variable in setting_variables() {
        assert!(
            printed.contains(&format!("{variable}=")),
            "{variable} missing: {printed}"
        );
    }
    assert!(
        !data_dir.exists(),
        "check-config created the data directory"
    );

    // URLs lose their credentials.
    #[cfg(feature = "postgres")]
    {
        let output = run(
            &["check-config"],
            &[
                ("CHAT_DATA_DIR", data),
                ("CHAT_JWT_SECRET", secret),
                (
                    "DATABASE_URL",
                    "postgres://chat:db-password@db.internal/chat",
                ),
                (
                    "CHAT_REDIS_URL",
                    "redis://:redis-password@cache.internal:6379",
                ),
            ],
            "",
        );
        let printed = text(&output.stdout);
        assert!(output.status.success(), "{printed}{}", text(&output.stderr));
        assert!(
            !printed.contains("db-password") && !printed.contains("redis-password"),
            "{printed}"
        );
        assert!(
            printed.contains("DATABASE_URL=postgres://db.internal/chat"),
            "{printed}"
        );
        assert!(
            printed.contains("CHAT_REDIS_URL=redis://cache.internal:6379"),
            "{printed}"
        );
    }

    // What start-up would refuse, check-config refuses, in one line.
    for (env, expected) in [
        (("CHAT_JWT_SECRET", "short"), "at least 32 bytes"),
        (("DATABASE_URL", "garbage"), "DATABASE_URL"),
        (
            ("CHAT_REDIS_URL", "redis://127.0.0.1:1"),
            "needs a PostgreSQL DATABASE_URL",
        ),
    ] {
        let output = run(&["check-config"], &[("CHAT_DATA_DIR", data), env], "");
        assert_eq!(output.status.code(), Some(1), "{env:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

/// Serving with `env`: it must fail at once with exactly one line on
/// stderr, `chat-server: ...` naming `names`, and nothing like a panic.
fn refused_to_start(env: &[(&str, &str)], names: &str) {
    let output = run(&[], env, "");
    assert_eq!(output.status.code(), Some(1), "{env:?}");
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
    assert!(stderr.starts_with("chat-server: "), "{stderr}");
    assert!(
        stderr.contains(names),
        "{env:?}: {stderr} does not name {names}"
    );
    for output in [&stderr, &stdout] {
        assert!(
            !output.contains("panicked") && !output.contains("backtrace"),
            "{output}"
        );
    }
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure_exit() {
    let root = tempfile::tempdir().unwrap();
    // A data directory that cannot be created (its parent is a file); the
    // tests run as root, for whom permission bits prove nothing.
    let file = root.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let unwritable = file.join("data");
    let unwritable = unwritable.to_str().unwrap();
    refused_to_start(&[("CHAT_DATA_DIR", unwritable)], unwritable);

    let data = root.path().join("data");
    let data = data.to_str().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    refused_to_start(
        &[
            ("CHAT_DATA_DIR", data),
            ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
            ("CHAT_ADDR", &busy_addr),
        ],
        "CHAT_ADDR",
    );
    // The main port free (ephemeral), the metrics one taken.
    refused_to_start(
        &[
            ("CHAT_DATA_DIR", data),
            ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
            ("CHAT_ADDR", "127.0.0.1:0"),
            ("CHAT_METRICS_ADDR", &busy_addr),
        ],
        "CHAT_METRICS_ADDR",
    );
    refused_to_start(
        &[("CHAT_DATA_DIR", data), ("DATABASE_URL", "garbage")],
        "DATABASE_URL",
    );
    refused_to_start(
        &[("CHAT_DATA_DIR", data), ("DATABASE_URL", "mysql://db/chat")],
        "DATABASE_URL",
    );
    refused_to_start(
        &[("CHAT_DATA_DIR", data), ("CHAT_JWT_SECRET", "short")],
        "CHAT_JWT_SECRET",
    );
}
