//! Granting and revoking access to a case (issue 3, item 5; DESIGN §3 "Granting").
//!
//! A grant is made by someone who can already read the case: their identity opens the case key of
//! every epoch they hold, and each is sealed again to the new grantee. Payloads are never
//! re-encrypted. A revoke deletes the grants of the revoked reviewer and starts a new key epoch:
//! a fresh case identity, granted to everyone who keeps access and to the escrow key, so that
//! content added afterwards does not open with anything the revoked reviewer ever held.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use anyhow::Context;

use super::accounts::AuthenticatedReviewer;
use super::intake::ESCROW_GRANTEE;
use super::{Vault, audit, unix_now};
use crate::crypto::CryptoError;
use crate::crypto::case_key::{CaseIdentity, open_grant, seal_grant};
use crate::crypto::pool::PoolError;
use crate::domain::{AccountStatus, CaseRef, DeskRole, Role};
use crate::storage::{
    CaseFilter, CaseRecord, GrantRecord, NewAuditEvent, Rekey, ReviewerRecord, Store, StoreError,
};

/// How often a grant or revoke is retried when a concurrent one moved the case on.
const ATTEMPTS: usize = 3;
/// Grantee kind of a reviewer's grant.
const REVIEWER: &str = "reviewer";

/// Why a grant or revoke was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No such case, or the caller holds no grant for it: indistinguishable on purpose.
    #[error("no such case for this reviewer")]
    CaseNotFound,
    /// The caller can read the case but may not grant or revoke it.
    #[error("only a coordinator grants and revokes access")]
    NotCoordinator,
    /// Granting needs the password entered again within the last minutes.
    #[error("the password must be entered again first (step-up)")]
    StepUpRequired,
    /// The reviewer to grant to does not exist or cannot hold grants.
    #[error("{0}")]
    Ineligible(&'static str),
    /// The reviewer to revoke holds no grant for the case.
    #[error("this reviewer holds no grant for the case")]
    GrantNotFound,
    /// The desk named does not exist.
    #[error("no such desk")]
    UnknownDesk,
    /// Too much crypto work is queued.
    #[error("too many requests are being sealed right now")]
    Saturated,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for GrantError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<PoolError> for GrantError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Saturated => Self::Saturated,
            PoolError::Aborted => Self::Internal(error.into()),
        }
    }
}

/// What a grant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// New grants were written (one per key epoch).
    Granted,
    /// The grantee held every key already.
    AlreadyHeld,
}

/// The tally of a batch grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchTally {
    pub granted: u64,
    pub already_held: u64,
}

/// The case's current key epoch and the recipient its row seals new content to.
pub struct CurrentKey<'a> {
    pub epoch: i64,
    pub recipient: &'a str,
}

/// Seals every case key of `existing` that `openers` can open to `grantee`, checking each grant's
/// binding on the way, and that the current epoch's key is the one the case row names (as a read
/// does): a grant with the right comments but a foreign key is not passed on. Pure crypto, no
/// I/O: run it on the crypto pool (`crypto::pool`).
pub fn reseal_grants(
    case_ref: &CaseRef,
    current: &CurrentKey<'_>,
    existing: &[GrantRecord],
    openers: &[&dyn age::Identity],
    grantee_id: &str,
    grantee: &age::x25519::Recipient,
) -> Result<Vec<GrantRecord>, CryptoError> {
    let mut keys: BTreeMap<i64, CaseIdentity> = BTreeMap::new();
    for grant in existing {
        if keys.contains_key(&grant.epoch) {
            continue;
        }
        let epoch = u32::try_from(grant.epoch).map_err(|_| CryptoError::Malformed)?;
        match open_grant(&grant.ciphertext, openers, case_ref, epoch) {
            Ok(identity) => {
                if grant.epoch == current.epoch
                    && identity.recipient().to_string() != current.recipient
                {
                    return Err(CryptoError::BindingMismatch);
                }
                keys.insert(grant.epoch, identity);
            }
            Err(CryptoError::NotForUs) => {}
            Err(error) => return Err(error),
        }
    }
    keys.into_iter()
        .map(|(epoch, identity)| {
            let sealed = seal_grant(&identity, case_ref, epoch as u32, grantee)?;
            Ok(GrantRecord {
                case_id: case_ref.to_string(),
                grantee_kind: REVIEWER.into(),
                grantee_id: grantee_id.to_owned(),
                epoch,
                ciphertext: sealed,
            })
        })
        .collect()
}

/// Grants one case to `target`, sealing with `reseal` (given the case's grants, it returns the
/// target's new grants), and audits a new grant in the same transaction, with `actor`. Retries
/// when a concurrent revoke moved the case to a new epoch.
pub async fn grant_case_with<S, F>(
    store: &dyn Store,
    actor: &str,
    case_ref: &CaseRef,
    target: &ReviewerRecord,
    reseal: S,
) -> Result<GrantOutcome, GrantError>
where
    S: Fn(Vec<GrantRecord>, CaseRecord) -> F,
    F: Future<Output = Result<Vec<GrantRecord>, GrantError>>,
{
    for _ in 0..ATTEMPTS {
        let case = store
            .case_record(case_ref.as_str())
            .await?
            .ok_or(GrantError::CaseNotFound)?;
        let existing = store.grants_of_case(case_ref.as_str()).await?;
        let held: BTreeSet<i64> = existing
            .iter()
            .filter(|grant| grant.grantee_kind == REVIEWER && grant.grantee_id == target.id)
            .map(|grant| grant.epoch)
            .collect();
        let key_epoch = case.key_epoch;
        let new_grants: Vec<GrantRecord> = reseal(existing, case)
            .await?
            .into_iter()
            .filter(|grant| !held.contains(&grant.epoch))
            .collect();
        if new_grants.is_empty() {
            return if held.is_empty() {
                Err(GrantError::CaseNotFound)
            } else {
                Ok(GrantOutcome::AlreadyHeld)
            };
        }
        if !new_grants.iter().any(|grant| grant.epoch == key_epoch) && held.is_empty() {
            // The opener lacks the current key: the grantee could not read new content.
            return Err(GrantError::CaseNotFound);
        }
        let event = audit_event(actor, "case.grant", case_ref, &target.id);
        match store
            .add_grants(
                case_ref.as_str(),
                key_epoch,
                &new_grants,
                &event,
                &audit::chain_hash,
            )
            .await
        {
            Ok(0) => return Ok(GrantOutcome::AlreadyHeld),
            Ok(_) => return Ok(GrantOutcome::Granted),
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(GrantError::Internal(anyhow::anyhow!(
        "the case kept changing while it was being granted"
    )))
}

/// Checks that a reviewer may hold grants, and parses their recipient.
pub fn grantee_recipient(target: &ReviewerRecord) -> Result<age::x25519::Recipient, GrantError> {
    if target.status != AccountStatus::Active.as_str() {
        return Err(GrantError::Ineligible(
            "the reviewer's account is not active",
        ));
    }
    if target.role == Role::Auditor.as_str() {
        return Err(GrantError::Ineligible(
            "auditors read the audit log, never cases",
        ));
    }
    target
        .recipient
        .parse()
        .map_err(|_| GrantError::Internal(anyhow::anyhow!("a stored recipient is malformed")))
}

fn audit_event(actor: &str, action: &str, case_ref: &CaseRef, reviewer: &str) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: unix_now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(format!("case:{case_ref} reviewer:{reviewer}")),
        outcome: "success".into(),
    }
}

impl Vault {
    /// The case if the caller holds a grant for it, and whether they may grant and revoke it: a
    /// coordinator by role, or a coordinator of the case's desk.
    async fn coordinated_case(
        &self,
        caller: &AuthenticatedReviewer,
        case_ref: &CaseRef,
    ) -> Result<CaseRecord, GrantError> {
        let held = self
            .store
            .grants_of_reviewer_for_case(&caller.reviewer.id, case_ref.as_str())
            .await?;
        if held.is_empty() {
            return Err(GrantError::CaseNotFound);
        }
        let case = self
            .store
            .case_record(case_ref.as_str())
            .await?
            .ok_or(GrantError::CaseNotFound)?;
        if !self.coordinates_desk(caller, &case.desk_id).await? {
            return Err(GrantError::NotCoordinator);
        }
        Ok(case)
    }

    /// Whether the caller coordinates a desk: by the coordinator role, or by desk membership.
    async fn coordinates_desk(
        &self,
        caller: &AuthenticatedReviewer,
        desk_id: &str,
    ) -> Result<bool, GrantError> {
        if caller.role() == Role::Coordinator {
            return Ok(true);
        }
        if caller.role() == Role::Auditor {
            return Ok(false);
        }
        Ok(self
            .store
            .memberships_of(&caller.reviewer.id)
            .await?
            .iter()
            .any(|member| {
                member.desk_id == desk_id && member.role == DeskRole::Coordinator.as_str()
            }))
    }

    async fn grantee(&self, username: &str) -> Result<ReviewerRecord, GrantError> {
        self.store
            .reviewer_by_username(username)
            .await?
            .map(|(reviewer, _)| reviewer)
            .ok_or(GrantError::Ineligible("there is no reviewer of that name"))
    }

    /// Grants one case to a grantee, sealing on the crypto pool with the caller's identity.
    async fn grant_as(
        &self,
        caller: &AuthenticatedReviewer,
        case_ref: &CaseRef,
        target: &ReviewerRecord,
    ) -> Result<GrantOutcome, GrantError> {
        let recipient = grantee_recipient(target)?;
        let reseal = |existing: Vec<GrantRecord>, case: CaseRecord| {
            let identity = caller.identity.clone();
            let case_ref = case_ref.clone();
            let target_id = target.id.clone();
            let recipient = recipient.clone();
            async move {
                let sealed = self
                    .reviewer_crypto
                    .run(move || {
                        let current = CurrentKey {
                            epoch: case.key_epoch,
                            recipient: &case.case_recipient,
                        };
                        reseal_grants(
                            &case_ref,
                            &current,
                            &existing,
                            &[&identity],
                            &target_id,
                            &recipient,
                        )
                    })
                    .await?
                    .context("a grant of this case does not open as it should")?;
                Ok(sealed)
            }
        };
        grant_case_with(
            self.store.as_ref(),
            &caller.reviewer.id,
            case_ref,
            target,
            reseal,
        )
        .await
    }

    /// `POST /cases/{id}/grants`: a coordinator who can read the case grants it to another
    /// reviewer. Needs a fresh step-up.
    pub async fn grant_case(
        &self,
        caller: &AuthenticatedReviewer,
        case_ref: &CaseRef,
        username: &str,
    ) -> Result<GrantOutcome, GrantError> {
        self.coordinated_case(caller, case_ref).await?;
        if !caller.has_fresh_step_up(unix_now()) {
            return Err(GrantError::StepUpRequired);
        }
        let target = self.grantee(username).await?;
        self.grant_as(caller, case_ref, &target).await
    }

    /// Grants every case of a desk that the caller can read to a member of that desk: what a
    /// coordinator does when someone joins a desk. Needs a fresh step-up.
    pub async fn grant_desk_cases(
        &self,
        caller: &AuthenticatedReviewer,
        desk_slug: &str,
        username: &str,
    ) -> Result<BatchTally, GrantError> {
        let desk = self
            .store
            .desk_by_slug(desk_slug)
            .await?
            .ok_or(GrantError::UnknownDesk)?;
        if !self.coordinates_desk(caller, &desk.id).await? {
            return Err(GrantError::NotCoordinator);
        }
        if !caller.has_fresh_step_up(unix_now()) {
            return Err(GrantError::StepUpRequired);
        }
        let target = self.grantee(username).await?;
        let member = self
            .store
            .memberships_of(&target.id)
            .await?
            .iter()
            .any(|membership| membership.desk_id == desk.id);
        if !member {
            return Err(GrantError::Ineligible(
                "the reviewer is not a member of this desk",
            ));
        }
        let mut tally = BatchTally::default();
        let mut filter = CaseFilter {
            desk_id: Some(desk.id.clone()),
            limit: 200,
            ..CaseFilter::default()
        };
        loop {
            let page = self
                .store
                .cases_granted_to(&caller.reviewer.id, &filter)
                .await?;
            for case in &page {
                let case_ref = CaseRef::parse(&case.id).context("a stored case id is malformed")?;
                match self.grant_as(caller, &case_ref, &target).await? {
                    GrantOutcome::Granted => tally.granted += 1,
                    GrantOutcome::AlreadyHeld => tally.already_held += 1,
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == filter.limit => {
                    filter.after = Some((last.received_on.clone(), last.id.clone()));
                }
                _ => break,
            }
        }
        Ok(tally)
    }

    /// `DELETE /cases/{id}/grants/{reviewer}`: deletes the reviewer's grants and re-keys the case,
    /// so that content added later is sealed to a key the revoked reviewer never held. What they
    /// already read cannot be taken back.
    pub async fn revoke_grant(
        &self,
        caller: &AuthenticatedReviewer,
        case_ref: &CaseRef,
        username: &str,
    ) -> Result<(), GrantError> {
        self.coordinated_case(caller, case_ref).await?;
        let target = self
            .store
            .reviewer_by_username(username)
            .await?
            .map(|(reviewer, _)| reviewer)
            .ok_or(GrantError::GrantNotFound)?;
        for _ in 0..ATTEMPTS {
            let case = self
                .store
                .case_record(case_ref.as_str())
                .await?
                .ok_or(GrantError::CaseNotFound)?;
            let grants = self.store.grants_of_case(case_ref.as_str()).await?;
            let reviewer_grantees: BTreeSet<&str> = grants
                .iter()
                .filter(|grant| grant.grantee_kind == REVIEWER)
                .map(|grant| grant.grantee_id.as_str())
                .collect();
            if !reviewer_grantees.contains(target.id.as_str()) {
                return Err(GrantError::GrantNotFound);
            }
            // Everyone else keeps the grants they hold; only active accounts receive the new
            // key. A disabled account (perhaps a suspected infiltrator) or a pending one gets
            // nothing sealed after its status changed, as at intake; re-enabled, it needs a
            // new grant for what comes later.
            let mut keeping = Vec::new();
            let mut remaining = Vec::new();
            for id in reviewer_grantees.iter().filter(|id| **id != target.id) {
                let reviewer = self
                    .store
                    .reviewer(id)
                    .await?
                    .context("a grant names an account that does not exist")?;
                keeping.push(reviewer.id.clone());
                if reviewer.status != "active" {
                    continue;
                }
                let recipient: age::x25519::Recipient = reviewer
                    .recipient
                    .parse()
                    .map_err(|_| anyhow::anyhow!("a stored recipient is malformed"))?;
                remaining.push((reviewer.id, recipient));
            }
            // The row is stored data: an epoch at the end of the range is refused, not wrapped.
            let to_epoch = case
                .key_epoch
                .checked_add(1)
                .context("the key epoch overflowed")?;
            let escrow = self.instance.escrow_recipient.clone();
            let sealing_case = case_ref.clone();
            let sealing_grantees = remaining.clone();
            let (new_recipient, new_grants) = self
                .reviewer_crypto
                .run(move || -> anyhow::Result<_> {
                    let identity = CaseIdentity::generate();
                    let epoch = u32::try_from(to_epoch).context("the key epoch overflowed")?;
                    let mut sealed = vec![GrantRecord {
                        case_id: sealing_case.to_string(),
                        grantee_kind: ESCROW_GRANTEE.into(),
                        grantee_id: ESCROW_GRANTEE.into(),
                        epoch: to_epoch,
                        ciphertext: seal_grant(&identity, &sealing_case, epoch, &escrow)?,
                    }];
                    for (id, recipient) in &sealing_grantees {
                        sealed.push(GrantRecord {
                            case_id: sealing_case.to_string(),
                            grantee_kind: REVIEWER.into(),
                            grantee_id: id.clone(),
                            epoch: to_epoch,
                            ciphertext: seal_grant(&identity, &sealing_case, epoch, recipient)?,
                        });
                    }
                    Ok((identity.recipient().to_string(), sealed))
                })
                .await??;
            let rekey = Rekey {
                case_id: case_ref.to_string(),
                from_epoch: case.key_epoch,
                to_epoch,
                new_recipient,
                revoked_reviewer: target.id.clone(),
                remaining_reviewers: keeping,
                grants: new_grants,
            };
            let event = audit_event(&caller.reviewer.id, "case.revoke", case_ref, &target.id);
            match self
                .store
                .rekey_case(&rekey, &event, &audit::chain_hash)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(GrantError::Internal(anyhow::anyhow!(
            "the case kept changing while it was being revoked"
        )))
    }
}

/// Grants cases to `target` offline (the command line), with identities read from files or
/// unlocked with a password: the escrow key restoring access, or a coordinator granting a desk's
/// cases to a new member. `progress` is told after each case. Every grant is audited with
/// `actor`. A case whose grants the identities open but that fail their checks (a grant bound to
/// another case or epoch, or holding another key than the case seals to: written by someone with
/// write access to the database) is left ungranted and listed in the tally, and the batch goes
/// on: one tampered row must not keep the other cases from their new reader. A database error
/// ends the batch.
pub async fn grant_cases_offline(
    store: &dyn Store,
    openers: &[&dyn age::Identity],
    cases: &[CaseRef],
    target: &ReviewerRecord,
    actor: &str,
    progress: impl Fn(),
) -> Result<OfflineTally, GrantError> {
    let recipient = grantee_recipient(target)?;
    let mut tally = OfflineTally::default();
    for case_ref in cases {
        let refused = std::cell::Cell::new(false);
        let reseal = |existing: Vec<GrantRecord>, case: CaseRecord| {
            let current = CurrentKey {
                epoch: case.key_epoch,
                recipient: &case.case_recipient,
            };
            let sealed = reseal_grants(
                case_ref, &current, &existing, openers, &target.id, &recipient,
            );
            if sealed.is_err() {
                refused.set(true);
            }
            let sealed = sealed
                .with_context(|| format!("a grant of case {case_ref} does not open as it should"));
            async move { Ok(sealed?) }
        };
        match grant_case_with(store, actor, case_ref, target, reseal).await {
            Ok(GrantOutcome::Granted) => tally.granted += 1,
            Ok(GrantOutcome::AlreadyHeld) => tally.already_held += 1,
            Err(GrantError::CaseNotFound) => tally.not_opened += 1,
            Err(_) if refused.get() => tally.refused.push(case_ref.clone()),
            Err(error) => return Err(error),
        }
        progress();
    }
    Ok(tally)
}

/// The tally of an offline batch grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineTally {
    pub granted: u64,
    pub already_held: u64,
    /// Cases that the given identities hold no key for.
    pub not_opened: u64,
    /// Cases whose grants opened but failed their checks: not granted, to be looked into.
    pub refused: Vec<CaseRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant whose comments name the case and epoch but whose key is not the one the case row
    /// seals new content to (written by someone with write access to the database) is refused,
    /// not passed on to a new grantee.
    #[test]
    fn a_grant_of_a_foreign_key_for_the_current_epoch_is_not_resealed() {
        let case_ref = CaseRef::generate();
        let opener = crate::crypto::generate_identity();
        let grantee = crate::crypto::generate_identity().to_public();
        let real = CaseIdentity::generate();
        let foreign = CaseIdentity::generate();
        let grant_of = |identity: &CaseIdentity| GrantRecord {
            case_id: case_ref.to_string(),
            grantee_kind: REVIEWER.into(),
            grantee_id: "R1".into(),
            epoch: 1,
            ciphertext: seal_grant(identity, &case_ref, 1, &opener.to_public()).unwrap(),
        };
        let recipient = real.recipient().to_string();
        let current = CurrentKey {
            epoch: 1,
            recipient: &recipient,
        };

        let forged = reseal_grants(
            &case_ref,
            &current,
            &[grant_of(&foreign)],
            &[&opener],
            "R2",
            &grantee,
        );
        let genuine = reseal_grants(
            &case_ref,
            &current,
            &[grant_of(&real)],
            &[&opener],
            "R2",
            &grantee,
        )
        .unwrap();

        assert!(matches!(forged, Err(CryptoError::BindingMismatch)));
        assert_eq!(genuine.len(), 1);
        assert_eq!(genuine[0].grantee_id, "R2");
    }
}
