//! The command line: `incident-vault [serve|migrate|setup-code|case|audit|escrow|reviewer|desk]`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::configuration::{Environment, Settings};
use crate::domain::{CaseRef, DeskRole, Role};
use crate::services::instance::{EscrowGeneration, GeneratedEscrow, open_instance};
use crate::services::{accounts, audit, grants, offline};
use crate::startup::Application;
use crate::storage;
use crate::storage::NewAuditEvent;

/// A sealed intake for reprisal reports.
#[derive(Debug, Parser)]
#[command(name = "incident-vault", version, about)]
pub struct Cli {
    /// Folder with base.toml and {APP_ENVIRONMENT}.toml [default: config]. One that is named
    /// must exist: a mistyped folder would otherwise leave a local run on built-in defaults.
    #[arg(long, env = "APP_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; `serve` when omitted.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Prepare a new installation's database once: migrate it, record the instance (its salt and
    /// the escrow recipient of APP_ESCROW__RECIPIENT) and create the default desk. A production
    /// service starts only on a database made this way.
    Init,
    /// Print a fresh one-time setup code for the first account (refused once an account exists).
    SetupCode,
    /// Offline access to one case, straight from the database.
    Case {
        #[command(subcommand)]
        action: CaseCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// The offline escrow key: restore access after a lost password or a lost reviewer.
    Escrow {
        #[command(subcommand)]
        action: EscrowCommand,
    },
    /// Reviewer accounts, offline.
    Reviewer {
        #[command(subcommand)]
        action: ReviewerCommand,
    },
    /// Desks, offline.
    Desk {
        #[command(subcommand)]
        action: DeskCommand,
    },
}

/// `incident-vault escrow …`
#[derive(Debug, Subcommand)]
pub enum EscrowCommand {
    /// Grant cases to a reviewer with the escrow identity, with a progress bar.
    #[command(group = clap::ArgGroup::new("cases").required(true).multiple(false))]
    Grant {
        /// The escrow identity file (kept offline).
        #[arg(long)]
        identity: PathBuf,
        /// One case reference.
        #[arg(long, group = "cases")]
        case: Option<String>,
        /// Every case in the database.
        #[arg(long, group = "cases")]
        all: bool,
        /// The username that receives the grants.
        #[arg(long)]
        to: String,
    },
}

/// `incident-vault reviewer …`
#[derive(Debug, Subcommand)]
pub enum ReviewerCommand {
    /// Ask for a reviewer's password and write their identity as a standard age identity file,
    /// to work offline with the reference `age` tool.
    ExportIdentity {
        /// The reviewer's username.
        username: String,
        /// The file to create (readable by its owner only; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `incident-vault desk …`
#[derive(Debug, Subcommand)]
pub enum DeskCommand {
    /// Grant every case of a desk that a coordinator can read to a member of the desk, as a
    /// batch with a progress bar. Asks for the coordinator's password.
    GrantCases {
        /// The desk's slug.
        desk: String,
        /// The coordinator whose grants open the cases.
        #[arg(long = "as")]
        coordinator: String,
        /// The member who receives the grants.
        #[arg(long)]
        to: String,
    },
}

/// `incident-vault audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; name the first broken link and exit 3 if there is one. Prints
    /// the head as an anchor (`SEQUENCE:HASH`) to keep off the server.
    Verify {
        /// An anchor printed by an earlier run: that event must still be in the chain, with that
        /// hash (catches a chain trimmed or rewritten together with its head). Repeatable.
        #[arg(long = "anchor")]
        anchors: Vec<audit::Anchor>,
    },
}

/// `incident-vault case …`
#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Print a case decrypted, as JSON, using an age identity file (e.g. the escrow key).
    Decrypt {
        /// An age identity file.
        #[arg(long)]
        identity: PathBuf,
        /// The case reference, e.g. K7QM-3XTA-9PWD.
        case_ref: String,
    },
    /// Write the raw grant and envelope files of a case, for the reference `age` tool.
    Dump {
        /// The case reference.
        case_ref: String,
        /// Folder to write into (created; existing files are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_dir = match cli.config_dir {
        Some(named) if !named.is_dir() => anyhow::bail!(
            "APP_CONFIG_DIR (or --config-dir) names {}, which is not a folder",
            named.display()
        ),
        Some(named) => named,
        None => PathBuf::from("config"),
    };
    let settings = Settings::load(&config_dir)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            init_telemetry(&settings, std::io::stderr)?;
            let target = storage::describe_url(&settings.database.url);
            // As `serve` does: in production an empty database may be waiting for a restore,
            // which a schema made here would collide with; a new installation runs `init`.
            if settings.environment == Environment::Production {
                crate::startup::require_initialised(
                    &settings.database.url,
                    settings.database.timeouts(),
                )
                .await
                .with_context(|| format!("refused to migrate {target}"))?;
            }
            let (store, applied) =
                storage::connect_migrating(&settings.database.url, 1, settings.database.timeouts())
                    .await
                    .with_context(|| format!("could not migrate {target}"))?;
            store.close().await;
            // A mistyped path or database name makes a new, empty one: say so.
            let outcome = match applied {
                0 => "migrations are up to date".to_owned(),
                1 => "applied 1 migration; migrations are up to date".to_owned(),
                many => format!("applied {many} migrations; migrations are up to date"),
            };
            writeln!(std::io::stdout().lock(), "{target}: {outcome}")?;
            Ok(())
        }
        Command::Init => {
            init_telemetry(&settings, std::io::stderr)?;
            let generation = secrets_may_be_shown(&settings);
            refuse_early_without_escrow_recipient(&settings, generation).await?;
            let (store, _) =
                storage::connect_migrating(&settings.database.url, 1, settings.database.timeouts())
                    .await?;
            let outcome = open_instance(
                store.as_ref(),
                settings.escrow_recipient()?,
                generation,
                &mut show_escrow_identity_once,
            )
            .await;
            // A database initialised already may be a restored one, with its accounts: the setup
            // code is only the next step where there are none.
            let accounts = match &outcome {
                Ok(_) => store.reviewer_count(crate::services::unix_now()).await,
                Err(_) => Ok(0),
            };
            store.close().await;
            let opened = outcome?;
            let escrow_generated = opened.generated.is_some();
            drop(opened.generated);
            let next = match accounts {
                Ok(0) => "; next, `incident-vault setup-code` for the first account",
                Ok(_) => "; it has accounts already, so start the service",
                Err(_) => "",
            };
            writeln!(
                std::io::stdout().lock(),
                "{}: escrow recipient {}{next}",
                if opened.created {
                    "initialised"
                } else {
                    "this database was initialised already"
                },
                opened.keys.escrow_recipient
            )
            .with_context(|| {
                if escrow_generated {
                    "could not print the result (the database is initialised); the escrow \
                     identity shown above IS recorded: keep it"
                } else {
                    "could not print the result (the database is initialised)"
                }
            })?;
            Ok(())
        }
        Command::SetupCode => {
            init_telemetry(&settings, std::io::stderr)?;
            let store = open_existing(&settings).await?;
            let outcome = crate::services::accounts::issue_setup_code(store.as_ref()).await;
            store.close().await;
            match outcome? {
                Some(code) => {
                    writeln!(
                        std::io::stdout().lock(),
                        "setup code: {}",
                        code.expose_secret()
                    )?;
                    Ok(())
                }
                None => anyhow::bail!(
                    "an account exists already: the setup code only creates the first one; \
                     an admin invites the others"
                ),
            }
        }
        Command::Case { action } => {
            init_telemetry(&settings, std::io::stderr)?;
            // A restored backup is read as it is: not migrated, and not created when the path
            // is wrong. Its audit table must exist, since every read is audited first.
            let store = open_existing(&settings).await?;
            let outcome = case_command(store.as_ref(), action).await;
            store.close().await;
            outcome
        }
        Command::Escrow { action } => {
            init_telemetry(&settings, std::io::stderr)?;
            let store = open_existing(&settings).await?;
            let outcome = escrow_command(store.as_ref(), action).await;
            store.close().await;
            outcome
        }
        Command::Reviewer {
            action: ReviewerCommand::ExportIdentity { username, out },
        } => {
            init_telemetry(&settings, std::io::stderr)?;
            let store = open_existing(&settings).await?;
            let outcome = export_identity(store.as_ref(), &username, &out).await;
            store.close().await;
            outcome
        }
        Command::Desk {
            action:
                DeskCommand::GrantCases {
                    desk,
                    coordinator,
                    to,
                },
        } => {
            init_telemetry(&settings, std::io::stderr)?;
            let store = open_existing(&settings).await?;
            let outcome = grant_desk_cases(store.as_ref(), &desk, &coordinator, &to).await;
            store.close().await;
            outcome
        }
        Command::Audit {
            action: AuditCommand::Verify { anchors },
        } => {
            init_telemetry(&settings, std::io::stderr)?;
            let store = open_existing(&settings).await?;
            let outcome = audit::verify_against(store.as_ref(), &anchors).await;
            store.close().await;
            let verified = outcome?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "audit chain intact: {} events", verified.events)?;
            if let Some(head) = verified.head {
                writeln!(
                    stdout,
                    "head: {head}\n(keep this line off the server; `audit verify --anchor {head}` \
                     later proves the chain still holds it)"
                )?;
            }
            Ok(())
        }
    }
}

/// The service's database for an operator command: opened as it is, never created or migrated,
/// so that a shell without the service's environment (another working directory, a missing
/// `APP_DATABASE__URL`) fails instead of making and initialising a database of its own.
async fn open_existing(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn storage::Store>> {
    crate::startup::open_initialised(&settings.database.url, settings.database.timeouts())
        .await
        .map_err(|error| {
            crate::startup::NoInstance::explain(
                error,
                "operator commands use the service's existing database and neither create nor \
                 migrate one (run them with the service's environment; after an upgrade, \
                 `incident-vault migrate` first)",
            )
        })
}

/// A start or `init` that will refuse for want of an escrow recipient (none configured, and none
/// may be generated and shown here) refuses before anything is created or migrated: the target
/// may be an empty database meant for `pg_restore`, or the path of a file about to be restored.
/// A database that holds an instance already records its recipient, and goes on; one that
/// cannot be reached is named with its cause (the recipient is not what is wrong there).
async fn refuse_early_without_escrow_recipient(
    settings: &Settings,
    generation: EscrowGeneration,
) -> anyhow::Result<()> {
    if settings.escrow_recipient()?.is_some() || generation == EscrowGeneration::Allowed {
        return Ok(());
    }
    match crate::startup::open_initialised(&settings.database.url, settings.database.timeouts())
        .await
    {
        Ok(store) => {
            store.close().await;
            Ok(())
        }
        Err(error) if error.is::<crate::startup::NoInstance>() => {
            Err(crate::services::instance::no_escrow_recipient())
        }
        Err(error) => Err(error),
    }
}

/// Keeps this process's memory (reports being sealed, open identities, the escrow identity shown
/// on first start) out of core dumps and away from another process of the same user: not
/// dumpable (which also forbids ptrace by the same user, and which a core-dump pipe handler
/// cannot override), and a core size limit of 0. The systemd unit and the container's run line
/// say the same from outside; this holds wherever the binary is started.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{
            DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit,
        };
        set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
    }
    Ok(())
}

/// Makes every file this process creates readable by its owner only (umask 077): the SQLite
/// database with its `-wal` and `-shm` files, wherever `database.url` puts them (the data folder
/// is created 0700, but a database named outside it was created 0644), and anything else written.
pub fn private_files() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Whether a secret made at start-up (a generated escrow identity, the setup code) may be shown:
/// only to a person at an interactive terminal on a local instance. In production (containers,
/// service managers) the terminal may itself be a log.
fn secrets_may_be_shown(settings: &Settings) -> EscrowGeneration {
    let interactive = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if interactive && settings.environment == Environment::Local {
        EscrowGeneration::Allowed
    } else {
        EscrowGeneration::Refused
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_telemetry(&settings, std::io::stdout)?;
    let generation = secrets_may_be_shown(&settings);
    refuse_early_without_escrow_recipient(&settings, generation).await?;
    let mut application =
        Application::build_showing(settings, generation, &mut show_escrow_identity_once).await?;
    // Shown already: the secret is dropped now rather than kept for the life of the process.
    let escrow_generated = application.take_generated_escrow().is_some();
    // Issued only when `generation` allows it: a local instance at a terminal. Elsewhere start-up
    // logs how to ask for one.
    if let Some(code) = application.take_setup_code() {
        let shown = writeln!(
            std::io::stdout().lock(),
            "setup code: {}\n(one use, valid for an hour: POST /api/v1/enrol with it as the token \
             creates the first account; `incident-vault setup-code` prints a fresh one)",
            code.expose_secret()
        );
        if shown.is_err() {
            // Best effort: a closed stdout must not stop the service.
            tracing::warn!("could not print the setup code; run `incident-vault setup-code`");
        }
    }
    application.run_until_stopped().await.with_context(|| {
        if escrow_generated {
            "the service stopped with an error; the escrow identity shown at this start IS \
             recorded: keep it"
        } else {
            "the service stopped with an error"
        }
    })?;
    Ok(())
}

async fn case_command(store: &dyn storage::Store, action: CaseCommand) -> anyhow::Result<()> {
    match action {
        CaseCommand::Decrypt { identity, case_ref } => {
            let case_ref = CaseRef::parse(&case_ref)?;
            let identities = read_identities(&identity)?;
            let borrowed: Vec<&dyn age::Identity> = identities
                .iter()
                .map(|identity| identity.as_ref() as &dyn age::Identity)
                .collect();
            let outcome = offline::decrypt_case(store, &borrowed, &case_ref).await;
            let event = NewAuditEvent {
                occurred_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                actor: "cli".into(),
                action: "case.read.offline".into(),
                target: Some(case_ref.to_string()),
                outcome: if outcome.is_ok() {
                    "success"
                } else {
                    "refused"
                }
                .into(),
            };
            audit::record(store, event).await.context(
                "could not write the audit event, so nothing was shown (an older backup may \
                     need `incident-vault migrate` first)",
            )?;
            let case = outcome?;
            if case.report.is_null() {
                // Every case is filed with its report: a case without one lost it to someone
                // with write access to the database, or to a damaged restore.
                writeln!(
                    std::io::stderr().lock(),
                    "warning: case {case_ref} holds no report entry; it was deleted, or this \
                     database was changed. Compare it with a backup (`case dump`)."
                )?;
            }
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &case)?;
            writeln!(stdout)?;
            Ok(())
        }
        CaseCommand::Dump { case_ref, out } => {
            let case_ref = CaseRef::parse(&case_ref)?;
            let written = offline::dump_case(store, &case_ref, &out).await?;
            let mut stdout = std::io::stdout().lock();
            for path in written {
                writeln!(stdout, "{}", path.display())?;
            }
            Ok(())
        }
    }
}

async fn escrow_command(store: &dyn storage::Store, action: EscrowCommand) -> anyhow::Result<()> {
    let EscrowCommand::Grant {
        identity,
        case,
        all,
        to,
    } = action;
    let identities = read_identities(&identity)?;
    let openers: Vec<&dyn age::Identity> = identities
        .iter()
        .map(|identity| identity.as_ref() as &dyn age::Identity)
        .collect();
    // Checked before anything else: cases the grantee holds already are skipped without opening
    // them, so a wrong key would otherwise pass unnoticed when most of them are held.
    let instance = store
        .instance()
        .await?
        .context("this database holds no instance: is it the service's database?")?;
    let escrow: age::x25519::Recipient = instance
        .escrow_recipient
        .parse()
        .map_err(|_| anyhow::anyhow!("the recorded escrow recipient is malformed"))?;
    anyhow::ensure!(
        crate::crypto::opens_recipient(&openers, &escrow),
        "the identity in {} is not the escrow identity of this instance (whose recipient is {}); \
         nothing was granted",
        identity.display(),
        instance.escrow_recipient
    );
    let target = reviewer_named(store, &to).await?;
    let cases = match case {
        Some(case) => {
            let case = CaseRef::parse(&case)?;
            if store.case_record(case.as_str()).await?.is_none() {
                anyhow::bail!("there is no case {case} in this database");
            }
            vec![case]
        }
        None if all => every_case(store).await?,
        None => anyhow::bail!("name a case with --case, or give --all"),
    };
    let tally = grant_with_progress(store, &openers, &cases, &target, "cli:escrow").await?;
    if tally.not_opened == cases.len() as u64 && !cases.is_empty() {
        anyhow::bail!(
            "the identity in {} opened none of the cases: is it the escrow identity of this \
             instance?",
            identity.display()
        );
    }
    Ok(())
}

async fn grant_desk_cases(
    store: &dyn storage::Store,
    desk: &str,
    coordinator: &str,
    to: &str,
) -> anyhow::Result<()> {
    let desk = store
        .desk_by_slug(desk)
        .await?
        .with_context(|| format!("there is no desk `{desk}`"))?;
    let target = reviewer_named(store, to).await?;
    let member = store
        .memberships_of(&target.id)
        .await?
        .iter()
        .any(|membership| membership.desk_id == desk.id);
    anyhow::ensure!(member, "{to} is not a member of the desk `{}`", desk.slug);
    let password = read_password(&format!("password of {coordinator}: "))?;
    let (reviewer, identity) = accounts::unlock_with_password(store, coordinator, password).await?;
    let coordinates = reviewer.role == Role::Coordinator.as_str()
        || store
            .memberships_of(&reviewer.id)
            .await?
            .iter()
            .any(|m| m.desk_id == desk.id && m.role == DeskRole::Coordinator.as_str());
    anyhow::ensure!(
        coordinates,
        "{coordinator} does not coordinate the desk `{}`",
        desk.slug
    );
    let mut cases = Vec::new();
    let mut filter = storage::CaseFilter {
        desk_id: Some(desk.id.clone()),
        limit: 500,
        ..storage::CaseFilter::default()
    };
    loop {
        let page = store.cases_granted_to(&reviewer.id, &filter).await?;
        for case in &page {
            cases.push(CaseRef::parse(&case.id)?);
        }
        match page.last() {
            Some(last) if page.len() as i64 == filter.limit => {
                filter.after = Some((last.received_on.clone(), last.id.clone()));
            }
            _ => break,
        }
    }
    let actor = reviewer.id.clone();
    grant_with_progress(store, &[&identity], &cases, &target, &actor).await?;
    Ok(())
}

async fn grant_with_progress(
    store: &dyn storage::Store,
    openers: &[&dyn age::Identity],
    cases: &[CaseRef],
    target: &storage::ReviewerRecord,
    actor: &str,
) -> anyhow::Result<grants::OfflineTally> {
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cases  {eta} left")
            .context("the progress bar template is malformed")?,
    );
    let tally =
        grants::grant_cases_offline(store, openers, cases, target, actor, || bar.inc(1)).await;
    bar.finish_and_clear();
    let tally = tally.map_err(|error| anyhow::anyhow!("{error:#}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "granted {} case(s) to {}; {} held already; {} not opened by the given identity; {} \
         refused",
        tally.granted,
        target.username,
        tally.already_held,
        tally.not_opened,
        tally.refused.len()
    )?;
    if !tally.refused.is_empty() {
        for case in &tally.refused {
            writeln!(out, "refused: {case}")?;
        }
        anyhow::bail!(
            "{} case(s) hold a grant that opens but fails its checks (bound to another case or \
             epoch, or another key than the case seals to): they were not granted. Someone with \
             write access to the database may have changed them; compare them with a backup \
             (`case dump`).",
            tally.refused.len()
        );
    }
    Ok(tally)
}

async fn every_case(store: &dyn storage::Store) -> anyhow::Result<Vec<CaseRef>> {
    let mut cases = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.case_ids(after.as_deref(), 1000).await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for id in &page {
            cases.push(CaseRef::parse(id)?);
        }
        after = Some(last);
    }
    Ok(cases)
}

async fn reviewer_named(
    store: &dyn storage::Store,
    username: &str,
) -> anyhow::Result<storage::ReviewerRecord> {
    store
        .reviewer_by_username(username)
        .await?
        .map(|(reviewer, _)| reviewer)
        .with_context(|| format!("there is no account `{username}`"))
}

async fn export_identity(
    store: &dyn storage::Store,
    username: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let password = read_password(&format!("password of {username}: "))?;
    let (reviewer, identity) = accounts::unlock_with_password(store, username, password).await?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "could not create {} (it is never overwritten)",
            out.display()
        )
    })?;
    // The file is kept only once it is whole and its export is audited: a partial file, or an
    // export the log does not show, is removed.
    let written = async {
        let secret = identity.to_string();
        writeln!(
            file,
            "# incident-vault reviewer identity of {}\n# reviewer id: {} (your grant files in a \
             `case dump` are grant-epoch<N>-reviewer-{}.age)\n# public key: {}\n{}",
            reviewer.username,
            reviewer.id,
            reviewer.id,
            identity.to_public(),
            secret.expose_secret()
        )?;
        file.sync_all()?;
        audit::record(
            store,
            NewAuditEvent {
                occurred_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                actor: "cli".into(),
                action: "reviewer.identity_exported".into(),
                target: Some(reviewer.id.clone()),
                outcome: "success".into(),
            },
        )
        .await
        .context("could not audit the export")?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = written {
        drop(file);
        let removed = std::fs::remove_file(out);
        return Err(match removed {
            Ok(()) => error.context(format!("{} was removed", out.display())),
            Err(_) => error.context(format!(
                "{} holds a secret and could not be removed: delete it",
                out.display()
            )),
        });
    }
    writeln!(
        std::io::stdout().lock(),
        "wrote the identity of {} to {}: keep it encrypted, and delete it when done",
        reviewer.username,
        out.display()
    )?;
    Ok(())
}

/// Reads a password: without echo from a terminal, or one line from standard input otherwise
/// (scripts, tests).
/// An empty one is refused before any account is tried: a script or `systemd-run` without
/// input would otherwise count as failed logins and lock the account.
fn read_password(prompt: &str) -> anyhow::Result<age::secrecy::SecretString> {
    // Read into a buffer wiped on drop, then copied once into the secret at its exact size:
    // `SecretString::from(String)` would shrink the String and leave a copy behind.
    let line = if std::io::stdin().is_terminal() {
        zeroize::Zeroizing::new(
            rpassword::prompt_password(prompt).context("could not read the password")?,
        )
    } else {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("could not read the password from standard input")?;
        line
    };
    let password = age::secrecy::SecretString::from(line.trim_end_matches(['\r', '\n']));
    if password.expose_secret().is_empty() {
        anyhow::bail!(
            "no password was given (standard input was empty or a blank line); nothing was tried"
        );
    }
    Ok(password)
}

/// The largest identity file read: thousands of keys, far beyond any real one.
const IDENTITY_FILE_MAX_BYTES: usize = 64 * 1024;

fn read_identities(path: &Path) -> anyhow::Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("could not open the identity file {}", path.display()))?;
    #[cfg(unix)]
    if let Ok(metadata) = file.metadata() {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            writeln!(
                std::io::stderr().lock(),
                "warning: others than its owner may read the identity file {} (chmod 600 it, or \
                 keep it on an encrypted medium that only you mount)",
                path.display()
            )?;
        }
    }
    // Read into one buffer of a fixed size, wiped on drop: a growing Vec would leave copies of
    // the key behind in freed memory when the file is a pipe (`--identity <(age -d key.age)`).
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(IDENTITY_FILE_MAX_BYTES + 1));
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut file, IDENTITY_FILE_MAX_BYTES as u64 + 1),
        &mut bytes,
    )
    .with_context(|| format!("could not read the identity file {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() <= IDENTITY_FILE_MAX_BYTES,
        "{} is larger than an identity file ({} KiB at most)",
        path.display(),
        IDENTITY_FILE_MAX_BYTES / 1024
    );
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"age-encryption.org/") || start.starts_with(b"-----BEGIN AGE") {
        anyhow::bail!(
            "{} is an encrypted age file (a passphrase-protected identity?): open it with \
             `age -d` into a folder only you can read, pass that file, and delete it after",
            path.display()
        );
    }
    if start.starts_with(b"age1") {
        anyhow::bail!(
            "{} holds a recipient (a public key, age1…), not an identity (AGE-SECRET-KEY-1…)",
            path.display()
        );
    }
    let identities = age::IdentityFile::from_buffer(&bytes[..])
        .with_context(|| format!("could not read the identity file {}", path.display()))?
        .into_identities()
        .map_err(|_| anyhow::anyhow!("{} holds no usable age identity", path.display()))?;
    // An empty file, /dev/null or one of comments only: said as such, not as "no grant".
    anyhow::ensure!(
        !identities.is_empty(),
        "{} holds no age identity",
        path.display()
    );
    Ok(identities)
}

fn init_telemetry<W>(settings: &Settings, writer: W) -> anyhow::Result<()>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    crate::telemetry::init_subscriber(settings.telemetry.format, &settings.telemetry.level, writer)
}

/// Shows a freshly generated escrow identity on the terminal, once, before it is recorded. It
/// goes to the terminal directly, never through the log.
fn show_escrow_identity_once(escrow: &GeneratedEscrow) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    write_escrow_identity(&mut stdout, escrow)?;
    stdout.flush()?;
    Ok(())
}

/// The text that [`show_escrow_identity_once`] shows: the instructions, and between the markers
/// an age identity file for the escrow recipient.
fn write_escrow_identity(out: &mut impl Write, escrow: &GeneratedEscrow) -> std::io::Result<()> {
    writeln!(
        out,
        "\n==================== ESCROW IDENTITY: SHOWN ONCE, NEVER STORED ====================\n\
         This instance generated its offline escrow key. Every case is also sealed to it: with\n\
         it, and only with it, the cases can be read if every reviewer is lost.\n\
         \n\
         1. Copy the three lines between the markers into a file on an offline, encrypted medium\n\
         \x20  (two copies, in two places). It is a standard age identity file.\n\
         2. Clear this terminal's scrollback.\n\
         3. For every later start, set APP_ESCROW__RECIPIENT={recipient}\n\
         \n\
         ----- begin escrow identity -----\n\
         # incident-vault escrow identity\n\
         # public key: {recipient}\n\
         {identity}\n\
         ----- end escrow identity -----\n\
         ====================================================================================\n",
        recipient = escrow.recipient,
        identity = escrow.identity.expose_secret(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use age::secrecy::SecretString;

    use super::*;

    /// Once called, the process is not dumpable and may write no core file.
    #[test]
    #[cfg(target_os = "linux")]
    fn core_dumps_are_turned_off() {
        use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};

        forbid_core_dumps().unwrap();

        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
    }

    /// What an operator copies from between the markers is an age identity file that opens what
    /// is sealed to the recipient they are told to configure.
    #[test]
    fn the_shown_escrow_identity_is_an_identity_file_for_the_recipient_to_configure() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let escrow = GeneratedEscrow {
            identity: SecretString::from(identity.to_string().expose_secret().to_owned()),
            recipient: recipient.to_string(),
        };
        let mut shown = Vec::new();
        write_escrow_identity(&mut shown, &escrow).unwrap();
        let shown = String::from_utf8(shown).unwrap();

        assert!(shown.contains(&format!("APP_ESCROW__RECIPIENT={recipient}\n")));
        let (_, after_begin) = shown
            .split_once("----- begin escrow identity -----\n")
            .unwrap();
        let (file, _) = after_begin
            .split_once("----- end escrow identity -----")
            .unwrap();
        assert_eq!(file.lines().count(), 3, "{} lines", file.lines().count());
        assert_eq!(
            file.matches("AGE-SECRET-KEY-1").count(),
            1,
            "exactly one secret key line"
        );
        let identities = age::IdentityFile::from_buffer(file.as_bytes())
            .unwrap()
            .into_identities()
            .unwrap();
        let sealed = age::encrypt(&recipient, b"escrow drill").unwrap();
        let decryptor = age::Decryptor::new(&sealed[..]).unwrap();
        let mut opened = Vec::new();
        decryptor
            .decrypt(
                identities
                    .iter()
                    .map(|identity| identity.as_ref() as &dyn age::Identity),
            )
            .unwrap()
            .read_to_end(&mut opened)
            .unwrap();
        assert_eq!(opened, b"escrow drill");
    }
}
