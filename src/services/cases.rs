//! Reading cases as a reviewer (issue 3, item 6): only through the reviewer's own grants.

use anyhow::Context;

use super::Vault;
use super::accounts::AuthenticatedReviewer;
use super::offline::{DecryptedCase, OfflineError, open_case};
use crate::domain::CaseRef;
use crate::services::audit;
use crate::storage::{CaseFilter, CaseRecord, NewAuditEvent, ReviewerRecord};

/// Filters of the triage list, validated by the route.
pub struct CaseListQuery {
    pub status: Option<String>,
    pub incident_type: Option<String>,
    pub mechanism_kind: Option<String>,
    pub desk_slug: Option<String>,
    pub received_from: Option<String>,
    pub received_until: Option<String>,
    pub after: Option<(String, String)>,
    pub limit: i64,
}

/// Why the triage list was not given.
#[derive(Debug, thiserror::Error)]
pub enum ListCasesError {
    /// The desk filter names no desk (desks are public: `GET /api/v1/intake` lists them).
    #[error("no desk of that slug")]
    UnknownDesk,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why a case was not shown.
#[derive(Debug, thiserror::Error)]
pub enum ReadCaseError {
    /// No such case, or no grant for the caller: indistinguishable on purpose.
    #[error("no such case for this reviewer")]
    NotGranted,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Vault {
    /// The reviewer's granted cases, newest first.
    pub async fn list_granted_cases(
        &self,
        reviewer: &ReviewerRecord,
        query: CaseListQuery,
    ) -> Result<Vec<CaseRecord>, ListCasesError> {
        let desk_id = match &query.desk_slug {
            Some(slug) => match self
                .store
                .desk_by_slug(slug)
                .await
                .map_err(anyhow::Error::from)?
            {
                Some(desk) => Some(desk.id),
                None => return Err(ListCasesError::UnknownDesk),
            },
            None => None,
        };
        let filter = CaseFilter {
            status: query.status,
            incident_type: query.incident_type,
            mechanism_kind: query.mechanism_kind,
            desk_id,
            received_from: query.received_from,
            received_until: query.received_until,
            after: query.after,
            limit: query.limit,
        };
        Ok(self
            .store
            .cases_granted_to(&reviewer.id, &filter)
            .await
            .map_err(anyhow::Error::from)?)
    }

    /// Decrypts a case with the caller's grant, and audits the read.
    pub async fn read_case(
        &self,
        caller: &AuthenticatedReviewer,
        case_ref: &CaseRef,
    ) -> Result<DecryptedCase, ReadCaseError> {
        let grants = self
            .store
            .grants_of_reviewer_for_case(&caller.reviewer.id, case_ref.as_str())
            .await
            .context("could not read grants")?;
        if grants.is_empty() {
            // A reference tried without a grant (or of no case) is audited too, so that an
            // insider probing references they learned elsewhere leaves a trace. The answer stays
            // the same 404 whether the case exists or not.
            let event = NewAuditEvent {
                occurred_at: super::unix_now(),
                actor: caller.reviewer.id.clone(),
                action: "case.read".into(),
                target: Some(case_ref.to_string()),
                outcome: "failure:no_grant".into(),
            };
            audit::record(self.store.as_ref(), event)
                .await
                .context("could not audit the refused read")?;
            return Err(ReadCaseError::NotGranted);
        }
        // Only the caller's own grants are tried, and the X25519 work (one operation per grant
        // and per entry) runs on the blocking pool, not on the HTTP worker. Not on the crypto
        // pools: a read must not queue behind a flood of argon2id runs.
        // Every failure lands in `outcome`, so that the read is audited whatever happens.
        let outcome: Result<DecryptedCase, OfflineError> = async {
            let case = self
                .store
                .case_record(case_ref.as_str())
                .await?
                .ok_or_else(|| OfflineError::UnknownCase(case_ref.clone()))?;
            let entries = self.store.entries_of_case(case_ref.as_str()).await?;
            let identity = caller.identity.clone();
            let reference = case_ref.clone();
            tokio::task::spawn_blocking(move || {
                open_case(&reference, case, grants, entries, &[&identity])
            })
            .await
            .map_err(|_| OfflineError::Io(std::io::Error::other("the decryption task failed")))?
        }
        .await;
        let event = NewAuditEvent {
            occurred_at: super::unix_now(),
            actor: caller.reviewer.id.clone(),
            action: "case.read".into(),
            target: Some(case_ref.to_string()),
            outcome: if outcome.is_ok() {
                "success"
            } else {
                "failure"
            }
            .into(),
        };
        audit::record(self.store.as_ref(), event)
            .await
            .context("could not audit the read; nothing was shown")?;
        match outcome {
            Ok(case) => Ok(case),
            Err(OfflineError::UnknownCase(_) | OfflineError::NoGrant(_)) => {
                Err(ReadCaseError::NotGranted)
            }
            // The log line of a 500 must not name the case (the span logs the route template
            // for that reason): the audit event above holds the reference for whoever looks
            // into it. Store and I/O errors name no case and are kept.
            Err(OfflineError::Tampered { cause, .. }) => {
                Err(ReadCaseError::Internal(anyhow::anyhow!(
                    "the case does not open with the caller's grant: a grant or entry failed its \
                     checks (tampered with, moved from another row, or damaged): {cause}; see \
                     the audit log"
                )))
            }
            Err(OfflineError::MissingEpoch { .. }) => {
                Err(ReadCaseError::Internal(anyhow::anyhow!(
                    "the case does not open with the caller's grant: no grant opens a key epoch \
                     one of its entries needs; see the audit log"
                )))
            }
            Err(error) => Err(ReadCaseError::Internal(
                anyhow::Error::new(error).context("the case does not open with the caller's grant"),
            )),
        }
    }
}
