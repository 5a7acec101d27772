//! The command line's tasks besides serving: `migrate`, `create-user`,
//! `check-config` and `import-django`. Each prints what it did on stdout and returns the exit
//! code; a failure is one line on stderr (see `main`).

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;
use std::sync::Arc;

use chat_api::auth::{Argon2Hasher, JwtTokens};
use chat_api::error::error_chain;
use chat_domain::chat::MessageLimit;
use chat_domain::user::{AuthService, Password, Username};
use chat_persistence::django::{self, ImportError, Progress as _, SourceReader, Table};
use chat_persistence::Database;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _};
use indicatif::{ProgressBar, ProgressStyle};

use crate::configuration::{ImportOptions, Settings};
use crate::secret;
use crate::startup::{database_options, open_store, without_credentials, StartupError};

/// Exit code of `migrate --check` when something is pending.
const PENDING: u8 = 1;
/// Exit code when the database cannot even be checked.
const UNCHECKABLE: u8 = 2;

/// `chat-server migrate [--check]`.
pub fn migrate(settings: &Settings, check: bool) -> Result<ExitCode, StartupError> {
    let url = settings.effective_database_url();
    let location = without_credentials(&url);
    if url == "memory://" {
        println!("memory:// keeps nothing between runs: there is nothing to migrate");
        return Ok(ExitCode::SUCCESS);
    }
    let pending = match Database::pending_migrations(&url) {
        Ok(pending) => pending,
        Err(error) if check => {
            eprintln!(
                "chat-server: cannot check {location}: {}",
                error_chain(&error)
            );
            return Ok(ExitCode::from(UNCHECKABLE));
        }
        Err(error) => return Err(error.into()),
    };
    if check {
        if pending.is_empty() {
            println!("{location}: up to date, every migration is applied");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{location}: {} migration(s) pending: {}",
            pending.len(),
            pending.join(", ")
        );
        return Ok(ExitCode::from(PENDING));
    }
    Database::connect(&url, &database_options(settings))?;
    if pending.is_empty() {
        println!("{location}: up to date, nothing to apply");
    } else {
        println!(
            "{location}: applied {} migration(s): {}",
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `chat-server create-user <username>`: the password from
/// `CHAT_NEW_PASSWORD`, else the first line of stdin.
pub fn create_user(settings: &Settings, username: &str) -> Result<ExitCode, StartupError> {
    let username = Username::new_account(username)
        .map_err(|e| StartupError::Refused(format!("username: {e}")))?;
    let password = match std::env::var("CHAT_NEW_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            if std::io::stdin().is_terminal() {
                eprintln!("password for {username} (the line is shown as you type it; pipe it in to hide it):");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| StartupError::Refused(format!("cannot read the password: {e}")))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let password =
        Password::parse(&password).map_err(|e| StartupError::Refused(format!("password: {e}")))?;
    let secret = secret::load_or_create(settings.jwt_secret.as_deref(), &settings.data_dir)?;
    let store = open_store(
        &settings.effective_database_url(),
        &database_options(settings),
    )?;
    let auth = AuthService::new(
        store.users.clone(),
        Arc::new(Argon2Hasher::new()?),
        Arc::new(JwtTokens::new(&secret, settings.token_ttl)),
    );
    let user = auth
        .register(username, &password)
        .map_err(|e| StartupError::Refused(format!("cannot create the user: {e}")))?;
    println!("created user {} (id {})", user.username, user.id);
    Ok(ExitCode::SUCCESS)
}

/// `chat-server import-django --from <url>`: read, check (the messages
/// streamed once), write (unless `--dry-run`; the messages streamed again),
/// verify; the report on stdout, a progress bar on stderr.
pub fn import_django(
    settings: &Settings,
    options: &ImportOptions,
) -> Result<ExitCode, StartupError> {
    let from = without_credentials(&options.from);
    let refused = |e: ImportError| StartupError::Refused(format!("{from}: {}", error_chain(&e)));
    let started = std::time::Instant::now();
    let limit = usize::try_from(settings.max_message_chars)
        .ok()
        .and_then(MessageLimit::new)
        .ok_or_else(|| StartupError::Setting("CHAT_MAX_MESSAGE_CHARS must be at least 1".into()))?;
    let mut reader = SourceReader::open(&options.from, &options.app_label).map_err(refused)?;
    let source = reader.read_tables().map_err(refused)?;
    let mut plan = django::plan(&source).map_err(refused)?;
    let total_messages = reader.message_count().map_err(refused)?;

    // A target that may already hold rows is opened now, so that the
    // checking pass compares it with the source and a conflicting one is
    // refused before anything is written. A SQLite file that does not exist
    // holds nothing, and is only created once the source is importable.
    let target = settings.effective_database_url();
    let target_shown = without_credentials(&target);
    let mut database = None;
    if !options.dry_run && may_hold_rows(&target) {
        let opened = Database::connect(&target, &database_options(settings))?;
        opened
            .check_target(&plan)
            .map_err(|e| StartupError::Refused(format!("{target_shown}: {e}")))?;
        database = Some(opened);
    }
    let mut bar = Bar::default();
    bar.stage("checking messages", total_messages);
    django::check_messages(&mut reader, &mut plan, limit, database.as_ref(), &mut bar).map_err(
        |e| match e {
            ImportError::Conflict(_) => StartupError::Refused(format!("{target_shown}: {e}")),
            e => refused(e),
        },
    )?;
    bar.finish();
    println!(
        "read {from} (app label {}) in {:.1} s",
        options.app_label,
        started.elapsed().as_secs_f64()
    );
    for merge in &plan.merges {
        println!("merge: {merge}");
    }
    for problem in &plan.problems {
        let kind = if problem.dependent { "skip" } else { "problem" };
        println!("{kind}: {problem}");
    }
    if !plan.not_prefix_closed.is_empty() {
        println!(
            "read state: {} chat(s) had an unread message older than a read one (chats {:?}); \
             their unread counts are kept and the newest messages count as the unread ones",
            plan.not_prefix_closed.len(),
            plan.not_prefix_closed
        );
    }
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9}",
        "table", "read", "to write", "skipped", "merged"
    );
    for table in Table::ALL {
        let counts = plan.counts(&source, table);
        println!(
            "{:<13} {:>9} {:>9} {:>9} {:>9}",
            format!("{table}s"),
            counts.read,
            counts.planned,
            counts.skipped,
            counts.merged
        );
    }
    let problems = plan.refusals();
    if options.dry_run {
        println!(
            "dry run: nothing written; {problems} row(s) the server would refuse{}",
            if problems > 0 && !options.skip_invalid {
                " (an import refuses them unless --skip-invalid)"
            } else {
                ""
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    if problems > 0 && !options.skip_invalid {
        return Err(StartupError::Refused(format!(
            "{problems} row(s) of {from} the server would refuse (listed above): nothing written; \
             fix them in Django or re-run with --skip-invalid to leave them out"
        )));
    }

    let database = match database {
        Some(database) => database,
        None => Database::connect(&target, &database_options(settings))?,
    };
    let writing = std::time::Instant::now();
    let written = database
        .write_import(&mut reader, &mut plan, limit, &mut bar)
        .map_err(|e| StartupError::Refused(error_chain(&e)))?;
    bar.finish();
    let seconds = writing.elapsed().as_secs_f64();
    println!("wrote {target_shown} in {seconds:.1} s");
    println!(
        "{:<13} {:>9} {:>9} {:>9}",
        "table", "written", "present", "planned"
    );
    let mut total = 0;
    for table in Table::ALL {
        let planned = plan.counts(&source, table).planned;
        let rows = written.get(table);
        total += planned;
        println!(
            "{:<13} {:>9} {:>9} {:>9}",
            format!("{table}s"),
            rows,
            planned - rows.min(planned),
            planned
        );
    }
    println!("cursors set: {}", written.cursors);
    let per_second = |rows: usize| {
        if seconds > 0.0 {
            // Rows planned, written or found present, per second of writing.
            f64::from(u32::try_from(rows).unwrap_or(u32::MAX)) / seconds
        } else {
            0.0
        }
    };
    println!(
        "{total} rows in {seconds:.2} s: {:.0} rows/s, {:.0} messages/s",
        per_second(total),
        per_second(plan.messages_planned)
    );

    let differences = database
        .verify_import(&plan)
        .map_err(|e| StartupError::Refused(error_chain(&e)))?;
    if differences.is_empty() {
        println!(
            "verified: every table's rows, every cursor and the last message of all {} chats are as planned",
            plan.chats.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for difference in &differences {
            println!("mismatch: {difference}");
        }
        Err(StartupError::Refused(format!(
            "the database differs from the plan in {} way(s) (listed above)",
            differences.len()
        )))
    }
}

/// Whether the database at `url` may already hold rows: anything but a
/// SQLite file that does not exist yet.
fn may_hold_rows(url: &str) -> bool {
    url.strip_prefix("sqlite://")
        .is_none_or(|path| std::path::Path::new(path).exists())
}

/// import-django's progress bar on stderr: one bar per stage, with rows
/// per second. indicatif draws nothing when stderr is not a terminal, so
/// piped or captured output (the tests') holds only the report.
#[derive(Default)]
struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// Clears the bar: the report that follows on stdout says the rest.
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl django::Progress for Bar {
    fn stage(&mut self, name: &str, total: u64) {
        self.finish();
        let style = ProgressStyle::with_template(
            // `per_sec`'s width is its precision in indicatif 0.18: 0 is
            // whole rows per second (unset, a dozen decimals).
            "{prefix:>17} [{bar:30}] {human_pos}/{human_len} {per_sec:0} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        self.bar = Some(
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix(name.to_owned()),
        );
    }

    fn advance(&mut self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
    }
}

/// `chat-server check-config`: every setting with its value and where it
/// came from, secrets redacted, then what start-up would refuse. `matches`
/// are the subcommand's (or the top level's) parsed arguments.
pub fn check_config(settings: &Settings, matches: &ArgMatches) -> ExitCode {
    let command = Settings::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = redacted(id, &raw.join(","));
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        println!("{env}={value}  ({source})");
    }
    let url = settings.effective_database_url();
    println!("# database in force: {}", without_credentials(&url));
    match settings.validate() {
        Ok(notes) => {
            for note in notes {
                println!("# {note}");
            }
            println!("# configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "chat-server: invalid configuration: {}",
                error_chain(&error)
            );
            ExitCode::FAILURE
        }
    }
}

/// A setting's value as printed: secrets never, URLs without credentials.
fn redacted(id: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    match id {
        "jwt_secret" => "<redacted>".to_owned(),
        "database_url" | "redis_url" => without_credentials(value),
        _ => value.to_owned(),
    }
}

impl Settings {
    /// What start-up would refuse, checked without starting, connecting or
    /// creating anything; `Ok` carries notes worth printing.
    pub fn validate(&self) -> Result<Vec<String>, StartupError> {
        let mut notes = Vec::new();
        let url = self.effective_database_url();
        if url != "memory://" {
            Database::check_url(&url)?;
        }
        if self.cluster_redis_url().is_some() && !url.starts_with("postgres") {
            return Err(StartupError::Setting(
                "CHAT_REDIS_URL needs a PostgreSQL DATABASE_URL: several instances must share one database, and SQLite is a file on one machine".into(),
            ));
        }
        notes.push(secret::check(self.jwt_secret.as_deref(), &self.data_dir)?);
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            return Err(StartupError::Setting(format!(
                "CHAT_DATA_DIR {} is not a directory",
                self.data_dir.display()
            )));
        }
        Ok(notes)
    }
}
