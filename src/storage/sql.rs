//! The SQL shared by both backends. SQLite and PostgreSQL both accept `$1` placeholders,
//! `ON CONFLICT` and the column types used here, so one text serves both; the macro stamps it
//! onto each backend's store, and the integration suite runs on both to check it at run time
//! (`query!` could check only one database at compile time).

use crate::storage::GRANTS_PER_STATEMENT;

/// Whether a name a client sent holds a NUL character, which no stored name can hold: PostgreSQL
/// refuses it in any text value with an error (a 500 for what is simply no match), while SQLite
/// finds no row. Lookups by such a name answer "none" on both, before the database sees it.
pub(crate) fn holds_nul(text: &str) -> bool {
    text.contains('\0')
}

/// The columns of [`crate::storage::CaseRecord`], qualified by the alias `c`.
macro_rules! case_columns {
    () => {
        "c.id, c.desk_id, c.key_epoch, c.case_recipient, c.status, c.priority, c.incident_type, \
         c.mechanism_kind, c.session_label, c.perpetrator_kind, c.incident_month, c.consent_ohchr, \
         c.consent_sg_report, c.consent_partners, c.consent_statistics, c.consent_contact, \
         c.received_on, c.updated_on"
    };
}

/// The columns of [`crate::storage::ReviewerRecord`], qualified by the alias `r`.
macro_rules! reviewer_columns {
    () => {
        "r.id, r.username, r.role, r.status, r.recipient, r.created_on"
    };
}

/// The INSERTs of a new case (its row, its report entry, its reporter access, its idempotency
/// record when it came with a key, and up to [`GRANTS_PER_STATEMENT`] grants) as one statement text,
/// so that intake sends one command instead of one per row: each round trip to the database, or
/// to SQLite's worker thread, costs more CPU than the row it writes. The INSERTs are the same on
/// both backends and number their parameters on from each other; only the joint differs. SQLite
/// runs `;`-separated statements in order (sqlx binds `$N` to the N-th argument in each);
/// PostgreSQL, which takes one statement per prepared query, gets the earlier INSERTs as
/// data-modifying `WITH` clauses of the last (its foreign keys are checked at the end of the
/// statement). The idempotency record is a plain INSERT: a record already there for the
/// key fails the whole write with a unique violation, which the caller sorts out. The caller
/// binds [`bind_sealed_case`]'s arguments and runs it inside a transaction, except on PostgreSQL
/// when it is the whole write: one statement is atomic there by itself.
pub(crate) fn sealed_case_statement(backend: &str, grants: usize, keyed: bool) -> String {
    let mut inserts = vec![
        format!(
            "INSERT INTO cases (id, desk_id, key_epoch, case_recipient, status, priority, \
             incident_type, mechanism_kind, session_label, perpetrator_kind, incident_month, \
             consent_ohchr, consent_sg_report, consent_partners, consent_statistics, \
             consent_contact, received_on, updated_on) VALUES {}",
            placeholders(0, 18)
        ),
        format!(
            "INSERT INTO entries (id, case_id, kind, author, epoch, created_on, ciphertext) \
             VALUES {}",
            placeholders(18, 7)
        ),
        format!(
            "INSERT INTO reporter_access (lookup_id, case_id, kdf_params, reporter_recipient, \
             sealed_identity, failed_attempts) VALUES {}",
            placeholders(25, 6)
        ),
    ];
    if keyed {
        // After the 18 + 7 + 6 parameters above.
        inserts.push(format!(
            "INSERT INTO idempotency_records (key_hash, sealed_response, expires_at) VALUES {}",
            placeholders(31, 3)
        ));
    }
    if grants > 0 {
        // After the parameters above.
        let first = if keyed { 34 } else { 31 };
        inserts.push(grants_statement(first, grants.min(GRANTS_PER_STATEMENT)));
    }
    if backend == "postgres" {
        let last = inserts.pop().unwrap_or_default();
        let clauses = inserts
            .iter()
            .enumerate()
            .map(|(index, insert)| format!("written_{index} AS ({insert})"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("WITH {clauses} {last}")
    } else {
        inserts.join("; ")
    }
}

/// `($first+1, …, $first+count)`.
fn placeholders(first: usize, count: usize) -> String {
    let list = (first + 1..=first + count)
        .map(|number| format!("${number}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("({list})")
}

/// An INSERT of `count` grants whose parameters are numbered from `$first+1`, followed by one
/// more, the case's desk id; bound by [`bind_grants`]. Part of [`sealed_case_statement`], and alone
/// for a desk's further grants.
///
/// A reviewer's grant is written only if the reviewer is still an active member of that desk
/// when the row is written. Intake reads the members before sealing, which may wait seconds for
/// the crypto pool: a reviewer removed from the desk or disabled in the meantime (a suspected
/// infiltrator, say) must not receive the new case's key. Their sealed grant is dropped, not
/// refused, as if the report had arrived just after the change; a member added in the meantime
/// is granted the case by a coordinator. Other grants (the escrow's) are written as they are.
pub(crate) fn grants_statement(first: usize, count: usize) -> String {
    let rows = (0..count)
        .map(|row| placeholders(first + 5 * row, 5))
        .collect::<Vec<_>>()
        .join(", ");
    let desk = first + 5 * count + 1;
    // Both databases name the columns of a VALUES list column1, column2, …
    format!(
        "INSERT INTO grants (case_id, grantee_kind, grantee_id, epoch, ciphertext) \
         SELECT g.column1, g.column2, g.column3, g.column4, g.column5 FROM (VALUES {rows}) AS g \
         WHERE g.column2 <> 'reviewer' OR EXISTS (SELECT 1 FROM desk_members m \
         JOIN reviewers r ON r.id = m.reviewer_id AND r.status = 'active' \
         WHERE m.desk_id = ${desk} AND m.reviewer_id = g.column3)"
    )
}

/// Binds the arguments of [`grants_statement`], in its order: the grants, then the desk id.
pub(crate) fn bind_grants<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    grants: &'q [crate::storage::GrantRecord],
    desk_id: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    for grant in grants {
        query = query
            .bind(grant.case_id.as_str())
            .bind(grant.grantee_kind.as_str())
            .bind(grant.grantee_id.as_str())
            .bind(grant.epoch)
            .bind(grant.ciphertext.as_slice());
    }
    query.bind(desk_id)
}

/// Binds the arguments of [`sealed_case_statement`], in its order.
pub(crate) fn bind_sealed_case<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    new: &'q crate::storage::NewSealedCase,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let case = &new.case;
    query = query
        .bind(case.id.as_str())
        .bind(case.desk_id.as_str())
        .bind(case.key_epoch)
        .bind(case.case_recipient.as_str())
        .bind(case.status.as_str())
        .bind(case.priority.as_str())
        .bind(case.incident_type.as_str())
        .bind(case.mechanism_kind.as_deref())
        .bind(case.session_label.as_deref())
        .bind(case.perpetrator_kind.as_deref())
        .bind(case.incident_month.as_deref())
        .bind(case.consent_ohchr)
        .bind(case.consent_sg_report.as_str())
        .bind(case.consent_partners)
        .bind(case.consent_statistics)
        .bind(case.consent_contact)
        .bind(case.received_on.as_str())
        .bind(case.updated_on.as_str());
    let entry = &new.report;
    query = query
        .bind(entry.id.as_str())
        .bind(entry.case_id.as_str())
        .bind(entry.kind.as_str())
        .bind(entry.author.as_str())
        .bind(entry.epoch)
        .bind(entry.created_on.as_str())
        .bind(entry.ciphertext.as_slice());
    let access = &new.reporter_access;
    query = query
        .bind(access.lookup_id.as_slice())
        .bind(access.case_id.as_str())
        .bind(access.kdf_params.as_str())
        .bind(access.reporter_recipient.as_str())
        .bind(access.sealed_identity.as_slice())
        .bind(access.failed_attempts);
    if let Some(record) = &new.idempotency {
        query = query
            .bind(record.key_hash.as_slice())
            .bind(record.sealed_response.as_slice())
            .bind(record.expires_at);
    }
    if new.grants.is_empty() {
        return query;
    }
    let first_grants = &new.grants[..new.grants.len().min(GRANTS_PER_STATEMENT)];
    bind_grants(query, first_grants, case.desk_id.as_str())
}

/// The INSERT of a session row, for any backend (a login's transaction, or alone); it writes
/// nothing for an account that is not active.
pub(crate) fn insert_session_query<DB>(
    session: &crate::storage::SessionRecord,
) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO sessions (token_hash, reviewer_id, created_at, last_seen_at, expires_at, \
         sealed_identity, stepped_up_at) SELECT $1, $2, $3, $4, $5, $6, $7 \
         WHERE EXISTS (SELECT 1 FROM reviewers r WHERE r.id = $2 AND r.status = 'active')",
    )
    .bind(session.token_hash.as_slice())
    .bind(session.reviewer_id.as_str())
    .bind(session.created_at)
    .bind(session.last_seen_at)
    .bind(session.expires_at)
    .bind(session.sealed_identity.as_slice())
    .bind(session.stepped_up_at)
}

/// Locks an active reviewer's row as the first write of a transaction, or returns
/// [`crate::storage::StoreError::Conflict`]`("inactive")`. A disabling (an UPDATE of that row,
/// which then deletes the account's sessions) either waits for this transaction, and so sees and
/// deletes the session it writes, or committed first, and this sees it: on PostgreSQL a session
/// inserted under READ COMMITTED would otherwise escape a concurrent disabling's DELETE. On SQLite
/// it takes the write lock at once.
macro_rules! lock_active_reviewer {
    ($transaction:ident, $reviewer_id:expr) => {{
        let locked =
            sqlx::query("UPDATE reviewers SET status = status WHERE id = $1 AND status = 'active'")
                .bind($reviewer_id)
                .execute(&mut *$transaction)
                .await?;
        if locked.rows_affected() != 1 {
            return Err($crate::storage::StoreError::Conflict("inactive"));
        }
    }};
}

/// Appends an audit event inside an open transaction (`$transaction`), and evaluates to its
/// sequence number: so that an action and its audit event commit together or not at all.
macro_rules! append_audit {
    ($transaction:ident, $event:expr, $chain:expr) => {{
        // A write first: it takes the lock, and returns the new sequence with the hash
        // of the previous event (the hash column is not changed by this statement).
        let (sequence, previous_hash): (i64, Vec<u8>) = sqlx::query_as(
            "UPDATE audit_head SET sequence = sequence + 1 WHERE id = 1 \
             RETURNING sequence, hash",
        )
        .fetch_one(&mut *$transaction)
        .await?;
        let hash = $chain(sequence, &previous_hash, $event);
        sqlx::query(
            "INSERT INTO audit_events (sequence, occurred_at, actor, action, target, \
             outcome, previous_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(sequence)
        .bind($event.occurred_at)
        .bind(&$event.actor)
        .bind(&$event.action)
        .bind(&$event.target)
        .bind(&$event.outcome)
        .bind(&previous_hash)
        .bind(&hash)
        .execute(&mut *$transaction)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&hash)
            .execute(&mut *$transaction)
            .await?;
        sequence
    }};
}

/// Whether a grant's grantee may still receive it when its row is written, inside `$transaction`:
/// the escrow always, a reviewer only while active. The reviewer's row is locked, not just read:
/// on PostgreSQL a disabling not yet committed would pass a plain read; this waits for it and then
/// sees it.
macro_rules! grantee_still_active {
    ($transaction:ident, $grant:expr) => {{
        let grant: &$crate::storage::GrantRecord = $grant;
        grant.grantee_kind != "reviewer"
            || sqlx::query(
                "UPDATE reviewers SET status = status WHERE id = $1 AND status = 'active'",
            )
            .bind(&grant.grantee_id)
            .execute(&mut *$transaction)
            .await?
            .rows_affected()
                == 1
    }};
}

/// Accounts that exist: active or disabled, or pending with an enrolment token still live.
/// Binds `$1` = false, `$2` = now.
pub(crate) const COUNT_LIVE_ACCOUNTS: &str = "SELECT COUNT(*) FROM reviewers r \
     WHERE r.status <> 'pending' OR EXISTS (SELECT 1 FROM enrolments e \
     WHERE e.reviewer_id = r.id AND e.spent = $1 AND e.expires_at > $2)";

/// A pending account (`$1`) and every row that refers to it, children first. The caller has
/// checked, in the same transaction, that the account is pending.
pub(crate) const REMOVE_PENDING_ACCOUNT: [&str; 5] = [
    "DELETE FROM desk_members WHERE reviewer_id = $1",
    "DELETE FROM reviewer_secrets WHERE reviewer_id = $1",
    "DELETE FROM sessions WHERE reviewer_id = $1",
    "DELETE FROM enrolments WHERE reviewer_id = $1",
    "DELETE FROM reviewers WHERE id = $1 AND status = 'pending'",
];

/// Pending accounts whose enrolment is no longer live (`$1` = false, `$2` = now): nobody can
/// confirm them any more.
pub(crate) const STALE_PENDING_ACCOUNTS: &str = "SELECT r.id FROM reviewers r \
     WHERE r.status = 'pending' AND NOT EXISTS (SELECT 1 FROM enrolments e \
     WHERE e.reviewer_id = r.id AND e.spent = $1 AND e.expires_at > $2)";

/// [`STALE_PENDING_ACCOUNTS`] of one username (`$3`).
pub(crate) const STALE_PENDING_ACCOUNT_NAMED: &str = "SELECT r.id FROM reviewers r \
     WHERE r.status = 'pending' AND NOT EXISTS (SELECT 1 FROM enrolments e \
     WHERE e.reviewer_id = r.id AND e.spent = $1 AND e.expires_at > $2) AND r.username = $3";

/// Runs [`REMOVE_PENDING_ACCOUNT`] for `$id` inside `$transaction`.
macro_rules! remove_pending_account {
    ($transaction:ident, $id:expr) => {
        for statement in $crate::storage::sql::REMOVE_PENDING_ACCOUNT {
            sqlx::query(statement)
                .bind($id)
                .execute(&mut *$transaction)
                .await?;
        }
    };
}

/// Implements [`crate::storage::Store`] for a type with a `pool: sqlx::Pool<DB>` field.
macro_rules! impl_store {
    ($store:ty, $backend:literal, $migrator:expr) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> Result<usize, $crate::storage::StoreError> {
                let mut connection = self.pool.acquire().await?;
                // Closed, never handed to a request, whatever happens from here (an error, or
                // `migrate` dropped half-way): its session loses the pool's time-outs.
                connection.close_on_drop();
                <$store>::before_migrating(&mut connection).await?;
                // The counts too are read on this connection: a lock held on the migrations'
                // table is waited for, as the migrations themselves wait.
                let before = $crate::storage::sql::applied_migrations!(connection)?;
                // `run` with a connection meets "`Acquire` is not general enough" inside
                // async_trait; sqlx offers `run_direct` for just that (no target, no skipping).
                $migrator.run_direct(None, &mut *connection, false).await?;
                let after = $crate::storage::sql::applied_migrations!(connection)?;
                let _closed = connection.close().await;
                Ok(usize::try_from(after - before).unwrap_or_default())
            }

            async fn health_check(&self) -> Result<(), $crate::storage::StoreError> {
                // A table, not `SELECT 1`: on SQLite that would not even read the file, and a
                // database swapped for an empty or unmigrated one would still look ready.
                sqlx::query("SELECT 1 FROM instance WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn instance(
                &self,
            ) -> Result<Option<$crate::storage::InstanceRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT receipt_salt, escrow_recipient, created_on FROM instance WHERE id = 1",
                )
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn initialise_instance(
                &self,
                instance: &$crate::storage::InstanceRecord,
                default_desk: &$crate::storage::DeskRecord,
            ) -> Result<$crate::storage::InstanceRecord, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO instance (id, receipt_salt, escrow_recipient, created_on) \
                     VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&instance.receipt_salt)
                .bind(&instance.escrow_recipient)
                .bind(&instance.created_on)
                .execute(&mut *transaction)
                .await?;
                sqlx::query(
                    "INSERT INTO desks (id, slug, name, created_on) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (slug) DO NOTHING",
                )
                .bind(&default_desk.id)
                .bind(&default_desk.slug)
                .bind(&default_desk.name)
                .bind(&instance.created_on)
                .execute(&mut *transaction)
                .await?;
                let winner = sqlx::query_as(
                    "SELECT receipt_salt, escrow_recipient, created_on FROM instance WHERE id = 1",
                )
                .fetch_one(&mut *transaction)
                .await?;
                transaction.commit().await?;
                Ok(winner)
            }

            async fn desks(
                &self,
            ) -> Result<Vec<$crate::storage::DeskRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as("SELECT id, slug, name FROM desks ORDER BY slug")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn desk_by_slug(
                &self,
                slug: &str,
            ) -> Result<Option<$crate::storage::DeskRecord>, $crate::storage::StoreError> {
                if $crate::storage::sql::holds_nul(slug) {
                    return Ok(None);
                }
                Ok(sqlx::query_as("SELECT id, slug, name FROM desks WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn intake_desk(
                &self,
                slug: &str,
            ) -> Result<Option<$crate::storage::IntakeDesk>, $crate::storage::StoreError> {
                if $crate::storage::sql::holds_nul(slug) {
                    return Ok(None);
                }
                // One row per member (no reviewer columns for one who is not active), or one row
                // with no member for a desk without any. Two plain LEFT JOINs: with the nested
                // join, SQLite materialised every membership of every desk for each report.
                let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT d.id, r.id, r.recipient FROM desks d \
                     LEFT JOIN desk_members m ON m.desk_id = d.id \
                     LEFT JOIN reviewers r ON r.id = m.reviewer_id AND r.status = 'active' \
                     WHERE d.slug = $1 ORDER BY r.id",
                )
                .bind(slug)
                .fetch_all(&self.pool)
                .await?;
                let Some((desk_id, _, _)) = rows.first() else {
                    return Ok(None);
                };
                let desk_id = desk_id.clone();
                let members = rows
                    .into_iter()
                    .filter_map(|(_, reviewer_id, recipient)| {
                        Some($crate::storage::MemberRecipient {
                            reviewer_id: reviewer_id?,
                            recipient: recipient?,
                        })
                    })
                    .collect();
                Ok(Some($crate::storage::IntakeDesk { desk_id, members }))
            }

            async fn insert_sealed_case(
                &self,
                new: &$crate::storage::NewSealedCase,
            ) -> Result<(), $crate::storage::StoreError> {
                let statement = $crate::storage::sql::sealed_case_statement(
                    $backend,
                    new.grants.len(),
                    new.idempotency.is_some(),
                );
                let mut expired_record_removed = false;
                loop {
                    let outcome: Result<(), $crate::storage::StoreError> = async {
                        if $backend == "postgres"
                            && new.grants.len() <= $crate::storage::GRANTS_PER_STATEMENT
                        {
                            // The whole case is one PostgreSQL statement, which is atomic by
                            // itself (its WITH clauses and foreign-key checks included): BEGIN
                            // and COMMIT would only add two round trips.
                            $crate::storage::sql::bind_sealed_case(
                                sqlx::query(sqlx::AssertSqlSafe(statement.as_str())),
                                new,
                            )
                            .execute(&self.pool)
                            .await?;
                            return Ok(());
                        }
                        let mut transaction = $crate::storage::begin(&self.pool).await?;
                        $crate::storage::sql::bind_sealed_case(
                            sqlx::query(sqlx::AssertSqlSafe(statement.as_str())),
                            new,
                        )
                        .execute(&mut *transaction)
                        .await?;
                        let more_grants = new
                            .grants
                            .get($crate::storage::GRANTS_PER_STATEMENT..)
                            .unwrap_or_default();
                        for chunk in more_grants.chunks($crate::storage::GRANTS_PER_STATEMENT) {
                            let statement =
                                $crate::storage::sql::grants_statement(0, chunk.len());
                            $crate::storage::sql::bind_grants(
                                sqlx::query(sqlx::AssertSqlSafe(statement)),
                                chunk,
                                new.case.desk_id.as_str(),
                            )
                            .execute(&mut *transaction)
                            .await?;
                        }
                        transaction.commit().await?;
                        Ok(())
                    }
                    .await;
                    let Some(record) = &new.idempotency else {
                        return outcome;
                    };
                    let Err($crate::storage::StoreError::Database(error)) = outcome else {
                        return outcome;
                    };
                    if !error
                        .as_database_error()
                        .is_some_and(|database| database.is_unique_violation())
                    {
                        return Err(error.into());
                    }
                    // Rare: a record for this key is there. A live one means a concurrent
                    // retry won, and the caller replays its answer; an expired one, not purged
                    // yet, is removed and the case written once more. Anything else was some
                    // other uniqueness rule.
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT expires_at FROM idempotency_records WHERE key_hash = $1",
                    )
                    .bind(&record.key_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                    match existing {
                        Some(expires_at) if expires_at > new.now => {
                            return Err($crate::storage::StoreError::Conflict("idempotency_key"));
                        }
                        Some(_) if !expired_record_removed => {
                            sqlx::query(
                                "DELETE FROM idempotency_records \
                                 WHERE key_hash = $1 AND expires_at <= $2",
                            )
                            .bind(&record.key_hash)
                            .bind(new.now)
                            .execute(&self.pool)
                            .await?;
                            expired_record_removed = true;
                        }
                        _ => return Err(error.into()),
                    }
                }
            }

            async fn idempotency_record(
                &self,
                key_hash: &[u8],
                now: i64,
            ) -> Result<Option<$crate::storage::IdempotencyRecord>, $crate::storage::StoreError>
            {
                Ok(sqlx::query_as(
                    "SELECT key_hash, sealed_response, expires_at FROM idempotency_records \
                     WHERE key_hash = $1 AND expires_at > $2",
                )
                .bind(key_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn purge_expired_idempotency(
                &self,
                now: i64,
            ) -> Result<u64, $crate::storage::StoreError> {
                Ok(
                    sqlx::query("DELETE FROM idempotency_records WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&self.pool)
                        .await?
                        .rows_affected(),
                )
            }

            async fn purge_dead_sessions(
                &self,
                now: i64,
                idle_before: i64,
            ) -> Result<u64, $crate::storage::StoreError> {
                Ok(sqlx::query(
                    "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2",
                )
                .bind(now)
                .bind(idle_before)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn case_record(
                &self,
                case_id: &str,
            ) -> Result<Option<$crate::storage::CaseRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::storage::sql::case_columns!(),
                    " FROM cases c WHERE c.id = $1"
                ))
                .bind(case_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn grants_of_case(
                &self,
                case_id: &str,
            ) -> Result<Vec<$crate::storage::GrantRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT case_id, grantee_kind, grantee_id, epoch, ciphertext FROM grants \
                     WHERE case_id = $1 ORDER BY epoch, grantee_kind, grantee_id",
                )
                .bind(case_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn entries_of_case(
                &self,
                case_id: &str,
            ) -> Result<Vec<$crate::storage::EntryRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, case_id, kind, author, epoch, created_on, ciphertext FROM entries \
                     WHERE case_id = $1 ORDER BY created_on, id",
                )
                .bind(case_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn append_audit_event(
                &self,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<i64, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let sequence =
                    $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(sequence)
            }

            async fn audit_events(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<$crate::storage::AuditEventRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT sequence, occurred_at, actor, action, target, outcome, previous_hash, \
                     hash FROM audit_events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn audit_head(&self) -> Result<(i64, Vec<u8>), $crate::storage::StoreError> {
                Ok(sqlx::query_as("SELECT sequence, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn reviewer_count(&self, now: i64) -> Result<i64, $crate::storage::StoreError> {
                Ok(sqlx::query_scalar($crate::storage::sql::COUNT_LIVE_ACCOUNTS)
                    .bind(false)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn insert_enrolment(
                &self,
                enrolment: &$crate::storage::EnrolmentRecord,
                now: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<bool, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                // An invitation replaces the open (unredeemed) one of the same username, if
                // any: one invitation per account is live. Two made at the same moment meet
                // the unique index, and the second is refused as a conflict.
                let mut replaced = false;
                let mut redeemed_replaced = false;
                if let Some(username) = &enrolment.username {
                    // An invitation redeemed but not confirmed goes with its pending account:
                    // whoever redeemed it (its owner, or whoever it leaked to) can no longer
                    // confirm it. Writes first: they take SQLite's write lock at once, and on
                    // PostgreSQL they lock the enrolment and then the account's row, in the order
                    // a confirmation locks them (no deadlock), so that a confirmation running now
                    // either finishes first (the account is then active, not removed, and the
                    // name is taken below) or finds its token gone.
                    sqlx::query(
                        "UPDATE enrolments SET spent = spent WHERE reviewer_id IN \
                         (SELECT id FROM reviewers WHERE username = $1 AND status = 'pending')",
                    )
                    .bind(username)
                    .execute(&mut *transaction)
                    .await?;
                    sqlx::query(
                        "UPDATE reviewers SET status = status \
                         WHERE username = $1 AND status = 'pending'",
                    )
                    .bind(username)
                    .execute(&mut *transaction)
                    .await?;
                    let pending: Vec<String> = sqlx::query_scalar(
                        "SELECT id FROM reviewers WHERE username = $1 AND status = 'pending'",
                    )
                    .bind(username)
                    .fetch_all(&mut *transaction)
                    .await?;
                    for id in &pending {
                        $crate::storage::sql::remove_pending_account!(transaction, id);
                        redeemed_replaced = true;
                    }
                    replaced = sqlx::query(
                        "DELETE FROM enrolments WHERE username = $1 AND spent = $2 \
                         AND reviewer_id IS NULL",
                    )
                    .bind(username)
                    .bind(false)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected()
                        > 0;
                    // Checked again after the DELETE, in this transaction: the old invitation
                    // may have been redeemed meanwhile (PostgreSQL's DELETE then waited for
                    // that and skipped the row), and its holder now has the name. The admin
                    // must hear that it is taken, not that the leak was withdrawn.
                    let taken: Option<i64> = sqlx::query_scalar(
                        "SELECT 1 FROM reviewers r WHERE r.username = $1 \
                         AND (r.status <> 'pending' OR EXISTS (SELECT 1 FROM enrolments e \
                         WHERE e.reviewer_id = r.id AND e.spent = $2 AND e.expires_at > $3))",
                    )
                    .bind(username)
                    .bind(false)
                    .bind(now)
                    .fetch_optional(&mut *transaction)
                    .await?;
                    if taken.is_some() {
                        return Err($crate::storage::StoreError::Conflict("username"));
                    }
                }
                let inserted = sqlx::query(
                    "INSERT INTO enrolments (token_hash, kind, role, desk_ids, reviewer_id, \
                     pending_totp, expires_at, spent, username) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&enrolment.token_hash)
                .bind(&enrolment.kind)
                .bind(&enrolment.role)
                .bind(&enrolment.desk_ids)
                .bind(&enrolment.reviewer_id)
                .bind(&enrolment.pending_totp)
                .bind(enrolment.expires_at)
                .bind(enrolment.spent)
                .bind(&enrolment.username)
                .execute(&mut *transaction)
                .await;
                match inserted {
                    Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                        return Err($crate::storage::StoreError::Conflict("invitation"));
                    }
                    other => {
                        other?;
                    }
                }
                if replaced || redeemed_replaced {
                    let event = $crate::storage::NewAuditEvent {
                        outcome: if redeemed_replaced {
                            "success:replaced_redeemed".into()
                        } else {
                            "success:replaced".into()
                        },
                        ..event.clone()
                    };
                    $crate::storage::sql::append_audit!(transaction, &event, chain);
                } else {
                    $crate::storage::sql::append_audit!(transaction, event, chain);
                }
                transaction.commit().await?;
                Ok(replaced || redeemed_replaced)
            }

            async fn enrolment(
                &self,
                token_hash: &[u8],
            ) -> Result<Option<$crate::storage::EnrolmentRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT token_hash, kind, role, desk_ids, reviewer_id, pending_totp, \
                     expires_at, spent, username FROM enrolments WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn redeem_enrolment(
                &self,
                redemption: &$crate::storage::Redemption<'_>,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let $crate::storage::Redemption {
                    token_hash,
                    now,
                    replacing,
                    reviewer,
                    secrets,
                    pending_totp,
                    memberships,
                } = *redemption;
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                if let Some(earlier) = replacing {
                    // The same token redeemed again before its first code confirmed it: the
                    // earlier answer was lost. Release the token (a write, so it takes the lock
                    // as below), check that its account is still pending (locking its row),
                    // then remove that account.
                    let released = sqlx::query(
                        "UPDATE enrolments SET reviewer_id = NULL, pending_totp = NULL \
                         WHERE token_hash = $1 AND reviewer_id = $2 AND spent = $3 \
                         AND expires_at > $4",
                    )
                    .bind(token_hash)
                    .bind(earlier)
                    .bind(false)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await;
                    // Released, the row counts as an open invitation: a newer open one of the
                    // same username (made before migration 0006, or racing) wins.
                    let released = match released {
                        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                            return Err($crate::storage::StoreError::Conflict("enrolment"));
                        }
                        other => other?,
                    };
                    if released.rows_affected() != 1 {
                        return Err($crate::storage::StoreError::Conflict("enrolment"));
                    }
                    let pending = sqlx::query(
                        "UPDATE reviewers SET status = status WHERE id = $1 AND status = 'pending'",
                    )
                    .bind(earlier)
                    .execute(&mut *transaction)
                    .await?;
                    if pending.rows_affected() != 1 {
                        return Err($crate::storage::StoreError::Conflict("enrolment"));
                    }
                    $crate::storage::sql::remove_pending_account!(transaction, earlier);
                }
                // A pending account whose token expired unconfirmed holds nothing but its
                // username: it goes, so that a new invitation for that name can be redeemed.
                // A write before the read that finds it: on SQLite it takes the write lock at
                // once (a read first would make a concurrent enrolment fail with "database is
                // locked"), and on PostgreSQL it locks that account's row.
                sqlx::query(
                    "UPDATE reviewers SET status = status WHERE username = $1 AND status = 'pending'",
                )
                .bind(&reviewer.username)
                .execute(&mut *transaction)
                .await?;
                let stale: Vec<String> =
                    sqlx::query_scalar($crate::storage::sql::STALE_PENDING_ACCOUNT_NAMED)
                .bind(false)
                .bind(now)
                .bind(&reviewer.username)
                .fetch_all(&mut *transaction)
                .await?;
                for id in &stale {
                    $crate::storage::sql::remove_pending_account!(transaction, id);
                }
                // On PostgreSQL a concurrent insert of the same name waits for this one and then
                // does nothing.
                let inserted = sqlx::query(
                    "INSERT INTO reviewers (id, username, role, status, recipient, created_on) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
                )
                .bind(&reviewer.id)
                .bind(&reviewer.username)
                .bind(&reviewer.role)
                .bind(&reviewer.status)
                .bind(&reviewer.recipient)
                .bind(&reviewer.created_on)
                .execute(&mut *transaction)
                .await?;
                if inserted.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("username"));
                }
                let claimed = sqlx::query(
                    "UPDATE enrolments SET reviewer_id = $1, pending_totp = $5 WHERE token_hash = $2 \
                     AND reviewer_id IS NULL AND spent = $3 AND expires_at > $4",
                )
                .bind(&reviewer.id)
                .bind(token_hash)
                .bind(false)
                .bind(now)
                .bind(pending_totp)
                .execute(&mut *transaction)
                .await?;
                if claimed.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("enrolment"));
                }
                sqlx::query(
                    "INSERT INTO reviewer_secrets (reviewer_id, kdf_params, password_salt, \
                     login_verifier, sealed_identity, sealed_totp, totp_last_step, recovery_salt, \
                     recovery_sealed_identity, must_change_password, failed_logins, locked_until, \
                     recovery_sealed_totp) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&secrets.reviewer_id)
                .bind(&secrets.kdf_params)
                .bind(&secrets.password_salt)
                .bind(&secrets.login_verifier)
                .bind(&secrets.sealed_identity)
                .bind(&secrets.sealed_totp)
                .bind(secrets.totp_last_step)
                .bind(&secrets.recovery_salt)
                .bind(&secrets.recovery_sealed_identity)
                .bind(secrets.must_change_password)
                .bind(secrets.failed_logins)
                .bind(secrets.locked_until)
                .bind(&secrets.recovery_sealed_totp)
                .execute(&mut *transaction)
                .await?;
                for (desk_id, desk_role) in memberships {
                    sqlx::query(
                        "INSERT INTO desk_members (desk_id, reviewer_id, role) VALUES ($1, $2, $3)",
                    )
                    .bind(desk_id)
                    .bind(&reviewer.id)
                    .bind(desk_role)
                    .execute(&mut *transaction)
                    .await?;
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn confirm_enrolment(
                &self,
                token_hash: &[u8],
                reviewer_id: &str,
                totp_step: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let spent = sqlx::query(
                    "UPDATE enrolments SET spent = $1, pending_totp = NULL WHERE token_hash = $2 \
                     AND reviewer_id = $3 AND spent = $4",
                )
                .bind(true)
                .bind(token_hash)
                .bind(reviewer_id)
                .bind(false)
                .execute(&mut *transaction)
                .await?;
                if spent.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("enrolment"));
                }
                // An account an admin disabled while it was pending stays so: nothing is spent,
                // and the confirmation is refused rather than answered as done.
                let activated = sqlx::query(
                    "UPDATE reviewers SET status = 'active' WHERE id = $1 AND status = 'pending'",
                )
                .bind(reviewer_id)
                .execute(&mut *transaction)
                .await?;
                if activated.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("account_not_pending"));
                }
                sqlx::query("UPDATE reviewer_secrets SET totp_last_step = $1 WHERE reviewer_id = $2")
                    .bind(totp_step)
                    .bind(reviewer_id)
                    .execute(&mut *transaction)
                    .await?;
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn replace_setup_code(
                &self,
                enrolment: &$crate::storage::EnrolmentRecord,
                now: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<bool, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                // Two nodes starting at once must not both leave a live code. Locking the
                // instance row first serialises them on PostgreSQL, whose later statements then
                // see the earlier code (READ COMMITTED takes a fresh snapshot per statement) and
                // delete it; SQLite serialises writers by itself.
                sqlx::query("UPDATE instance SET created_on = created_on WHERE id = 1")
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query("DELETE FROM enrolments WHERE kind = 'setup' AND reviewer_id IS NULL")
                    .execute(&mut *transaction)
                    .await?;
                let accounts: i64 = sqlx::query_scalar($crate::storage::sql::COUNT_LIVE_ACCOUNTS)
                    .bind(false)
                    .bind(now)
                    .fetch_one(&mut *transaction)
                    .await?;
                if accounts > 0 {
                    return Ok(false);
                }
                // Every pending account left is one whose token expired unconfirmed.
                let stale: Vec<String> =
                    sqlx::query_scalar($crate::storage::sql::STALE_PENDING_ACCOUNTS)
                        .bind(false)
                        .bind(now)
                        .fetch_all(&mut *transaction)
                        .await?;
                for id in &stale {
                    $crate::storage::sql::remove_pending_account!(transaction, id);
                }
                sqlx::query(
                    "INSERT INTO enrolments (token_hash, kind, role, desk_ids, reviewer_id, \
                     pending_totp, expires_at, spent) VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6)",
                )
                .bind(&enrolment.token_hash)
                .bind(&enrolment.kind)
                .bind(&enrolment.role)
                .bind(&enrolment.desk_ids)
                .bind(enrolment.expires_at)
                .bind(false)
                .execute(&mut *transaction)
                .await?;
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(true)
            }

            async fn reviewer_by_username(
                &self,
                username: &str,
            ) -> Result<
                Option<($crate::storage::ReviewerRecord, $crate::storage::ReviewerSecretsRecord)>,
                $crate::storage::StoreError,
            > {
                if $crate::storage::sql::holds_nul(username) {
                    return Ok(None);
                }
                // One round trip: a login's only read before its KDF.
                let found: Option<$crate::storage::records::ReviewerWithSecrets> =
                    sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::storage::sql::reviewer_columns!(),
                        ", s.reviewer_id, s.kdf_params, s.password_salt, s.login_verifier, \
                         s.sealed_identity, s.sealed_totp, s.totp_last_step, s.recovery_salt, \
                         s.recovery_sealed_identity, s.must_change_password, s.failed_logins, \
                         s.locked_until, s.recovery_sealed_totp \
                         FROM reviewers r JOIN reviewer_secrets s ON s.reviewer_id = r.id \
                         WHERE r.username = $1"
                    ))
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(found.map(|found| (found.reviewer, found.secrets)))
            }

            async fn reviewer(
                &self,
                reviewer_id: &str,
            ) -> Result<Option<$crate::storage::ReviewerRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::storage::sql::reviewer_columns!(),
                    " FROM reviewers r WHERE r.id = $1"
                ))
                .bind(reviewer_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn record_login_failure(
                &self,
                reviewer_id: &str,
                now: i64,
                deadline: fn(i64, i64) -> i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                // The count is read back from the write that raised it, so concurrent failures
                // each see their own number, and the deadline only ever moves later.
                let failures: Option<i64> = sqlx::query_scalar(
                    "UPDATE reviewer_secrets SET failed_logins = failed_logins + 1 \
                     WHERE reviewer_id = $1 RETURNING failed_logins",
                )
                .bind(reviewer_id)
                .fetch_optional(&mut *transaction)
                .await?;
                if let Some(failures) = failures {
                    sqlx::query(
                        "UPDATE reviewer_secrets SET locked_until = $1 \
                         WHERE reviewer_id = $2 AND locked_until < $1",
                    )
                    .bind(deadline(failures, now))
                    .bind(reviewer_id)
                    .execute(&mut *transaction)
                    .await?;
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn record_password_unlock(
                &self,
                reviewer_id: &str,
                now: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                sqlx::query(
                    "UPDATE reviewer_secrets SET failed_logins = 0 \
                     WHERE reviewer_id = $1 AND locked_until <= $2",
                )
                .bind(reviewer_id)
                .bind(now)
                .execute(&mut *transaction)
                .await?;
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn complete_login(
                &self,
                session: &$crate::storage::SessionRecord,
                totp_step: i64,
                login_verifier: &[u8],
                now: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                $crate::storage::sql::lock_active_reviewer!(transaction, &session.reviewer_id);
                // Everything else that could have changed since the KDF started is checked by
                // this one write: the TOTP step unspent, no lock-out (a failure of a parallel guess
                // counts), the same password, and the account still active.
                let spent = sqlx::query(
                    "UPDATE reviewer_secrets SET totp_last_step = $1, failed_logins = 0, \
                     locked_until = 0 WHERE reviewer_id = $2 \
                     AND (totp_last_step IS NULL OR totp_last_step < $1) \
                     AND locked_until <= $3 AND login_verifier = $4 \
                     AND EXISTS (SELECT 1 FROM reviewers r WHERE r.id = $2 AND r.status = 'active')",
                )
                .bind(totp_step)
                .bind(&session.reviewer_id)
                .bind(now)
                .bind(login_verifier)
                .execute(&mut *transaction)
                .await?;
                if spent.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("login"));
                }
                // The row lock above keeps the account active until this commits; the INSERT's
                // own check of the status stays as a second guard.
                let inserted = $crate::storage::sql::insert_session_query(session)
                    .execute(&mut *transaction)
                    .await?;
                if inserted.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("login"));
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn live_session(
                &self,
                token_hash: &[u8],
                now: i64,
            ) -> Result<
                Option<($crate::storage::SessionRecord, $crate::storage::ReviewerRecord)>,
                $crate::storage::StoreError,
            > {
                let session: Option<$crate::storage::SessionRecord> = sqlx::query_as(
                    "SELECT token_hash, reviewer_id, created_at, last_seen_at, expires_at, \
                     sealed_identity, stepped_up_at FROM sessions \
                     WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                let Some(session) = session else { return Ok(None) };
                let reviewer: Option<$crate::storage::ReviewerRecord> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::storage::sql::reviewer_columns!(),
                    " FROM reviewers r WHERE r.id = $1 AND r.status = 'active'"
                ))
                .bind(&session.reviewer_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(reviewer.map(|reviewer| (session, reviewer)))
            }

            async fn touch_session(
                &self,
                token_hash: &[u8],
                now: i64,
            ) -> Result<(), $crate::storage::StoreError> {
                sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                    .bind(now)
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, token_hash: &[u8]) -> Result<(), $crate::storage::StoreError> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_sessions_of(&self, reviewer_id: &str) -> Result<u64, $crate::storage::StoreError> {
                Ok(sqlx::query("DELETE FROM sessions WHERE reviewer_id = $1")
                    .bind(reviewer_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn cases_granted_to(
                &self,
                reviewer_id: &str,
                filter: &$crate::storage::CaseFilter,
            ) -> Result<Vec<$crate::storage::CaseRecord>, $crate::storage::StoreError> {
                // Only the filters that are set become SQL, so that each planner sees plain
                // equalities, and the keyset cursor is a row value. Two shapes, by how many
                // grants the reviewer holds (benches/case_list.rs measures both):
                // - many: walk the index `cases_newest_first` and keep granted rows, so a page
                //   is the first `limit` hits instead of a sort of every granted case;
                // - few: start from the reviewer's grants and sort those (the walk would visit
                //   nearly every case of the instance to find them; SQLite's planner cannot
                //   tell the two apart without statistics per reviewer, so the query says it:
                //   SQLite keeps the order of a CROSS JOIN).
                let few: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE grantee_kind = 'reviewer' \
                     AND grantee_id = $1 LIMIT $2) AS held",
                )
                .bind(reviewer_id)
                .bind($crate::storage::FEW_GRANTS)
                .fetch_one(&self.pool)
                .await?;
                let mut query = sqlx::QueryBuilder::new(concat!(
                    "SELECT ",
                    $crate::storage::sql::case_columns!(),
                ));
                if few < $crate::storage::FEW_GRANTS {
                    query
                        .push(
                            " FROM (SELECT DISTINCT case_id FROM grants WHERE grantee_kind = \
                             'reviewer' AND grantee_id = ",
                        )
                        .push_bind(reviewer_id)
                        .push(") AS mine CROSS JOIN cases c WHERE c.id = mine.case_id");
                } else {
                    query
                        .push(
                            " FROM cases c WHERE EXISTS (SELECT 1 FROM grants g \
                             WHERE g.case_id = c.id AND g.grantee_kind = 'reviewer' \
                             AND g.grantee_id = ",
                        )
                        .push_bind(reviewer_id)
                        .push(")");
                }
                let equalities = [
                    ("c.status", &filter.status),
                    ("c.incident_type", &filter.incident_type),
                    ("c.mechanism_kind", &filter.mechanism_kind),
                    ("c.desk_id", &filter.desk_id),
                ];
                for (column, value) in equalities {
                    if let Some(value) = value {
                        query.push(format_args!(" AND {column} = ")).push_bind(value);
                    }
                }
                if let Some(from) = &filter.received_from {
                    query.push(" AND c.received_on >= ").push_bind(from);
                }
                if let Some(until) = &filter.received_until {
                    query.push(" AND c.received_on <= ").push_bind(until);
                }
                if let Some((day, id)) = &filter.after {
                    query
                        .push(" AND (c.received_on, c.id) < (")
                        .push_bind(day)
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
                query
                    .push(" ORDER BY c.received_on DESC, c.id DESC LIMIT ")
                    .push_bind(filter.limit);
                Ok(query
                    .build_query_as::<$crate::storage::CaseRecord>()
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn grants_of_reviewer_for_case(
                &self,
                reviewer_id: &str,
                case_id: &str,
            ) -> Result<Vec<$crate::storage::GrantRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT case_id, grantee_kind, grantee_id, epoch, ciphertext FROM grants \
                     WHERE case_id = $1 AND grantee_kind = 'reviewer' AND grantee_id = $2 \
                     ORDER BY epoch",
                )
                .bind(case_id)
                .bind(reviewer_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn reviewers(
                &self,
            ) -> Result<Vec<$crate::storage::ReviewerRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::storage::sql::reviewer_columns!(),
                    " FROM reviewers r ORDER BY r.username"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn reviewer_secrets(
                &self,
                reviewer_id: &str,
            ) -> Result<Option<$crate::storage::ReviewerSecretsRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT reviewer_id, kdf_params, password_salt, login_verifier, \
                     sealed_identity, sealed_totp, totp_last_step, recovery_salt, \
                     recovery_sealed_identity, must_change_password, failed_logins, locked_until, \
                     recovery_sealed_totp FROM reviewer_secrets WHERE reviewer_id = $1",
                )
                .bind(reviewer_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn desk_members(
                &self,
            ) -> Result<Vec<$crate::storage::DeskMemberRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT desk_id, reviewer_id, role FROM desk_members ORDER BY desk_id, reviewer_id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn memberships_of(
                &self,
                reviewer_id: &str,
            ) -> Result<Vec<$crate::storage::DeskMemberRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT desk_id, reviewer_id, role FROM desk_members WHERE reviewer_id = $1 \
                     ORDER BY desk_id",
                )
                .bind(reviewer_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn change_account(
                &self,
                reviewer_id: &str,
                change: &$crate::storage::AccountChange,
                events: &[$crate::storage::NewAuditEvent],
                chain: &$crate::storage::AuditChain,
            ) -> Result<bool, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let updated = sqlx::query(
                    "UPDATE reviewers SET role = COALESCE($1, role), status = COALESCE($2, status) \
                     WHERE id = $3",
                )
                .bind(&change.role)
                .bind(&change.status)
                .bind(reviewer_id)
                .execute(&mut *transaction)
                .await?;
                if updated.rows_affected() != 1 {
                    return Ok(false);
                }
                if change.status.as_deref() == Some("disabled") {
                    sqlx::query("DELETE FROM sessions WHERE reviewer_id = $1")
                        .bind(reviewer_id)
                        .execute(&mut *transaction)
                        .await?;
                }
                if change.role.as_deref() == Some("reviewer") {
                    // Made a plain reviewer: no longer coordinator of any desk either (granting
                    // and revoking go with it). An admin can name them desk coordinator again.
                    sqlx::query(
                        "UPDATE desk_members SET role = 'member' \
                         WHERE reviewer_id = $1 AND role = 'coordinator'",
                    )
                    .bind(reviewer_id)
                    .execute(&mut *transaction)
                    .await?;
                }
                for event in events {
                    $crate::storage::sql::append_audit!(transaction, event, chain);
                }
                transaction.commit().await?;
                Ok(true)
            }

            async fn insert_desk(
                &self,
                desk: &$crate::storage::DeskRecord,
                created_on: &str,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let inserted = sqlx::query(
                    "INSERT INTO desks (id, slug, name, created_on) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (slug) DO NOTHING",
                )
                .bind(&desk.id)
                .bind(&desk.slug)
                .bind(&desk.name)
                .bind(created_on)
                .execute(&mut *transaction)
                .await?;
                if inserted.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("slug"));
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn set_desk_members(
                &self,
                desk_id: &str,
                members: &[$crate::storage::DeskMemberRecord],
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                // The desk's row first: two admins replacing the members at once then take
                // turns. Without it, on PostgreSQL the second DELETE skipped the rows the first
                // inserted, which left both lists merged, or a duplicate key (a 500).
                let locked = sqlx::query("UPDATE desks SET slug = slug WHERE id = $1")
                    .bind(desk_id)
                    .execute(&mut *transaction)
                    .await?;
                if locked.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("desk"));
                }
                sqlx::query("DELETE FROM desk_members WHERE desk_id = $1")
                    .bind(desk_id)
                    .execute(&mut *transaction)
                    .await?;
                for member in members {
                    sqlx::query(
                        "INSERT INTO desk_members (desk_id, reviewer_id, role) VALUES ($1, $2, $3)",
                    )
                    .bind(desk_id)
                    .bind(&member.reviewer_id)
                    .bind(&member.role)
                    .execute(&mut *transaction)
                    .await?;
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn record_step_up(
                &self,
                token_hash: &[u8],
                now: i64,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let recorded = sqlx::query(
                    "UPDATE sessions SET stepped_up_at = $1 WHERE token_hash = $2 \
                     AND EXISTS (SELECT 1 FROM reviewer_secrets s \
                         WHERE s.reviewer_id = sessions.reviewer_id AND s.locked_until <= $1)",
                )
                .bind(now)
                .bind(token_hash)
                .execute(&mut *transaction)
                .await?;
                if recorded.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("step_up"));
                }
                // The right password, as a login's: earlier failures stop counting towards a
                // lock-out.
                sqlx::query(
                    "UPDATE reviewer_secrets SET failed_logins = 0 WHERE reviewer_id = \
                     (SELECT reviewer_id FROM sessions WHERE token_hash = $1) \
                     AND locked_until <= $2",
                )
                .bind(token_hash)
                .bind(now)
                .execute(&mut *transaction)
                .await?;
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn add_grants(
                &self,
                case_id: &str,
                epoch: i64,
                grants: &[$crate::storage::GrantRecord],
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<u64, $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                // A write first: it locks the case row, so a concurrent re-key waits for us (or
                // we for it, and then see its new epoch and refuse).
                let current = sqlx::query(
                    "UPDATE cases SET key_epoch = key_epoch WHERE id = $1 AND key_epoch = $2",
                )
                .bind(case_id)
                .bind(epoch)
                .execute(&mut *transaction)
                .await?;
                if current.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("epoch"));
                }
                let mut added = 0;
                for grant in grants {
                    // A reviewer disabled while the grant was being sealed receives nothing, as
                    // at intake and on a re-key.
                    if !$crate::storage::sql::grantee_still_active!(transaction, grant) {
                        continue;
                    }
                    added += sqlx::query(
                        "INSERT INTO grants (case_id, grantee_kind, grantee_id, epoch, ciphertext) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (case_id, grantee_kind, grantee_id, epoch) DO NOTHING",
                    )
                    .bind(case_id)
                    .bind(&grant.grantee_kind)
                    .bind(&grant.grantee_id)
                    .bind(grant.epoch)
                    .bind(&grant.ciphertext)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                }
                if added > 0 {
                    $crate::storage::sql::append_audit!(transaction, event, chain);
                }
                transaction.commit().await?;
                Ok(added)
            }

            async fn rekey_case(
                &self,
                rekey: &$crate::storage::Rekey,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let moved = sqlx::query(
                    "UPDATE cases SET key_epoch = $1, case_recipient = $2 \
                     WHERE id = $3 AND key_epoch = $4",
                )
                .bind(rekey.to_epoch)
                .bind(&rekey.new_recipient)
                .bind(&rekey.case_id)
                .bind(rekey.from_epoch)
                .execute(&mut *transaction)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("epoch"));
                }
                sqlx::query(
                    "DELETE FROM grants WHERE case_id = $1 AND grantee_kind = 'reviewer' \
                     AND grantee_id = $2",
                )
                .bind(&rekey.case_id)
                .bind(&rekey.revoked_reviewer)
                .execute(&mut *transaction)
                .await?;
                let mut grantees: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT grantee_id FROM grants WHERE case_id = $1 \
                     AND grantee_kind = 'reviewer'",
                )
                .bind(&rekey.case_id)
                .fetch_all(&mut *transaction)
                .await?;
                grantees.sort();
                let mut expected = rekey.remaining_reviewers.clone();
                expected.sort();
                expected.dedup();
                if grantees != expected {
                    return Err($crate::storage::StoreError::Conflict("grantees"));
                }
                for grant in &rekey.grants {
                    // A reviewer disabled while the new key was being sealed receives nothing.
                    if !$crate::storage::sql::grantee_still_active!(transaction, grant) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO grants (case_id, grantee_kind, grantee_id, epoch, ciphertext) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&rekey.case_id)
                    .bind(&grant.grantee_kind)
                    .bind(&grant.grantee_id)
                    .bind(grant.epoch)
                    .bind(&grant.ciphertext)
                    .execute(&mut *transaction)
                    .await?;
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }

            async fn insert_entry(
                &self,
                entry: &$crate::storage::EntryRecord,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                let current = sqlx::query(
                    "UPDATE cases SET updated_on = $1 WHERE id = $2 AND key_epoch = $3",
                )
                .bind(&entry.created_on)
                .bind(&entry.case_id)
                .bind(entry.epoch)
                .execute(&mut *transaction)
                .await?;
                if current.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("epoch"));
                }
                sqlx::query(
                    "INSERT INTO entries (id, case_id, kind, author, epoch, created_on, ciphertext) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&entry.id)
                .bind(&entry.case_id)
                .bind(&entry.kind)
                .bind(&entry.author)
                .bind(entry.epoch)
                .bind(&entry.created_on)
                .bind(&entry.ciphertext)
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn case_ids(
                &self,
                after: Option<&str>,
                limit: i64,
            ) -> Result<Vec<String>, $crate::storage::StoreError> {
                // Two texts, not `($1 IS NULL OR id > $1)`: with the OR, SQLite (and a generic
                // PostgreSQL plan) scans the index from its start for every page.
                let page = match after {
                    Some(after) => {
                        sqlx::query_scalar("SELECT id FROM cases WHERE id > $1 ORDER BY id LIMIT $2")
                            .bind(after)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query_scalar("SELECT id FROM cases ORDER BY id LIMIT $1")
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                };
                Ok(page)
            }

            async fn replace_login_secrets(
                &self,
                change: &$crate::storage::SecretsChange<'_>,
                event: &$crate::storage::NewAuditEvent,
                chain: &$crate::storage::AuditChain,
            ) -> Result<(), $crate::storage::StoreError> {
                let $crate::storage::SecretsChange {
                    secrets,
                    expected_verifier,
                    now,
                    new_session,
                    totp_step,
                } = *change;
                let mut transaction = $crate::storage::begin(&self.pool).await?;
                $crate::storage::sql::lock_active_reviewer!(transaction, &secrets.reviewer_id);
                // A recovery spends its TOTP step here, refused if it was spent meanwhile.
                let statement = format!(
                    "UPDATE reviewer_secrets SET kdf_params = $1, password_salt = $2, \
                     login_verifier = $3, sealed_identity = $4, sealed_totp = $5, \
                     recovery_salt = $6, recovery_sealed_identity = $7, recovery_sealed_totp = $8, \
                     must_change_password = $9, failed_logins = 0, locked_until = 0{} \
                     WHERE reviewer_id = $10 AND login_verifier = $11 AND locked_until <= $12{}",
                    if totp_step.is_some() { ", totp_last_step = $13" } else { "" },
                    if totp_step.is_some() {
                        " AND (totp_last_step IS NULL OR totp_last_step < $13)"
                    } else {
                        ""
                    },
                );
                let mut replace = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(&secrets.kdf_params)
                .bind(&secrets.password_salt)
                .bind(&secrets.login_verifier)
                .bind(&secrets.sealed_identity)
                .bind(&secrets.sealed_totp)
                .bind(&secrets.recovery_salt)
                .bind(&secrets.recovery_sealed_identity)
                .bind(&secrets.recovery_sealed_totp)
                .bind(secrets.must_change_password)
                .bind(&secrets.reviewer_id)
                .bind(expected_verifier)
                .bind(now);
                if let Some(step) = totp_step {
                    replace = replace.bind(step);
                }
                let replaced = replace.execute(&mut *transaction).await?;
                if replaced.rows_affected() != 1 {
                    return Err($crate::storage::StoreError::Conflict("secrets"));
                }
                sqlx::query("DELETE FROM sessions WHERE reviewer_id = $1")
                    .bind(&secrets.reviewer_id)
                    .execute(&mut *transaction)
                    .await?;
                if let Some(session) = new_session {
                    $crate::storage::sql::insert_session_query(session)
                        .execute(&mut *transaction)
                        .await?;
                }
                $crate::storage::sql::append_audit!(transaction, event, chain);
                transaction.commit().await?;
                Ok(())
            }
        }
    };
}

/// How many migrations `$connection` records as applied: 0 before the first (no table yet).
macro_rules! applied_migrations {
    ($connection:ident) => {{
        let count: Result<i64, $crate::storage::StoreError> =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut *$connection)
                .await
                .map_err(Into::into);
        match count {
            Err(error) if error.is_missing_table() => Ok(0),
            other => other,
        }
    }};
}

pub(crate) use {
    append_audit, applied_migrations, case_columns, grantee_still_active, impl_store,
    lock_active_reviewer, remove_pending_account, reviewer_columns,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The `$N` placeholders of a statement text, in order.
    fn numbers_in(text: &str) -> Vec<usize> {
        text.split('$')
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().expect("a numbered placeholder")
            })
            .collect()
    }

    #[test]
    fn the_combined_insert_numbers_every_argument_once_in_binding_order() {
        for backend in ["sqlite", "postgres"] {
            for keyed in [false, true] {
                for grants in [0, 1, 3, GRANTS_PER_STATEMENT, GRANTS_PER_STATEMENT + 7] {
                    let text = sealed_case_statement(backend, grants, keyed);
                    let expected = 18
                        + 7
                        + 6
                        + if keyed { 3 } else { 0 }
                        + 5 * grants.min(GRANTS_PER_STATEMENT)
                        + usize::from(grants > 0);
                    let case = format!("{backend}, keyed {keyed}, {grants} grants");
                    assert_eq!(
                        numbers_in(&text),
                        (1..=expected).collect::<Vec<_>>(),
                        "{case}"
                    );
                    assert_eq!(
                        text.matches("INSERT INTO").count(),
                        3 + usize::from(keyed) + usize::from(grants > 0),
                        "{case}"
                    );
                    assert_eq!(
                        text.contains("INSERT INTO idempotency_records"),
                        keyed,
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_further_grants_statement_numbers_its_own_arguments_from_one() {
        let text = grants_statement(0, 7);
        assert_eq!(numbers_in(&text), (1..=36).collect::<Vec<_>>());
        assert!(text.starts_with("INSERT INTO grants"));
        // The last argument is the desk whose active members may be granted.
        assert!(text.ends_with("WHERE m.desk_id = $36 AND m.reviewer_id = g.column3)"));
    }

    #[test]
    fn each_backend_gets_its_own_joint() {
        let sqlite = sealed_case_statement("sqlite", 2, false);
        assert!(sqlite.starts_with("INSERT INTO cases"));
        assert_eq!(sqlite.matches("; INSERT INTO").count(), 3);
        assert!(!sqlite.contains("WITH"));
        let postgres = sealed_case_statement("postgres", 2, false);
        assert!(postgres.starts_with("WITH written_0 AS (INSERT INTO cases"));
        assert!(postgres.contains(") INSERT INTO grants"));
        assert!(!postgres.contains(';'));
        let no_grants = sealed_case_statement("postgres", 0, false);
        assert!(no_grants.contains("written_1 AS (INSERT INTO entries"));
        assert!(no_grants.ends_with(&format!(
            "INSERT INTO reporter_access (lookup_id, case_id, kdf_params, reporter_recipient, \
             sealed_identity, failed_attempts) VALUES {}",
            "($26, $27, $28, $29, $30, $31)"
        )));
        let keyed = sealed_case_statement("postgres", 0, true);
        assert!(keyed.contains("written_2 AS (INSERT INTO reporter_access"));
        assert!(keyed.ends_with(
            "INSERT INTO idempotency_records (key_hash, sealed_response, expires_at) \
             VALUES ($32, $33, $34)"
        ));
    }
}
