//! The SQL shared by both backends. SQLite and PostgreSQL both accept `$1` placeholders,
//! `ON CONFLICT` and the column types used here, so one text serves both; the macro stamps it
//! onto each backend's store, and the integration suite runs on both to check it at run time
//! (`query!` could check only one database at compile time).

/// Implements [`crate::storage::Store`] for a type with a `pool: sqlx::Pool<DB>` field.
macro_rules! impl_store {
    ($store:ty, $backend:literal, $migrator:expr) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> Result<(), $crate::storage::StoreError> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn health_check(&self) -> Result<(), $crate::storage::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
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
                let mut transaction = self.pool.begin().await?;
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
                Ok(sqlx::query_as("SELECT id, slug, name FROM desks WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn active_member_recipients(
                &self,
                desk_id: &str,
            ) -> Result<Vec<$crate::storage::MemberRecipient>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT r.id AS reviewer_id, r.recipient FROM desk_members m \
                     JOIN reviewers r ON r.id = m.reviewer_id \
                     WHERE m.desk_id = $1 AND r.status = 'active' ORDER BY r.id",
                )
                .bind(desk_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_sealed_case(
                &self,
                new: &$crate::storage::NewSealedCase,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut transaction = self.pool.begin().await?;
                if let Some(record) = &new.idempotency {
                    // Replaces an expired record for the same key; a live one wins, and the
                    // caller replays its answer.
                    let written = sqlx::query(
                        "INSERT INTO idempotency_records (key_hash, sealed_response, expires_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (key_hash) DO UPDATE \
                         SET sealed_response = excluded.sealed_response, \
                             expires_at = excluded.expires_at \
                         WHERE idempotency_records.expires_at <= $4",
                    )
                    .bind(&record.key_hash)
                    .bind(&record.sealed_response)
                    .bind(record.expires_at)
                    .bind(new.now)
                    .execute(&mut *transaction)
                    .await?;
                    if written.rows_affected() == 0 {
                        return Err($crate::storage::StoreError::Conflict("idempotency_key"));
                    }
                }
                let case = &new.case;
                sqlx::query(
                    "INSERT INTO cases (id, desk_id, key_epoch, case_recipient, status, priority, \
                     incident_type, mechanism_kind, session_label, perpetrator_kind, \
                     incident_month, consent_ohchr, consent_sg_report, consent_partners, \
                     consent_statistics, consent_contact, received_on, updated_on) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18)",
                )
                .bind(&case.id)
                .bind(&case.desk_id)
                .bind(case.key_epoch)
                .bind(&case.case_recipient)
                .bind(&case.status)
                .bind(&case.priority)
                .bind(&case.incident_type)
                .bind(&case.mechanism_kind)
                .bind(&case.session_label)
                .bind(&case.perpetrator_kind)
                .bind(&case.incident_month)
                .bind(case.consent_ohchr)
                .bind(&case.consent_sg_report)
                .bind(case.consent_partners)
                .bind(case.consent_statistics)
                .bind(case.consent_contact)
                .bind(&case.received_on)
                .bind(&case.updated_on)
                .execute(&mut *transaction)
                .await?;
                for grant in &new.grants {
                    sqlx::query(
                        "INSERT INTO grants (case_id, grantee_kind, grantee_id, epoch, ciphertext) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&grant.case_id)
                    .bind(&grant.grantee_kind)
                    .bind(&grant.grantee_id)
                    .bind(grant.epoch)
                    .bind(&grant.ciphertext)
                    .execute(&mut *transaction)
                    .await?;
                }
                let entry = &new.report;
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
                let access = &new.reporter_access;
                sqlx::query(
                    "INSERT INTO reporter_access (lookup_id, case_id, kdf_params, \
                     reporter_recipient, sealed_identity, failed_attempts) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&access.lookup_id)
                .bind(&access.case_id)
                .bind(&access.kdf_params)
                .bind(&access.reporter_recipient)
                .bind(&access.sealed_identity)
                .bind(access.failed_attempts)
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                Ok(())
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

            async fn case_record(
                &self,
                case_id: &str,
            ) -> Result<Option<$crate::storage::CaseRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, desk_id, key_epoch, case_recipient, status, priority, \
                     incident_type, mechanism_kind, session_label, perpetrator_kind, \
                     incident_month, consent_ohchr, consent_sg_report, consent_partners, \
                     consent_statistics, consent_contact, received_on, updated_on \
                     FROM cases WHERE id = $1",
                )
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
                let mut transaction = self.pool.begin().await?;
                // A write first: it takes the lock, and returns the new sequence with the hash
                // of the previous event (the hash column is not changed by this statement).
                let (sequence, previous_hash): (i64, Vec<u8>) = sqlx::query_as(
                    "UPDATE audit_head SET sequence = sequence + 1 WHERE id = 1 \
                     RETURNING sequence, hash",
                )
                .fetch_one(&mut *transaction)
                .await?;
                let hash = chain(sequence, &previous_hash, event);
                sqlx::query(
                    "INSERT INTO audit_events (sequence, occurred_at, actor, action, target, \
                     outcome, previous_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(sequence)
                .bind(event.occurred_at)
                .bind(&event.actor)
                .bind(&event.action)
                .bind(&event.target)
                .bind(&event.outcome)
                .bind(&previous_hash)
                .bind(&hash)
                .execute(&mut *transaction)
                .await?;
                sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
                    .bind(&hash)
                    .execute(&mut *transaction)
                    .await?;
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
        }
    };
}

pub(crate) use impl_store;
