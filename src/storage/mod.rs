//! Persistence. One [`Store`] trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (production). Storage knows nothing about HTTP and never sees plaintext content:
//! every value it receives is either on the plaintext allowlist of DESIGN §4 or a ciphertext.

#[cfg(feature = "postgres")]
pub mod postgres;
mod records;
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;

pub use records::*;

/// Below this many grants, the triage list starts from the reviewer's grants instead of walking
/// every case newest first (`Store::cases_granted_to`).
pub const FEW_GRANTS: i64 = 1000;

/// Grants written in the same statement as their new case; more (a desk of hundreds) follow in
/// statements of this many, far below either database's limit on bound parameters.
pub const GRANTS_PER_STATEMENT: usize = 500;

/// Computes an audit event's hash from its sequence, the previous hash and its content.
pub type AuditChain = dyn for<'a, 'b> Fn(i64, &'a [u8], &'b NewAuditEvent) -> Vec<u8> + Send + Sync;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; the name says which.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The database could not be reached or refused the operation.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error(transparent)]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database answered that a table does not exist: an empty database, or one
    /// that is not this service's.
    pub fn is_missing_table(&self) -> bool {
        let Self::Database(sqlx::Error::Database(database)) = self else {
            return false;
        };
        database.code().as_deref() == Some("42P01")
            || database.message().starts_with("no such table")
    }

    /// Whether the database answered that it holds no instance row, or no instance table.
    pub fn holds_no_instance(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::RowNotFound)) || self.is_missing_table()
    }

    /// Whether the database is only unavailable for now (unreachable, restarting, busy past the
    /// timeout, out of connections), so that the request can be answered with 503 and retried,
    /// rather than being a fault of ours (500).
    pub fn is_transient(&self) -> bool {
        let Self::Database(error) = self else {
            return false;
        };
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::BeginFailed => true,
            sqlx::Error::Database(database) => {
                database.code().as_deref().is_some_and(transient_code)
            }
            _ => false,
        }
    }
}

/// A database error code that means "try again": SQLite's BUSY and LOCKED (extended codes
/// carry the primary code in their low byte); PostgreSQL's connection failures (class 08),
/// shutdown and start-up (57P01–57P03), serialisation failure and deadlock (40001, 40P01), too
/// many connections (53300), lock or statement time-outs (55P03, 57014), and a session ended
/// for idling inside a transaction (25P03).
fn transient_code(code: &str) -> bool {
    // A SQLSTATE is always five characters, and may be all digits ("40001"); SQLite's extended
    // codes are integers below 10,000.
    if code.len() != 5 {
        return code
            .parse::<i32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6));
    }
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300" | "55P03" | "57014" | "25P03"
        )
}

/// Begins a transaction on a task of its own, and hands it over when BEGIN has been answered.
///
/// sqlx 0.9.0's PostgreSQL driver forgets a BEGIN whose answer its caller did not wait for
/// (launchbadge/sqlx#4393): if the future of `Pool::begin` is dropped in that moment (actix drops a
/// handler whose client hung up, a phone on a shaky connection), the connection goes back to the
/// pool inside an open transaction. Every later statement on it then runs inside that transaction:
/// intake would answer 201 for reports that a later ROLLBACK, error or reconnection throws away.
/// On a task of its own the BEGIN is always waited for; if nobody takes the transaction any more,
/// it is dropped there and rolled back as every abandoned transaction is. Costs one task spawn.
pub async fn begin<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    let pool = pool.clone();
    #[allow(clippy::disallowed_methods)] // the one place allowed to call it: see above
    let task = tokio::spawn(async move { pool.begin().await });
    match task.await {
        Ok(transaction) => transaction,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only when the runtime itself shuts down.
        Err(_) => Err(sqlx::Error::PoolClosed),
    }
}

/// Whether an idle connection is still inside a transaction, which the pool must then close
/// (closing rolls it back) instead of handing it out. It happens when a COMMIT and the ROLLBACK
/// after it both fail, as on SQLite with a full disk: sqlx still counts the transaction as open,
/// SQLite still holds it and its write lock, and the next BEGIN on that connection would become a
/// savepoint inside it: the report written there is answered 201 and never committed, and every
/// other writer times out on the lock. A test fills a disk to check it. The check reads sqlx's own
/// count; it costs nothing.
pub(crate) fn in_a_lost_transaction<C: sqlx::Connection>(connection: &C) -> bool {
    let lost = connection.is_in_transaction();
    if lost {
        tracing::error!(
            "a database connection was still inside a failed transaction; it is closed, which \
             rolls that transaction back"
        );
    }
    lost
}

/// The database behind the vault. Every write that must be atomic is one method here, so a
/// failure half-way leaves nothing behind.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and the readiness answer.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations; how many it applied.
    async fn migrate(&self) -> Result<usize, StoreError>;

    /// Reads the instance row, so that readiness means "this service's database answers": an
    /// unreachable, empty or unmigrated database is an error.
    async fn health_check(&self) -> Result<(), StoreError>;

    /// Closes the pool: in-flight queries finish, new ones fail at once.
    async fn close(&self);

    /// The instance row, if the instance was initialised.
    async fn instance(&self) -> Result<Option<InstanceRecord>, StoreError>;

    /// Creates the instance row and the default desk unless they exist, then returns the row that
    /// won: two nodes starting at once on an empty database agree on one instance.
    async fn initialise_instance(
        &self,
        instance: &InstanceRecord,
        default_desk: &DeskRecord,
    ) -> Result<InstanceRecord, StoreError>;

    /// Every desk, by slug.
    async fn desks(&self) -> Result<Vec<DeskRecord>, StoreError>;

    /// One desk by slug.
    async fn desk_by_slug(&self, slug: &str) -> Result<Option<DeskRecord>, StoreError>;

    /// A desk by slug with the age recipients of its active members, who receive a grant at
    /// intake; `None` if no desk has that slug. One query: it runs for every report.
    async fn intake_desk(&self, slug: &str) -> Result<Option<IntakeDesk>, StoreError>;

    /// Writes a new case, its grants, its report entry, its reporter access and its idempotency
    /// record atomically. [`StoreError::Conflict`]`("idempotency_key")` when a live record with
    /// the same key hash already exists; an expired one that was not purged yet is replaced.
    async fn insert_sealed_case(&self, case: &NewSealedCase) -> Result<(), StoreError>;

    /// The idempotency record for a key hash, unless it has expired at `now`.
    async fn idempotency_record(
        &self,
        key_hash: &[u8],
        now: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Deletes idempotency records that expired before `now`; returns how many.
    async fn purge_expired_idempotency(&self, now: i64) -> Result<u64, StoreError>;

    /// Deletes the sessions past their absolute expiry (`expires_at <= now`) or last seen before
    /// `idle_before`; returns how many.
    async fn purge_dead_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError>;

    /// One case row.
    async fn case_record(&self, case_id: &str) -> Result<Option<CaseRecord>, StoreError>;

    /// Every grant of a case, all epochs.
    async fn grants_of_case(&self, case_id: &str) -> Result<Vec<GrantRecord>, StoreError>;

    /// Every entry of a case, oldest first.
    async fn entries_of_case(&self, case_id: &str) -> Result<Vec<EntryRecord>, StoreError>;

    /// Appends an audit event in one transaction: takes the next sequence and the previous hash
    /// from the chain head, lets `chain` compute the event's hash from them, stores the event and
    /// moves the head. Concurrent appends serialise on the head row.
    async fn append_audit_event(
        &self,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<i64, StoreError>;

    /// Up to `limit` audit events with a sequence above `after`, in order.
    async fn audit_events(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEventRecord>, StoreError>;

    /// The chain head: the last sequence handed out and the hash of that event.
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;

    /// How many reviewer accounts exist: active or disabled ones, and pending ones whose
    /// enrolment token is still live at `now`. A pending account whose token expired unconfirmed
    /// does not count (nobody can finish it).
    async fn reviewer_count(&self, now: i64) -> Result<i64, StoreError>;

    /// Stores a new enrolment token (by hash) and appends `event`, in one transaction. An
    /// invitation (one with a username) replaces the earlier invitation of the same username in
    /// the same transaction, and says whether it did: an open one (the event is then recorded
    /// with the outcome `success:replaced`), or one redeemed but not confirmed, whose pending
    /// account is removed with it (`success:replaced_redeemed`); either way the earlier token
    /// stops working. One made at the same moment by another request is
    /// [`StoreError::Conflict`]`("invitation")`, and a username an account that confirmed holds
    /// (checked in the same transaction) is [`StoreError::Conflict`]`("username")`.
    async fn insert_enrolment(
        &self,
        enrolment: &EnrolmentRecord,
        now: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<bool, StoreError>;

    /// An enrolment by token hash.
    async fn enrolment(&self, token_hash: &[u8]) -> Result<Option<EnrolmentRecord>, StoreError>;

    /// Redeems an unspent, unexpired enrolment that is unredeemed, or whose earlier redemption
    /// is `redemption.replacing` and still pending (that account, its secrets and memberships are
    /// removed first, and so is a pending account of the same username whose token is no longer
    /// live): creates the pending account, its secrets, its desk memberships and the
    /// audit event in one transaction. [`StoreError::Conflict`] when the token was redeemed or
    /// confirmed meanwhile (`enrolment`) or the username is taken (`username`).
    async fn redeem_enrolment(
        &self,
        redemption: &Redemption<'_>,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Replaces any unredeemed setup code with a new one and appends `event`, in one
    /// transaction, unless an account exists in the sense of [`Store::reviewer_count`] (then
    /// `false`, and nothing is stored). Pending accounts whose token expired unconfirmed are
    /// removed with their enrolments, so that an enrolment abandoned half-way cannot lock the
    /// instance out of its first account.
    async fn replace_setup_code(
        &self,
        enrolment: &EnrolmentRecord,
        now: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<bool, StoreError>;

    /// Activates the account of a redeemed enrolment, spends the token, records the TOTP step
    /// used, and appends the audit event, in one transaction. [`StoreError::Conflict`] when it
    /// was confirmed already.
    async fn confirm_enrolment(
        &self,
        token_hash: &[u8],
        reviewer_id: &str,
        totp_step: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// A reviewer and their login material, by username.
    async fn reviewer_by_username(
        &self,
        username: &str,
    ) -> Result<Option<(ReviewerRecord, ReviewerSecretsRecord)>, StoreError>;

    /// A reviewer by id.
    async fn reviewer(&self, reviewer_id: &str) -> Result<Option<ReviewerRecord>, StoreError>;

    /// Counts a failed login, atomically, moves the lock-out deadline to
    /// `deadline(failures, now)` for the new count unless it is already later, and appends
    /// `event`, in one transaction (a flood of wrong passwords costs one commit per guess).
    async fn record_login_failure(
        &self,
        reviewer_id: &str,
        now: i64,
        deadline: fn(i64, i64) -> i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Records that the offline tools opened an identity with the right password: clears the
    /// failure count, as a login does (unless a parallel guess has locked the account at `now`
    /// meanwhile), and appends `event`, in one transaction.
    async fn record_password_unlock(
        &self,
        reviewer_id: &str,
        now: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Completes a login in one transaction: spends the TOTP step, clears the failure count,
    /// stores the session and appends `event`. Refused, and nothing written, with
    /// [`StoreError::Conflict`]`("inactive")` when the account is no longer active (its row is
    /// locked first, so a concurrent disabling waits and then deletes this session), and with
    /// `("login")` when the step (or a later one) was spent, the account is locked at `now`, or
    /// its password changed since `login_verifier` was read.
    #[allow(clippy::too_many_arguments)]
    async fn complete_login(
        &self,
        session: &SessionRecord,
        totp_step: i64,
        login_verifier: &[u8],
        now: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// A live session (not expired at `now`, account active) by token hash, with its reviewer.
    async fn live_session(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<(SessionRecord, ReviewerRecord)>, StoreError>;

    /// Moves a session's idle clock.
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<(), StoreError>;

    /// Deletes one session (logout).
    async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError>;

    /// Deletes every session of a reviewer (password change, disabling).
    async fn delete_sessions_of(&self, reviewer_id: &str) -> Result<u64, StoreError>;

    /// Cases a reviewer holds a grant for, newest first, filtered.
    async fn cases_granted_to(
        &self,
        reviewer_id: &str,
        filter: &CaseFilter,
    ) -> Result<Vec<CaseRecord>, StoreError>;

    /// The grants a reviewer holds for one case (every epoch).
    async fn grants_of_reviewer_for_case(
        &self,
        reviewer_id: &str,
        case_id: &str,
    ) -> Result<Vec<GrantRecord>, StoreError>;

    /// Every account, by username.
    async fn reviewers(&self) -> Result<Vec<ReviewerRecord>, StoreError>;

    /// A reviewer's login material, by reviewer id.
    async fn reviewer_secrets(
        &self,
        reviewer_id: &str,
    ) -> Result<Option<ReviewerSecretsRecord>, StoreError>;

    /// Every desk membership, by desk then reviewer.
    async fn desk_members(&self) -> Result<Vec<DeskMemberRecord>, StoreError>;

    /// The desks one reviewer belongs to.
    async fn memberships_of(&self, reviewer_id: &str) -> Result<Vec<DeskMemberRecord>, StoreError>;

    /// Changes an account's role or status and appends `events` to the audit log, in one
    /// transaction. Disabling deletes the account's sessions in the same transaction; making it a
    /// plain `reviewer` makes it a plain member of the desks it coordinated. `false`, and nothing
    /// written, when there is no such account.
    async fn change_account(
        &self,
        reviewer_id: &str,
        change: &AccountChange,
        events: &[NewAuditEvent],
        chain: &AuditChain,
    ) -> Result<bool, StoreError>;

    /// Creates a desk and appends `event`, in one transaction. [`StoreError::Conflict`]`("slug")`
    /// when the slug is taken (nothing is stored).
    async fn insert_desk(
        &self,
        desk: &DeskRecord,
        created_on: &str,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Replaces the members of a desk and appends `event`, in one transaction that locks the
    /// desk's row first (two replacements take turns). [`StoreError::Conflict`]`("desk")` when
    /// there is no such desk.
    async fn set_desk_members(
        &self,
        desk_id: &str,
        members: &[DeskMemberRecord],
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Notes that the session's password was re-entered at `now` (step-up) and appends `event`,
    /// in one transaction, unless the session is gone or its account is locked at `now` (a
    /// parallel guess failed after this one read the account): then
    /// [`StoreError::Conflict`]`("step_up")`, and nothing is stored.
    async fn record_step_up(
        &self,
        token_hash: &[u8],
        now: i64,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Adds grants to a case whose key epoch is still `epoch`; grants that exist are kept as
    /// they are, and a reviewer who is not active when the row is written (disabled while the
    /// grant was sealed) gets none. When any was new, appends `event` in the same transaction.
    /// Returns how many were new. [`StoreError::Conflict`]`("epoch")` when the case was re-keyed meanwhile, or
    /// does not exist.
    async fn add_grants(
        &self,
        case_id: &str,
        epoch: i64,
        grants: &[GrantRecord],
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<u64, StoreError>;

    /// Revokes a reviewer's access and re-keys the case, in one transaction: deletes every grant
    /// of the revoked reviewer, moves the case to the new epoch and recipient, stores the new
    /// epoch's grants (a reviewer grant only if that account is active: its row is locked and
    /// checked, and an inactive one is left out) and appends `event`. [`StoreError::Conflict`] when the epoch (`epoch`) or
    /// the set of reviewer grantees (`grantees`) changed since the caller read them.
    async fn rekey_case(
        &self,
        rekey: &Rekey,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;

    /// Appends an entry to a case whose key epoch is still the entry's epoch.
    /// [`StoreError::Conflict`]`("epoch")` otherwise: content is never sealed to a revoked key.
    async fn insert_entry(&self, entry: &EntryRecord) -> Result<(), StoreError>;

    /// Case ids in id order, strictly after `after`, at most `limit`.
    async fn case_ids(&self, after: Option<&str>, limit: i64) -> Result<Vec<String>, StoreError>;

    /// Replaces a reviewer's password-derived material (new salt, verifier, sealed identity and
    /// TOTP, and the recovery copies), clears lock-outs, deletes every session of the account,
    /// opens `change.new_session` if there is one (recovery) and appends the audit event, in one
    /// transaction; so a failure anywhere leaves the old secrets, and the recovery code that the
    /// client never saw replaced is still the one that works. Refused with
    /// [`StoreError::Conflict`]: `("inactive")` when the account is not active (an admin may
    /// disable it while the KDF runs; its row is locked first, so a disabling waits or is
    /// seen), `("secrets")` when the stored verifier is no longer `change.expected_verifier` or
    /// the account is locked at `change.now` (a parallel guess failed after this change read it)
    /// or `change.totp_step` (a recovery's) or a later one was spent meanwhile.
    async fn replace_login_secrets(
        &self,
        change: &SecretsChange<'_>,
        event: &NewAuditEvent,
        chain: &AuditChain,
    ) -> Result<(), StoreError>;
}

/// How long the store lets the database keep a request waiting. A stalled database must cost a
/// phone a clear 503, not a hang, and must not keep a pooled connection for as long as a lock is
/// held elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A wait for a lock held elsewhere: SQLite's busy timeout, PostgreSQL's `lock_timeout`.
    pub lock: Duration,
    /// PostgreSQL's `statement_timeout`, and its `idle_in_transaction_session_timeout`: a session
    /// idle inside a transaction that long has lost its client, and its locks are released.
    pub statement: Duration,
}

impl Default for Timeouts {
    /// The defaults of `config/base.toml`.
    fn default() -> Self {
        Self {
            lock: Duration::from_secs(10),
            statement: Duration::from_secs(30),
        }
    }
}

/// Opens the store named by `url` and migrates it, with the default [`Timeouts`]. Refuses
/// schemes this binary was built without before touching anything.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    Ok(connect_migrating(url, max_connections, Timeouts::default())
        .await?
        .0)
}

/// [`connect`] with the given [`Timeouts`], saying how many migrations it applied (0 when the
/// schema was up to date).
pub async fn connect_migrating(
    url: &str,
    max_connections: u32,
    timeouts: Timeouts,
) -> anyhow::Result<(Arc<dyn Store>, usize)> {
    let store = open_with(url, max_connections, timeouts, true).await?;
    let applied = store
        .migrate()
        .await
        .context("could not run the migrations")?;
    Ok((store, applied))
}

/// Opens an existing store named by `url`, without migrating it or creating a SQLite file
/// (offline reading of a restored backup).
pub async fn open(
    url: &str,
    max_connections: u32,
    timeouts: Timeouts,
) -> anyhow::Result<Arc<dyn Store>> {
    open_with(url, max_connections, timeouts, false).await
}

async fn open_with(
    url: &str,
    max_connections: u32,
    timeouts: Timeouts,
    create_if_missing: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match Backend::of_url(url)? {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => Arc::new(
            sqlite::SqliteStore::connect(url, max_connections, timeouts, create_if_missing).await?,
        ),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            Arc::new(postgres::PostgresStore::connect(url, max_connections, timeouts).await?)
        }
    };
    Ok(store)
}

/// The database backends this binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://…`
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// `postgres://…` or `postgresql://…`
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Backend {
    /// The backend a database URL selects, or why it cannot be used by this binary.
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .unwrap_or("");
        match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Self::Sqlite),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Self::Postgres),
            #[allow(
                unreachable_patterns,
                reason = "reachable when a backend feature is off"
            )]
            "sqlite" | "postgres" | "postgresql" => {
                let feature = if scheme == "sqlite" {
                    "sqlite"
                } else {
                    "postgres"
                };
                anyhow::bail!(
                    "this binary was built without the `{feature}` backend; rebuild with the \
                     cargo feature `{feature}`"
                )
            }
            "" => anyhow::bail!("it is not a URL; expected sqlite://PATH or postgres://…"),
            other => anyhow::bail!(
                "the scheme `{other}` is not supported; expected sqlite:// or postgres://"
            ),
        }
    }
}

/// Where `url` points, for an operator's eyes: the SQLite file, or the PostgreSQL database and
/// host; never the user, the password or the parameters.
pub fn describe_url(url: &str) -> String {
    const UNPARSED: &str = "a database URL that does not parse";
    if let Some(file) = url.strip_prefix("sqlite://") {
        // SQLite's parameters (mode, cache, vfs) hold no secret; they are left out all the same.
        let file = file.split(['?', '#']).next().unwrap_or_default();
        let file = std::path::absolute(file).unwrap_or_else(|_| file.into());
        return format!("the SQLite file {}", file.display());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return UNPARSED.to_owned();
    };
    if scheme != "postgres" && scheme != "postgresql" {
        return UNPARSED.to_owned();
    }
    // A password holding an unescaped '/', '?' or '#' ends the authority early, and the parser
    // (sqlx's) would read the user as the host and the start of the password as the port: an
    // '@' after that end means the URL is not what it seems, and nothing of it is shown.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[authority_end..].contains('@') {
        return UNPARSED.to_owned();
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return UNPARSED.to_owned();
    };
    let database = parsed.path().trim_start_matches('/');
    let place = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) if !host.is_empty() => host.to_owned(),
        _ => "the local socket".to_owned(),
    };
    format!("the PostgreSQL database `{database}` on {place}")
}

/// Creates a directory readable by the service's user only (0700 on Unix).
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_url_names_the_place_and_never_the_credentials() {
        let described =
            describe_url("postgres://iv:s3cr%2Fet@db.example:5433/vault?sslmode=require");
        assert_eq!(
            described,
            "the PostgreSQL database `vault` on db.example:5433"
        );
        for url in [
            "postgresql://usr7x:sec9a@/vault?host=/run/postgresql",
            "postgres://usr7x:sec9a?sec9b@h/db",
            "postgres://usr7x:sec9a#sec9b@h/db",
            "postgres://usr7x:sec9a@sec9b@h/db",
            "postgres://usr7x:sec9a/sec9b@h/db",
            "postgres:///db?user=usr7x&password=sec9a",
            "postgres://h/db?user=usr7x&password=sec9a",
            "postgres://usr7x:1234/sec9a@h/db",
            "postgres://usr7x:1234?sec9a@h/db",
            "postgres://usr7x#@h/db",
            "postgres://usr7x:1234#sec9a@h/db",
        ] {
            let described = describe_url(url);
            for secret in ["usr7x", "sec9a", "sec9b"] {
                assert!(!described.contains(secret), "{url} → {described}");
            }
        }
        let file = describe_url("sqlite://data/incident-vault.db?mode=rwc");
        assert!(file.starts_with("the SQLite file /"), "{file}");
        assert!(file.ends_with("/data/incident-vault.db"), "{file}");
        assert_eq!(describe_url("mysql"), "a database URL that does not parse");
        assert_eq!(
            describe_url("mysql://usr7x@h/db"),
            "a database URL that does not parse"
        );
    }

    #[test]
    fn busy_locked_and_connection_codes_are_transient_and_rule_breaks_are_not() {
        // SQLite: BUSY, LOCKED and their extended forms (BUSY_SNAPSHOT 517, LOCKED_SHAREDCACHE
        // 262); a constraint (19, 2067 UNIQUE) is not.
        for code in [
            "5", "6", "517", "262", "08006", "08001", "57P01", "40001", "40P01", "55P03", "25P03",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in [
            "19", "2067", "1", "23505", "22021", "42P01", "XX000", "00005",
        ] {
            assert!(!transient_code(code), "{code}");
        }
    }

    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn known_schemes_select_their_backend_and_others_are_refused() {
        assert_eq!(
            Backend::of_url("sqlite://data/x.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://u@h/db").is_err());
        assert!(Backend::of_url("data/x.db").is_err());
    }

    /// A SQLite-only build must say why it refuses a PostgreSQL URL, so that an operator who
    /// deployed the wrong binary rebuilds it instead of hunting for a typo in the URL; and
    /// `connect` refuses it before trying to reach any server.
    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_build_without_postgres_refuses_postgres_urls_by_saying_it_was_built_without_it() {
        for url in ["postgres://u@h/db", "postgresql://u@h/db"] {
            let refusal = Backend::of_url(url).unwrap_err().to_string();
            assert!(
                refusal.contains("built without the `postgres` backend")
                    && refusal.contains("cargo feature `postgres`"),
                "{url}: {refusal}"
            );
            let Err(refusal) = connect(url, 1).await else {
                panic!("{url} was accepted by a build without PostgreSQL");
            };
            assert!(
                refusal.to_string().contains("built without"),
                "{url}: {refusal:#}"
            );
        }
    }

    #[test]
    fn both_migration_folders_have_the_same_versions() {
        let versions = |folder: &str| {
            let mut names: Vec<String> = std::fs::read_dir(folder)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .map(|name| name.split('_').next().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        let root = env!("CARGO_MANIFEST_DIR");
        let sqlite = versions(&format!("{root}/migrations/sqlite"));
        let postgres = versions(&format!("{root}/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}
